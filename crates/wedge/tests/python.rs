//! The Python module (`modules/filter-py`, on the Python SDK) beyond what the shared pipeline
//! tests check: its state kept across a host restart, a direct method, and an exception in a
//! handler reported as the call's error with the traceback in the module's log, while the host
//! and the other modules carry on.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Host, module, sensor, wait_for};
use wedge_test_artifacts::{ECHO, FILTER_PY};

const TIMEOUT: Duration = Duration::from_secs(60);

fn deployment() -> String {
    format!(
        "{}{}{}
[routes]
readings = {{ from = \"sensor/readings\", to = \"filter/input\" }}
injected = {{ from = \"feed/out\", to = \"filter/input\" }}
alerts = {{ from = \"filter/alerts\", to = \"$upstream\" }}
",
        sensor(),
        module("filter", FILTER_PY, "config = { threshold = 25.0 }"),
        module("feed", ECHO, ""),
    )
}

#[test]
fn state_methods_and_exceptions_of_a_python_module() {
    let mut host = Host::start(&deployment());
    let stats = wait_for("five alerts", TIMEOUT, || {
        let stats = host.call("filter", "stats", &json!({}));
        (stats["alerts"].as_u64() >= Some(5)).then_some(stats)
    });
    assert!(
        stats["seen"].as_u64() >= stats["alerts"].as_u64(),
        "{stats}"
    );

    // An exception: the call's error names it and where it was raised, the traceback is in
    // the module's log, and the module and its neighbours keep running.
    let errors = host.module_status("filter")["errors"].as_u64().unwrap();
    let answer = host.call("feed", "send", &json!({"bodies": ["not json"]}));
    assert_eq!(answer["sent"], 1);
    let status = wait_for("the exception counted", TIMEOUT, || {
        let status = host.module_status("filter");
        (status["errors"].as_u64() > Some(errors)).then_some(status)
    });
    let error = status["last-error"].as_str().unwrap();
    assert!(
        error.starts_with("ValueError: message on input `input`") && error.contains("app.py:"),
        "{error}"
    );
    assert_eq!(status["state"], "running", "{status}");
    let logs = host.cli(&["logs", "filter"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("Traceback (most recent call last)") && logs.contains("ValueError"),
        "{logs}"
    );
    assert_eq!(host.call("feed", "ping", &json!(1)), json!({"pong": 1}));
    let alerts = host.call("filter", "stats", &json!({}))["alerts"]
        .as_u64()
        .unwrap();
    wait_for("alerts after the exception", TIMEOUT, || {
        let stats = host.call("filter", "stats", &json!({}));
        (stats["alerts"].as_u64() > Some(alerts)).then_some(())
    });

    // The state outlives the host: the in-memory count starts over, the stored one goes on.
    let before = host.call("filter", "stats", &json!({}))["alerts"]
        .as_u64()
        .unwrap();
    host.restart();
    let stats = wait_for("alerts after the restart", TIMEOUT, || {
        let stats = host.call("filter", "stats", &json!({}));
        (stats["alerts"].as_u64() >= Some(before + 3)).then_some(stats)
    });
    assert!(
        stats["seen"].as_u64() < stats["alerts"].as_u64(),
        "the count went back to 0 but the state did not: {stats}"
    );
}
