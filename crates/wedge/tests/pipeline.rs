//! The demo pipeline end to end: sensor -> filter -> local hub, live reconfiguration through
//! the twin, and direct methods. The filter's behaviour is checked twice, with the Rust
//! module and with its Python port (`modules/filter-py`, on the Python SDK): the same tests,
//! so the two cannot drift apart.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::json;
use support::{Host, body, module, sensor, wait_for};
use wedge_test_artifacts::{ECHO, FILTER, FILTER_PY};

/// The pipeline with the Rust filter.
fn pipeline(threshold: f64) -> String {
    pipeline_with(FILTER, threshold)
}

/// The pipeline with `filter` (a component path) at `threshold`.
fn pipeline_with(filter: &str, threshold: f64) -> String {
    format!(
        "{}{}{}
[routes]
readings = {{ from = \"sensor/readings\", to = \"filter/input\" }}
alerts = {{ from = \"filter/alerts\", to = \"$upstream\" }}
",
        sensor(),
        module(
            "filter",
            filter,
            &format!("config = {{ threshold = {threshold:?} }}")
        ),
        module("echo", ECHO, ""),
    )
}

fn temperature(record: &serde_json::Value) -> f64 {
    body(record)["temperature"].as_f64().unwrap()
}

fn seen(record: &serde_json::Value) -> u64 {
    record["properties"]["filter-seen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn only_readings_above_the_threshold_reach_the_hub() {
    only_readings_above_the_threshold_reach_the_hub_with(FILTER);
}

#[test]
fn only_readings_above_the_threshold_reach_the_hub_in_python() {
    only_readings_above_the_threshold_reach_the_hub_with(FILTER_PY);
}

fn only_readings_above_the_threshold_reach_the_hub_with(filter: &str) {
    let host = Host::start(&pipeline_with(filter, 30.0));
    let records = wait_for(
        "20 alerts at the local hub",
        Duration::from_secs(30),
        || {
            let records = host.telemetry();
            (records.len() >= 20).then_some(records)
        },
    );
    for record in &records {
        assert_eq!(
            (record["module"].as_str(), record["output"].as_str()),
            (Some("filter"), Some("alerts"))
        );
        assert!(temperature(record) > 30.0, "below the threshold: {record}");
        assert_eq!(record["content-type"], "application/json");
        assert_eq!(record["properties"]["units-temperature"], "celsius");
    }
    // The sensor produced readings the filter dropped: it saw more than it forwarded.
    let last = records.last().unwrap();
    assert!(
        seen(last) > records.len() as u64,
        "filter saw {} and forwarded {}",
        seen(last),
        records.len()
    );
    let sensor = host.module_status("sensor");
    assert_eq!(sensor["state"], "running");
    assert!(sensor["messages-out"].as_u64().unwrap() >= seen(last));
    // Every line carries its message id (for de-duplication after a crash), and the status
    // table shows the upstream and the outbox.
    let ids: std::collections::HashSet<&str> = records
        .iter()
        .map(|r| r["message-id"].as_str().expect("a message id"))
        .collect();
    assert_eq!(ids.len(), records.len(), "message ids are unique");
    let table = host.cli(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("sensor") && table.contains("upstream local") && table.contains("outbox"),
        "{table}"
    );
}

#[test]
fn twin_set_changes_the_threshold_live_without_a_restart() {
    twin_set_changes_the_threshold_live_without_a_restart_with(FILTER);
}

#[test]
fn twin_set_changes_the_threshold_live_without_a_restart_in_python() {
    twin_set_changes_the_threshold_live_without_a_restart_with(FILTER_PY);
}

fn twin_set_changes_the_threshold_live_without_a_restart_with(filter: &str) {
    let host = Host::start(&pipeline_with(filter, 30.0));
    wait_for("first alerts", Duration::from_secs(30), || {
        (host.telemetry().len() >= 3).then_some(())
    });

    let out = host.cli(&["twin", "set", "filter", "threshold=24"]);
    assert!(
        out.status.success(),
        "twin set failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = SystemTime::now();
    let before = host.telemetry().len();

    // Within a second, readings between the new and the old threshold pass.
    let records = wait_for(
        "a reading between 24 and 30",
        Duration::from_secs(1),
        || {
            let records = host.telemetry();
            records[before..]
                .iter()
                .any(|r| (24.0..=30.0).contains(&temperature(r)))
                .then_some(records)
        },
    );
    // Whatever was enqueued after the change obeys the new threshold.
    let since = humantime::format_rfc3339_millis(applied).to_string();
    for record in &records[before..] {
        if record["enqueued-time"].as_str().unwrap() > since.as_str() {
            assert!(temperature(record) > 24.0, "{record}");
        }
    }
    // Same instance: its in-memory message count kept growing, and it never restarted.
    let seen_counts: Vec<u64> = records.iter().map(seen).collect();
    assert!(
        seen_counts.windows(2).all(|w| w[0] < w[1]),
        "filter-seen went back: {seen_counts:?}"
    );
    let filter = host.module_status("filter");
    assert_eq!(
        (filter["restarts"].as_u64(), filter["state"].as_str()),
        (Some(0), Some("running"))
    );

    // The module reported its active threshold; `twin get` shows desired and reported.
    let out = host.cli(&["twin", "get", "filter"]);
    assert!(out.status.success());
    let twin: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(twin["desired"], json!({"threshold": 24}));
    assert_eq!(twin["reported"]["threshold"], 24.0);
}

#[test]
fn a_rejected_configuration_keeps_the_old_one_running() {
    a_rejected_configuration_keeps_the_old_one_running_with(FILTER);
}

#[test]
fn a_rejected_configuration_keeps_the_old_one_running_in_python() {
    a_rejected_configuration_keeps_the_old_one_running_with(FILTER_PY);
}

fn a_rejected_configuration_keeps_the_old_one_running_with(filter: &str) {
    let host = Host::start(&pipeline_with(filter, 30.0));
    let out = host.cli(&["twin", "set", "filter", "threshold=warm"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("filter") && stderr.contains("threshold"),
        "unclear error: {stderr}"
    );

    // The twin did not keep the rejected value, and the module still filters at 30.
    let twin = host.request(&json!({"op": "twin-get"})).unwrap();
    assert_eq!(twin["desired"]["wedge"]["modules"].get("filter"), None);
    let before = host.telemetry().len();
    let records = wait_for(
        "alerts after the rejected change",
        Duration::from_secs(30),
        || {
            let records = host.telemetry();
            (records.len() >= before + 5).then_some(records)
        },
    );
    assert!(records.iter().all(|r| temperature(r) > 30.0));
    assert_eq!(host.module_status("filter")["state"], "running");

    let out = host.cli(&["twin", "set", "ghost", "x=1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no module named `ghost`"));
}

#[test]
fn direct_methods_reach_the_module() {
    let host = Host::start(&pipeline(30.0));
    let out = host.cli(&["call", "echo", "ping", r#"{"n":7}"#]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["status"], 200);
    let payload: serde_json::Value =
        serde_json::from_str(answer["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload, json!({"pong": {"n": 7}}));

    let unknown =
        host.request(&json!({"op": "call", "module": "echo", "method": "nope", "payload": "null"}));
    assert_eq!(unknown.unwrap()["status"], 500);
    let missing = host
        .request(&json!({"op": "call", "module": "ghost", "method": "ping", "payload": "null"}));
    assert_eq!(missing, Err("no module named `ghost`".to_string()));
}
