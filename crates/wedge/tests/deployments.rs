//! Cloud-driven deployments on the local hub, end to end: a host that starts knowing nothing
//! but its upstream receives modules from a real OCI registry and an HTTP server through
//! `wedge deploy`, changes their configuration live, swaps a binary under a steady stream of
//! messages, removes a module, refuses broken deployments whole, and runs what it was given
//! from its store after a restart without network.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::files::FileServer;
use support::{Host, body, wait_for};
use wedge_test_artifacts::{COUNTER, ECHO, PLAIN_CLI};
use wedge_test_registry::Registry;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A deployment file with nothing but the upstream: everything else comes from `wedge deploy`.
const ONLY_AN_UPSTREAM: &str = "[upstream]\nkind = \"local\"\n";

fn sha256(bytes: &[u8]) -> String {
    wedge_store::sha256_hex(bytes)
}

/// `wasm` with a custom section appended: another binary (another sha256) of the same module,
/// as a new release of it would be.
fn new_version(wasm: &[u8]) -> Vec<u8> {
    let name = b"wedge-test-version";
    let payload = b"2";
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(future)
}

fn reported(host: &Host) -> Value {
    host.request(&json!({"op": "twin-get"})).unwrap()["reported"]["wedge"].clone()
}

/// The numbers that reached the local hub.
fn delivered(host: &Host) -> BTreeSet<u64> {
    host.telemetry()
        .iter()
        .filter_map(|record| body(record)["seq"].as_u64())
        .collect()
}

/// The counter's next number: every number below it was accepted by a send.
fn next(host: &Host) -> u64 {
    host.call("counter", "next", &json!({}))["next"]
        .as_u64()
        .unwrap()
}

fn counter_and_echo(counter_source: &str, echo_source: &str, echo_sha: &str) -> Value {
    json!({
        "modules": {
            "counter": { "source": counter_source, "tick-ms": 5, "config": { "batch": 2 } },
            "echo": { "source": echo_source, "sha256": echo_sha, "limits": { "inbox": 8 } },
        },
        "routes": {
            "counts": { "from": "counter/counts", "to": "echo/in" },
            "echoed": { "from": "echo/out", "to": "$upstream" },
        },
    })
}

#[test]
fn the_cloud_adds_configures_swaps_and_removes_modules() {
    let registry = Registry::start().unwrap();
    let counter_wasm = std::fs::read(COUNTER).unwrap();
    block_on(registry.push_wasm("wedge/counter", "1.0", &counter_wasm)).unwrap();
    let files = FileServer::start();
    let echo_wasm = std::fs::read(ECHO).unwrap();
    let echo_url = files.put("echo-1.wasm", &echo_wasm);

    let host = Host::start(ONLY_AN_UPSTREAM);
    assert_eq!(
        host.request(&json!({"op": "status"})).unwrap()["modules"],
        json!([])
    );

    // 1. Two modules from two sources: both run, numbers flow counter -> echo -> hub.
    let first = counter_and_echo(
        &registry.oci_source("wedge/counter:1.0"),
        &echo_url,
        &sha256(&echo_wasm),
    );
    let answer = host.deploy(&first).unwrap();
    assert_eq!(answer["status"]["code"], 200, "{answer}");
    wait_for("numbers at the hub", TIMEOUT, || {
        (delivered(&host).len() >= 20).then_some(())
    });
    let status = reported(&host);
    assert_eq!(status["lastDesiredStatus"]["code"], 200, "{status}");
    assert_eq!(status["lastDesiredVersion"], answer["version"], "{status}");
    wait_for("both modules reported running", TIMEOUT, || {
        let m = &reported(&host)["modules"];
        (m["counter"]["runtimeStatus"] == "running"
            && m["echo"]["sha256"] == sha256(&echo_wasm)
            && m["counter"]["sha256"] == sha256(&counter_wasm))
        .then_some(())
    });

    // 2. A new configuration reaches the same instance (no restart).
    let started = host.module_status("echo")["last-start"].clone();
    host.deploy(&json!({"modules": {"echo": {"config": {"mark": 7}}}}))
        .unwrap();
    wait_for("echo reporting its new config", TIMEOUT, || {
        let twin = host.request(&json!({"op": "twin-get"})).unwrap();
        let properties = &twin["reported"]["wedge"]["modules"]["echo"]["properties"];
        (properties["config"]["mark"] == 7).then_some(())
    });
    let echo = host.module_status("echo");
    assert_eq!(
        (echo["restarts"].clone(), echo["last-start"].clone()),
        (json!(0), started)
    );

    // 3. A new binary under a steady stream: nothing accepted is lost, state kept.
    let before = next(&host);
    let echo_v2 = new_version(&echo_wasm);
    let v2_url = files.put("echo-2.wasm", &echo_v2);
    let swap = json!({"modules": {"echo": {"source": v2_url, "sha256": sha256(&echo_v2)}}});
    host.deploy(&swap).unwrap();
    wait_for("echo running the new binary", TIMEOUT, || {
        (host.module_status("echo")["sha256"] == sha256(&echo_v2)).then_some(())
    });
    wait_for("more numbers after the swap", TIMEOUT, || {
        (next(&host) > before + 50).then_some(())
    });
    let accepted = next(&host) - 1;
    let seqs = wait_for("every accepted number at the hub", TIMEOUT, || {
        let seqs = delivered(&host);
        (1..=accepted).all(|n| seqs.contains(&n)).then_some(seqs)
    });
    assert!(seqs.len() as u64 >= accepted);
    assert_eq!(
        host.module_status("echo")["config"]["mark"],
        7,
        "config kept"
    );
    assert_eq!(host.module_status("counter")["restarts"], 0);

    // 4. Removal: the module and its routes go; the counter keeps running.
    let removal = json!({"modules": {"echo": null}, "routes": {"counts": null, "echoed": null}});
    host.deploy(&removal).unwrap();
    let status = host.request(&json!({"op": "status"})).unwrap();
    let names: Vec<&str> = status["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["counter"]);
    wait_for("echo gone from the reported state", TIMEOUT, || {
        reported(&host)["modules"]
            .get("echo")
            .is_none()
            .then_some(())
    });

    // 5. A new tag without a pinned sha256 is fetched, not mistaken for the binary the module
    // ran before; the counter carries on from its durable state.
    let counter_v2 = new_version(&counter_wasm);
    block_on(registry.push_wasm("wedge/counter", "2.0", &counter_v2)).unwrap();
    let before = next(&host);
    let upgrade =
        json!({"modules": {"counter": {"source": registry.oci_source("wedge/counter:2.0")}}});
    host.deploy(&upgrade).unwrap();
    wait_for("the counter running 2.0", TIMEOUT, || {
        (host.module_status("counter")["sha256"] == sha256(&counter_v2)).then_some(())
    });
    assert!(next(&host) >= before, "state kept across the upgrade");
}

#[test]
fn a_broken_deployment_is_refused_whole_and_the_running_modules_keep_going() {
    let registry = Registry::start().unwrap();
    let files = FileServer::start();
    let counter_wasm = std::fs::read(COUNTER).unwrap();
    let counter_url = files.put("counter.wasm", &counter_wasm);
    let plain_cli = std::fs::read(PLAIN_CLI).unwrap();
    let plain_url = files.put("plain.wasm", &plain_cli);
    let host = Host::start(ONLY_AN_UPSTREAM);
    let running = json!({
        "modules": { "counter": { "source": counter_url, "sha256": sha256(&counter_wasm),
                                  "tick-ms": 5 } },
        "routes": { "up": { "from": "counter/counts", "to": "$upstream" } },
    });
    host.deploy(&running).unwrap();

    let extra = |module: Value| json!({ "modules": { "extra": module } });
    let cases = [
        (
            extra(json!({"source": counter_url, "sha256": "0".repeat(64)})),
            vec!["modules.extra.source", "sha256 mismatch"],
        ),
        (
            extra(
                json!({"source": files.put("missing.wasm", b"").replace("missing", "gone"),
                         "sha256": "1".repeat(64)}),
            ),
            vec!["modules.extra.source", "404"],
        ),
        (
            extra(
                json!({"source": format!("http://127.0.0.1:{}/x.wasm", closed_port()),
                         "sha256": "2".repeat(64)}),
            ),
            vec!["modules.extra.source", "unreachable"],
        ),
        (
            extra(json!({"source": registry.oci_source("wedge/nothing:1.0")})),
            vec!["modules.extra.source", "not found"],
        ),
        (
            extra(
                json!({"source": files.put("text.wasm", b"not wasm"), "sha256": sha256(b"not wasm")}),
            ),
            vec!["modules.extra", "text.wasm"],
        ),
        (
            extra(json!({"source": plain_url, "sha256": sha256(&plain_cli)})),
            vec!["modules.extra", "wedge:edge/module"],
        ),
        (
            json!({"routes": {"nowhere": {"from": "counter/counts", "to": "ghost/in"}}}),
            vec!["routes.nowhere.to", "ghost"],
        ),
    ];
    for (deployment, needles) in cases {
        let before = next(&host);
        let error = host.deploy(&deployment).expect_err("refused");
        for needle in needles {
            assert!(error.contains(needle), "`{error}` should name `{needle}`");
        }
        let status = reported(&host)["lastDesiredStatus"].clone();
        assert_eq!(status["code"], 400, "{status}");
        // Nothing changed: only the counter runs, and it keeps counting.
        let modules = host.request(&json!({"op": "status"})).unwrap()["modules"].clone();
        assert_eq!(modules.as_array().unwrap().len(), 1, "{modules}");
        wait_for("the counter still counting", TIMEOUT, || {
            (next(&host) > before + 5).then_some(())
        });
        let twin = host.request(&json!({"op": "twin-get"})).unwrap();
        assert!(twin["desired"]["wedge"]["modules"].get("extra").is_none());
    }
}

#[test]
fn a_restart_without_network_runs_what_the_cloud_deployed() {
    let registry = Registry::start().unwrap();
    let counter_wasm = std::fs::read(COUNTER).unwrap();
    block_on(registry.push_wasm("wedge/counter", "1.0", &counter_wasm)).unwrap();
    let files = FileServer::start();
    let echo_wasm = std::fs::read(ECHO).unwrap();
    let echo_url = files.put("echo.wasm", &echo_wasm);
    let mut host = Host::start(ONLY_AN_UPSTREAM);
    let deployment = counter_and_echo(
        &registry.oci_source("wedge/counter:1.0"),
        &echo_url,
        &sha256(&echo_wasm),
    );
    host.deploy(&deployment).unwrap();
    wait_for("numbers at the hub", TIMEOUT, || {
        (!delivered(&host).is_empty()).then_some(())
    });

    // The network goes: the registry and the file server are gone.
    drop(registry);
    files.stop();
    host.kill();
    let restarted = std::time::Instant::now();
    host.restart();
    let before = delivered(&host).len();
    wait_for("numbers after the offline restart", TIMEOUT, || {
        (delivered(&host).len() > before).then_some(())
    });
    let up = restarted.elapsed();
    for module in ["counter", "echo"] {
        assert_eq!(host.module_status(module)["state"], "running", "{module}");
    }
    assert_eq!(host.module_status("echo")["sha256"], sha256(&echo_wasm));
    eprintln!("offline restart to the first new message: {up:?}");
}

#[test]
fn registry_credentials_come_from_the_device_and_stay_secret() {
    const PASSWORD: &str = "s3cret-registry-password";
    let registry = Registry::start_with_auth("edge", PASSWORD).unwrap();
    let counter_wasm = std::fs::read(COUNTER).unwrap();
    block_on(registry.push_wasm("wedge/counter", "1.0", &counter_wasm)).unwrap();
    let deployment = json!({"modules": {"counter": {
        "source": registry.oci_source("wedge/counter:1.0"), "tick-ms": 20 }}});

    // Without credentials the registry refuses, and so does the deployment.
    let host = Host::start(ONLY_AN_UPSTREAM);
    let error = host.deploy(&deployment).expect_err("no credentials");
    assert!(
        error.contains("modules.counter.source") && error.contains("not authorized"),
        "{error}"
    );
    drop(host);

    // With the device's credentials file (Docker's config.json), it runs.
    let secrets = tempfile::tempdir().unwrap();
    let auth = secrets.path().join("registry-auth.json");
    registry
        .write_docker_config(&auth, "edge", PASSWORD)
        .unwrap();
    let host = Host::start(&format!(
        "{ONLY_AN_UPSTREAM}\n[sources]\nregistry-auth-file = {auth:?}\n"
    ));
    host.deploy(&deployment).unwrap();
    wait_for("the counter running", TIMEOUT, || {
        (host.module_status("counter")["state"] == "running").then_some(())
    });
    let twin = host
        .request(&json!({"op": "twin-get"}))
        .unwrap()
        .to_string();
    assert!(!twin.contains(PASSWORD) && !host.log().contains(PASSWORD));
}

#[test]
fn a_restart_whose_deployment_cannot_be_applied_runs_the_file_and_says_why() {
    let binaries = tempfile::tempdir().unwrap();
    let wasm = binaries.path().join("counter.wasm");
    std::fs::copy(COUNTER, &wasm).unwrap();
    let mut host = Host::start(&format!("{}[routes]\n", support::module("echo", ECHO, "")));
    let deployment = json!({"modules": {"counter": {"source": wasm, "tick-ms": 20}}});
    let version = host.deploy(&deployment).unwrap()["version"].clone();

    // The file the module came from is gone: the next start cannot run it.
    std::fs::remove_file(&wasm).unwrap();
    host.restart();
    let names: Vec<String> = host.request(&json!({"op": "status"})).unwrap()["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["echo"], "the deployment file's modules run");
    let status = reported(&host);
    assert_eq!(status["lastDesiredVersion"], version, "{status}");
    assert_eq!(status["lastDesiredStatus"]["code"], 400, "{status}");
    let description = status["lastDesiredStatus"]["description"].as_str().unwrap();
    assert!(
        description.contains("modules.counter.source"),
        "{description}"
    );
}
