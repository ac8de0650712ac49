//! A module gets only what its deployment grants, and a failing module never takes down the
//! host or the other modules.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Host, http_server::Server, module, wait_for};
use wedge_test_artifacts::{BUSY, FILTER, FS_PROBE, HTTP_GATEWAY, SENSOR, TRAPPER};

#[test]
fn a_module_that_traps_is_reported_failing_and_the_others_keep_running() {
    let host = Host::start(&format!(
        "{}{}{}
[routes]
to-trapper = {{ from = \"sensor/readings\", to = \"trapper/input\" }}
to-filter = {{ from = \"sensor/readings\", to = \"filter/input\" }}
alerts = {{ from = \"filter/alerts\", to = \"$upstream\" }}
",
        module("sensor", SENSOR, "tick-ms = 20"),
        module("trapper", TRAPPER, ""),
        module("filter", FILTER, "config = { threshold = 0.0 }"),
    ));
    let trapper = wait_for(
        "trapper to fail and restart",
        Duration::from_secs(30),
        || {
            let status = host.module_status("trapper");
            (status["state"] == "backoff" && status["restarts"].as_u64() >= Some(1))
                .then_some(status)
        },
    );
    let error = trapper["last-error"].as_str().unwrap();
    assert!(
        error.starts_with("panicked at ") && error.ends_with("trapper: trap on purpose"),
        "{trapper}"
    );
    assert!(
        host.log().contains("trapper: trap on purpose"),
        "the guest's panic message is logged"
    );

    // The rest of the pipeline still delivers, after the trapper has failed.
    let delivered = host.telemetry().len();
    wait_for(
        "more telemetry after the trap",
        Duration::from_secs(10),
        || (host.telemetry().len() > delivered + 10).then_some(()),
    );
    for name in ["sensor", "filter"] {
        let status = host.module_status(name);
        assert_eq!(
            (status["state"].as_str(), status["restarts"].as_u64()),
            (Some("running"), Some(0)),
            "{status}"
        );
    }
}

#[test]
fn a_module_over_its_cpu_limit_is_interrupted() {
    let host = Host::start(&format!(
        "{}{}",
        module("busy", BUSY, "tick-ms = 50\ncpu-ms-per-call = 100"),
        module("sensor", SENSOR, "tick-ms = 20"),
    ));
    let busy = wait_for("busy to be interrupted", Duration::from_secs(30), || {
        let status = host.module_status("busy");
        (status["state"] == "backoff").then_some(status)
    });
    assert_eq!(
        busy["last-error"], "CPU limit of 100 ms per call exceeded",
        "{busy}"
    );
    // The sensor kept its ticks while busy spun (it has no routes, so its sends fail).
    wait_for("sensor ticks", Duration::from_secs(10), || {
        (host.module_status("sensor")["errors"].as_u64() > Some(10)).then_some(())
    });
}

#[test]
fn files_are_reachable_only_in_a_granted_data_dir() {
    let host = Host::start(&format!(
        "{}{}",
        module(
            "sandboxed",
            FS_PROBE,
            "config = { path = \"/etc/hostname\", write = \"/tmp/escape.txt\" }"
        ),
        module(
            "granted",
            FS_PROBE,
            "data-dir = true\nconfig = { path = \"/etc/hostname\", write = \"/data/probe.txt\" }"
        ),
    ));
    let reported = |name: &str| {
        let twin = host.request(&json!({"op": "twin-get"})).unwrap();
        let report = twin["reported"]["wedge"]["modules"][name]["properties"].clone();
        (!report.is_null()).then_some(report)
    };
    let sandboxed = wait_for("sandboxed report", Duration::from_secs(30), || {
        reported("sandboxed")
    });
    let granted = wait_for("granted report", Duration::from_secs(30), || {
        reported("granted")
    });

    assert!(
        std::path::Path::new("/etc/hostname").exists(),
        "the probe needs a host file to miss"
    );
    assert!(
        sandboxed["read"].as_str().unwrap().starts_with("error"),
        "{sandboxed}"
    );
    assert!(
        sandboxed["write"].as_str().unwrap().starts_with("error"),
        "{sandboxed}"
    );
    assert!(
        granted["read"].as_str().unwrap().starts_with("error"),
        "host files stay hidden: {granted}"
    );
    assert_eq!(granted["write"], "ok", "{granted}");
    let written = host.data_dir.join("modules/granted/probe.txt");
    assert_eq!(std::fs::read(written).unwrap(), b"probe");
    assert!(!std::path::Path::new("/tmp/escape.txt").exists());
}

#[test]
fn outbound_http_reaches_allowed_hosts_only() {
    let allowed = Server::start();
    let forbidden = Server::start();
    let host = Host::start(&format!(
        "{}{}{}
[routes]
a = {{ from = \"sensor/readings\", to = \"gateway/readings\" }}
b = {{ from = \"sensor/readings\", to = \"sneaky/readings\" }}
",
        module("sensor", SENSOR, "tick-ms = 50"),
        module(
            "gateway",
            HTTP_GATEWAY,
            &format!(
                "allowed-hosts = [\"http://127.0.0.1:{0}\"]\nconfig = {{ url = \"http://127.0.0.1:{0}/ingest\" }}",
                allowed.port
            )
        ),
        module(
            "sneaky",
            HTTP_GATEWAY,
            &format!(
                "allowed-hosts = [\"http://127.0.0.1:{0}\"]\nconfig = {{ url = \"http://127.0.0.1:{1}/steal\" }}",
                allowed.port, forbidden.port
            )
        ),
    ));
    let received = wait_for(
        "5 POSTs at the allowed server",
        Duration::from_secs(30),
        || {
            let received = allowed.received();
            (received.len() >= 5).then_some(received)
        },
    );
    for request in &received {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/ingest")
        );
        assert_eq!(request.header("x-wedge-input"), Some("readings"));
        let reading: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert!(reading["temperature"].is_number(), "{reading}");
    }

    let sneaky = wait_for(
        "the denied module to record errors",
        Duration::from_secs(10),
        || {
            let status = host.module_status("sneaky");
            (status["errors"].as_u64() >= Some(3)).then_some(status)
        },
    );
    assert!(
        sneaky["last-error"]
            .as_str()
            .unwrap()
            .contains("HttpRequestDenied"),
        "{sneaky}"
    );
    assert_eq!(
        sneaky["state"], "running",
        "a denied request does not stop the module"
    );
    assert_eq!(
        forbidden.connections(),
        0,
        "nothing reached the forbidden server"
    );
    let log = host.log();
    assert!(
        log.contains("outbound HTTP request denied")
            && log.contains(&format!("127.0.0.1:{}", forbidden.port)),
        "the denial is logged with the destination:\n{log}"
    );
}
