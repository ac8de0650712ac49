//! The metrics listener end to end: a real `wedge run` serving `/metrics`, `/healthz` and
//! `/readyz`, scraped over TCP while a deployment runs; with the MQTT upstream against a real
//! Mosquitto that is stopped part-way.

mod support;

use std::time::Duration;

use serde_json::json;
use support::metrics::{Scrape, http, metrics_table};
use support::mqtt::{MqttSetup, PASSWORD};
use support::{Host, free_port, module, run_refused, wait_for};
use wedge_test_artifacts::COUNTER;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The counter sending `limit` numbers on `counts`, routed to the upstream.
fn counter(limit: u64) -> String {
    format!(
        "{}[routes]\ncounts = {{ from = \"counter/counts\", to = \"$upstream\" }}\n",
        module(
            "counter",
            COUNTER,
            &format!("tick-ms = 10\nconfig = {{ limit = {limit} }}")
        ),
    )
}

/// The series names docs/metrics.md lists (the first column of its tables).
fn documented_names() -> Vec<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .unwrap();
    let names: Vec<String> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string())
        .filter(|name| {
            ["edgehub_", "edgeAgent_", "wedge_"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .collect();
    assert!(names.len() > 10, "docs/metrics.md lists only {names:?}");
    names
}

#[test]
fn counters_equal_what_the_deployment_sent() {
    const N: u64 = 25;
    let port = free_port();
    let host = Host::start(&format!("{}{}", metrics_table(port, 30), counter(N)));
    // Everything sent and written to telemetry.jsonl, and the outbox empty again.
    wait_for("all numbers in the local hub", TIMEOUT, || {
        let status = host.request(&json!({"op": "status"})).unwrap();
        (host.telemetry().len() as u64 == N && status["outbox"]["depth"] == 0).then_some(())
    });
    let next = host.call("counter", "next", &json!({}));
    assert_eq!(next, json!({"next": N + 1}));

    let scrape = Scrape::take(port);
    let exact = [
        ("edgehub_messages_received_total{id=\"counter\"}", N),
        ("edgehub_messages_sent_total{to=\"upstream\"}", N),
        ("edgehub_messages_sent_total{to=\"counter\"}", 0),
        ("wedge_outbox_appended_total", N),
        ("edgehub_queue_length{endpoint=\"upstream\"}", 0),
        ("edgehub_queue_length{endpoint=\"counter\"}", 0),
        ("wedge_outbox_bytes", 0),
        ("wedge_outbox_oldest_age_seconds", 0),
        (
            "edgehub_messages_dropped_total{reason=\"ttl_expiry\",endpoint=\"upstream\"}",
            0,
        ),
        (
            "edgehub_messages_dropped_total{reason=\"queue_full\",endpoint=\"upstream\"}",
            0,
        ),
        (
            "edgehub_messages_dropped_total{reason=\"inbox_full\",endpoint=\"counter\"}",
            0,
        ),
        ("edgehub_direct_methods_total{to=\"counter\"}", 1),
        ("edgeAgent_module_start_total{module_name=\"counter\"}", 1),
        ("wedge_module_errors_total{module_name=\"counter\"}", 0),
        ("wedge_module_restarts_total{module_name=\"counter\"}", 0),
        (
            "wedge_module_logs_suppressed_total{module_name=\"counter\"}",
            0,
        ),
        (
            "wedge_module_state{module_name=\"counter\",state=\"running\"}",
            1,
        ),
        (
            "wedge_module_state{module_name=\"counter\",state=\"backoff\"}",
            0,
        ),
        ("wedge_upstream_connected", 1),
        ("edgehub_offline_count_total", 0),
        ("wedge_upstream_offline_seconds_total", 0),
        ("wedge_upstream_dropped_total{what=\"unsendable\"}", 0),
    ];
    for (sample, value) in exact {
        assert_eq!(scrape.get(sample), value as f64, "{sample}");
    }
    // Its linear memory is what the instance has; at least the one 64 KiB page.
    let memory = scrape.get("edgeAgent_used_memory_bytes{module_name=\"counter\"}");
    assert!(memory >= 65536.0, "{memory}");
    // init, the N ticks that sent, the `next` method, and ticks since that sent nothing.
    let calls = scrape.get("wedge_module_call_duration_seconds_count{module_name=\"counter\"}");
    assert!(calls >= (N + 2) as f64, "{calls} calls");

    for name in documented_names() {
        let family = name.strip_suffix("_total").unwrap_or(&name);
        let kind = scrape
            .families
            .get(family)
            .unwrap_or_else(|| panic!("docs/metrics.md lists {name}, the scrape has no {family}"));
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
    }
}

#[test]
fn readyz_follows_the_broker() {
    let mut setup = MqttSetup::start();
    let port = free_port();
    let rest = format!("{}{}", metrics_table(port, 1), counter(5));
    let host = Host::start(&setup.deployment(PASSWORD, &rest));
    let connected = |host: &Host| {
        host.request(&json!({"op": "status"})).unwrap()["upstream"]["link"]["connected"] == true
    };
    wait_for("the link connected", TIMEOUT, || {
        connected(&host).then_some(())
    });
    wait_for("the module running", TIMEOUT, || {
        (host.module_status("counter")["state"] == "running").then_some(())
    });
    assert_eq!(http(port, "GET", "/readyz"), (200, "ready\n".into()));
    let scrape = Scrape::take(port);
    assert_eq!(scrape.get("wedge_upstream_connected"), 1.0);
    assert_eq!(scrape.get("edgehub_offline_count_total"), 0.0);

    setup.broker.stop();
    let reason = wait_for("readyz 503 past the grace", TIMEOUT, || {
        let (status, body) = http(port, "GET", "/readyz");
        (status == 503).then_some(body)
    });
    assert!(
        reason.starts_with("upstream mqtt not connected for "),
        "{reason}"
    );
    let scrape = Scrape::take(port);
    assert_eq!(scrape.get("wedge_upstream_connected"), 0.0);
    assert_eq!(scrape.get("edgehub_offline_count_total"), 1.0);
    let offline = scrape.get("wedge_upstream_offline_seconds_total");
    assert!(offline >= 1.0, "offline for {offline} s past a 1 s grace");
    // The process still serves.
    assert_eq!(http(port, "GET", "/healthz").0, 200);

    setup.broker.restart().unwrap();
    wait_for("readyz 200 again", TIMEOUT, || {
        (http(port, "GET", "/readyz").0 == 200).then_some(())
    });
    let scrape = Scrape::take(port);
    assert_eq!(scrape.get("wedge_upstream_connected"), 1.0);
    assert_eq!(scrape.get("edgehub_offline_count_total"), 1.0);
}

#[test]
fn healthz_answers_and_other_requests_are_refused() {
    let port = free_port();
    let _host = Host::start(&metrics_table(port, 30));
    assert_eq!(http(port, "GET", "/healthz"), (200, "ok\n".into()));
    // No modules and the local hub: nothing to wait for.
    assert_eq!(http(port, "GET", "/readyz"), (200, "ready\n".into()));
    assert_eq!(http(port, "GET", "/nothing").0, 404);
    assert_eq!(http(port, "POST", "/metrics").0, 405);
}

#[test]
fn a_bad_listen_address_is_refused_naming_it() {
    let error = run_refused("# metrics\n[metrics]\nlisten = \"nowhere:9600\"\n", &[]);
    assert!(
        error.contains("wedge.toml:3:10: metrics.listen: `nowhere:9600` is not an address"),
        "{error}"
    );
    // An address in use: named, and nothing started.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let error = run_refused(&metrics_table(port, 30), &[]);
    assert!(
        error.contains(&format!("cannot listen for metrics on 127.0.0.1:{port}")),
        "{error}"
    );
}
