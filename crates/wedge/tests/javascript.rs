//! A JavaScript module end to end (`modules/converter-js`, on the JS SDK in `sdk/js`, built
//! with componentize-js): readings converted to another unit and checked against the raw
//! readings, the unit changed live through the twin, a rejected configuration, a method, and a
//! failing send surfacing as the call's error.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Host, body, module, sensor, wait_for};
use wedge_test_artifacts::CONVERTER_JS;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The sensor's readings go to the hub as they are and through the converter, so each
/// converted reading can be checked against its original (same `seq`).
fn deployment(converter_config: &str, routes: &str) -> String {
    format!(
        "{}{}[routes]\nraw = {{ from = \"sensor/readings\", to = \"$upstream\" }}\n\
         readings = {{ from = \"sensor/readings\", to = \"converter/input\" }}\n{routes}",
        sensor(),
        module("converter", CONVERTER_JS, converter_config),
    )
}

const CONVERTED: &str = "converted = { from = \"converter/converted\", to = \"$upstream\" }\n";

/// The raw temperature (celsius) of each reading, by `seq`, and the converted records.
fn split(records: &[Value]) -> (BTreeMap<u64, f64>, Vec<Value>) {
    let mut raw = BTreeMap::new();
    let mut converted = Vec::new();
    for record in records {
        let reading = body(record);
        match record["module"].as_str() {
            Some("sensor") => {
                raw.insert(
                    reading["seq"].as_u64().unwrap(),
                    reading["temperature"].as_f64().unwrap(),
                );
            }
            Some("converter") => converted.push(record.clone()),
            other => panic!("a record from {other:?}"),
        }
    }
    (raw, converted)
}

/// Checks every converted record against its raw reading with `convert`; returns how many.
fn check_converted(host: &Host, unit: &str, since: usize, convert: impl Fn(f64) -> f64) -> usize {
    let (raw, converted) = split(&host.telemetry());
    let mut checked = 0;
    for record in converted.iter().skip(since) {
        let reading = body(record);
        if record["properties"]["units-temperature"] != unit {
            continue;
        }
        let seq = reading["seq"].as_u64().unwrap();
        let celsius = raw[&seq];
        let expected = (convert(celsius) * 100.0).round() / 100.0;
        assert_eq!(
            reading["temperature"].as_f64().unwrap(),
            expected,
            "seq {seq}: {celsius} °C in {unit}: {record}"
        );
        assert_eq!(record["content-type"], "application/json");
        checked += 1;
    }
    checked
}

fn converted_count(host: &Host) -> usize {
    split(&host.telemetry()).1.len()
}

#[test]
fn readings_are_converted_and_the_unit_changes_live() {
    let mut host = Host::start(&deployment("config = { to = \"fahrenheit\" }", CONVERTED));
    wait_for("20 converted readings", TIMEOUT, || {
        (converted_count(&host) >= 20).then_some(())
    });
    let fahrenheit = check_converted(&host, "fahrenheit", 0, |c| c * 9.0 / 5.0 + 32.0);
    assert!(fahrenheit >= 20, "{fahrenheit} checked");
    // One long-lived object: its in-memory count grows by one per message.
    let (_, converted) = split(&host.telemetry());
    let seen: Vec<u64> = converted
        .iter()
        .map(|r| {
            r["properties"]["converter-seen"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    let out = host.cli(&["twin", "get", "converter"]);
    let twin: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        twin["reported"]["to"], "fahrenheit",
        "the unit in effect is reported"
    );

    // A unit it does not know is refused, naming it; the old one stays.
    let out = host.cli(&["twin", "set", "converter", "to=rankine"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`to` must be one of") && stderr.contains("rankine"),
        "{stderr}"
    );

    let out = host.cli(&["twin", "set", "converter", "to=kelvin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = converted_count(&host);
    wait_for("readings in kelvin", TIMEOUT, || {
        (check_converted(&host, "kelvin", before, |c| c + 273.15) >= 5).then_some(())
    });
    let stats = host.call("converter", "stats", &json!({}));
    assert_eq!(stats["to"], "kelvin");
    assert_eq!(stats["seen"], stats["converted"], "{stats}");
    let status = host.module_status("converter");
    assert_eq!(
        (status["restarts"].as_u64(), status["state"].as_str()),
        (Some(0), Some("running"))
    );

    // Its state outlives the host: after a restart the in-memory count starts over, the
    // stored total goes on.
    let total = stats["total"].as_u64().unwrap();
    assert!(total >= stats["converted"].as_u64().unwrap(), "{stats}");
    host.restart();
    let stats = wait_for("conversions after the restart", TIMEOUT, || {
        let stats = host.call("converter", "stats", &json!({}));
        (stats["converted"].as_u64() >= Some(3)).then_some(stats)
    });
    let (seen, after) = (
        stats["seen"].as_u64().unwrap(),
        stats["total"].as_u64().unwrap(),
    );
    assert!(
        after >= total + 3,
        "the total went back: {total} then {stats}"
    );
    assert!(seen < after, "{stats}");
}

#[test]
fn a_refused_send_is_the_calls_error_and_unknown_methods_are_404() {
    // No route from `converted`: every send is refused with no-route.
    let host = Host::start(&deployment("", ""));
    let status = wait_for("a call error", TIMEOUT, || {
        let status = host.module_status("converter");
        status["last-error"].is_string().then_some(status)
    });
    assert_eq!(
        status["last-error"], "SendError: no-route: converted",
        "{status}"
    );
    assert_eq!(
        status["state"], "running",
        "an error is not a crash: {status}"
    );
    let answer = host
        .request(&json!({"op": "call", "module": "converter", "method": "nope", "payload": "{}"}))
        .unwrap();
    assert_eq!(answer["status"], 404, "{answer}");
    assert!(
        answer["payload"]
            .as_str()
            .unwrap()
            .contains("`nope` is not implemented")
    );
}
