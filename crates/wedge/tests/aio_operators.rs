//! Azure IoT Operations operators (`wasm-graph:processor@1.1.0`) run unchanged as wedge
//! modules: a map, a filter and a branch chained by routes transform, drop and split a stream
//! of readings exactly as their code says; an operator's error is counted and its message not
//! passed on; an accumulate window folds what arrived in it; a delay holds messages until
//! their time; operators see their configuration live and keep their state-store keys across
//! a host restart. The operators are the `aio-temperature` test guest, one component with all
//! five interfaces, each module driving the one its `kind` names. `echo` is the source: its
//! `send` method emits exactly the readings a test gives it.

mod support;

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use support::metrics::{Scrape, metrics_table};
use support::{Host, body, free_port, module, run_refused, wait_for};
use wedge_test_artifacts::{AIO_TEMPERATURE, ECHO};

const TIMEOUT: Duration = Duration::from_secs(30);

fn operator(name: &str, kind: &str, extra: &str) -> String {
    module(name, AIO_TEMPERATURE, &format!("kind = {kind:?}\n{extra}"))
}

fn fahrenheit(f: f64) -> String {
    json!({"temperature": {"value": f, "unit": "F"}}).to_string()
}

/// Sends `bodies` from the `feed` module, in one batch.
fn feed(host: &Host, bodies: &[String]) {
    let answer = host.call("feed", "send", &json!({ "bodies": bodies }));
    assert_eq!(answer["sent"], bodies.len(), "{answer}");
}

fn counter(status: &Value, field: &str) -> u64 {
    status[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

/// The readings of the chain test: 10 temperatures that pass, 5 too hot, 10 humidities, 5
/// payloads that are not JSON. The temperatures are 0, 5, … 45 °C once converted.
fn readings() -> Vec<String> {
    let mut bodies = Vec::new();
    for k in 0..10 {
        bodies.push(fahrenheit(32.0 + 9.0 * f64::from(k)));
        if k % 2 == 0 {
            bodies.push(fahrenheit(212.0 + 18.0 * f64::from(k)));
            bodies.push(format!("not json #{k}"));
        }
        bodies.push(json!({"humidity": {"value": 40 + k}}).to_string());
    }
    bodies
}

fn chain() -> String {
    format!(
        "{}{}{}{}
[routes]
feed = {{ from = \"feed/out\", to = \"to-celsius/in\" }}
mapped = {{ from = \"to-celsius/output\", to = \"bounds/in\" }}
kept = {{ from = \"bounds/output\", to = \"split/in\" }}
temperatures = {{ from = \"split/false\", to = \"$upstream\" }}
others = {{ from = \"split/true\", to = \"$upstream\" }}
",
        module("feed", ECHO, ""),
        operator("to-celsius", "aio-map", ""),
        operator(
            "bounds",
            "aio-filter",
            "config = { temperature_upper_bound = 50 }"
        ),
        operator("split", "aio-branch", ""),
    )
}

/// Waits until `module` has passed `n` messages on.
fn wait_passed(host: &Host, module: &str, n: u64) -> Value {
    wait_for(
        &format!("{module} to pass {n} messages on"),
        TIMEOUT,
        || {
            let status = host.module_status(module);
            (counter(&status, "messages-out") >= n).then_some(status)
        },
    )
}

#[test]
fn a_map_filter_and_branch_chain_transforms_drops_and_splits_exactly() {
    let port = free_port();
    let mut host = Host::start(&format!("{}{}", metrics_table(port, 30), chain()));
    feed(&host, &readings());

    // The last reading is a humidity: once it is through, so is everything before it.
    let split = wait_passed(&host, "split", 20);
    let map = host.module_status("to-celsius");
    let filter = host.module_status("bounds");
    // The map: 30 in, 25 out, the 5 that are not JSON refused (counted, not passed on).
    assert_eq!(
        (counter(&map, "messages-in"), counter(&map, "messages-out")),
        (30, 25),
        "{map}"
    );
    assert_eq!(counter(&map, "errors"), 5, "{map}");
    assert!(
        map["last-error"]
            .as_str()
            .is_some_and(|e| e.contains("payload is not JSON")),
        "{map}"
    );
    // The filter: the 5 too hot are dropped, which is not an error.
    assert_eq!(
        (
            counter(&filter, "messages-in"),
            counter(&filter, "messages-out")
        ),
        (25, 20),
        "{filter}"
    );
    assert_eq!(counter(&filter, "errors"), 0, "{filter}");
    assert_eq!(counter(&split, "messages-in"), 20, "{split}");
    // The operator's own metrics, one `requests` per `process`.
    let requests: Vec<(Value, Value)> = map["operator-metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["labels"]["operator"].clone(), s["count"].clone()))
        .collect();
    assert_eq!(requests, [(json!("map"), json!(30))], "{map}");
    // The same on /metrics, the guest's name and labels as label values.
    let scrape = Scrape::take(port);
    assert_eq!(
        scrape.get(
            "wedge_operator_counter_total{module_name=\"to-celsius\",metric=\"requests\",labels=\"operator=map\"}"
        ),
        30.0
    );

    let records = wait_for("20 records at the hub", TIMEOUT, || {
        let records = host.telemetry();
        (records.len() >= 20).then_some(records)
    });
    assert_eq!(records.len(), 20, "{records:#?}");
    let arm = |output: &str| -> Vec<&Value> {
        records.iter().filter(|r| r["output"] == output).collect()
    };
    let celsius: Vec<f64> = arm("false")
        .iter()
        .map(|r| body(r)["temperature"]["value"].as_f64().unwrap())
        .collect();
    assert_eq!(
        celsius,
        (0..10).map(|k| f64::from(k) * 5.0).collect::<Vec<_>>()
    );
    for record in arm("false") {
        assert_eq!(record["module"], "split");
        assert_eq!(body(record)["temperature"]["unit"], "C");
        assert_eq!(record["properties"]["converted"], "true", "{record}");
        assert_eq!(record["content-type"], "text/plain", "{record}");
    }
    let humidity: Vec<u64> = arm("true")
        .iter()
        .map(|r| body(r)["humidity"]["value"].as_u64().unwrap())
        .collect();
    assert_eq!(humidity, (40..50).collect::<Vec<_>>());
    // The map counts in its state store: 1..=30 in order, the refused ones included.
    let counts: Vec<u64> = records
        .iter()
        .map(|r| {
            r["properties"]["map-count"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert!(counts.iter().all(|&n| n <= 30), "{counts:?}");

    // A live configuration: the filter's `init` runs again with the new bound; only 0, 5, 10
    // and 15 °C are below 20 now.
    let out = host.cli(&["twin", "set", "bounds", "temperature_upper_bound=20"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let temperatures: Vec<String> = (0..10)
        .map(|k| fahrenheit(32.0 + 9.0 * f64::from(k)))
        .collect();
    feed(&host, &temperatures);
    let records = wait_for("4 more records", TIMEOUT, || {
        let records = host.telemetry();
        (records.len() >= 24).then_some(records)
    });
    let later: Vec<f64> = records[20..]
        .iter()
        .map(|r| body(r)["temperature"]["value"].as_f64().unwrap())
        .collect();
    assert_eq!(later, [0.0, 5.0, 10.0, 15.0]);
    assert_eq!(counter(&host.module_status("bounds"), "messages-out"), 24);

    // The state store is the module's durable state: after a restart the map counts on.
    host.restart();
    feed(&host, &[json!({"humidity": {"value": 1}}).to_string()]);
    let records = wait_for("a record after the restart", TIMEOUT, || {
        let records = host.telemetry();
        (records.len() >= 25).then_some(records)
    });
    assert_eq!(
        records[24]["properties"]["map-count"], "41",
        "{}",
        records[24]
    );
}

#[test]
fn an_accumulate_window_folds_what_arrived_in_it() {
    let host = Host::start(&format!(
        "{}{}
[routes]
feed = {{ from = \"feed/out\", to = \"window/in\" }}
folded = {{ from = \"window/output\", to = \"$upstream\" }}
",
        module("feed", ECHO, ""),
        operator("window", "aio-accumulate", "tick-ms = 200"),
    ));
    let values: Vec<String> = (1..=10)
        .map(|v| json!({"temperature": {"value": v, "unit": "C"}}).to_string())
        .collect();
    feed(&host, &values);
    // The ten may fall into one window or two: whatever the split, the folds add up to them.
    let folds = wait_for("all ten folded", TIMEOUT, || {
        let folds: Vec<Value> = host
            .telemetry()
            .iter()
            .map(|r| body(r)["temperature"].clone())
            .collect();
        let n: u64 = folds.iter().map(|t| t["count"].as_u64().unwrap()).sum();
        (n >= 10).then_some(folds)
    });
    assert!(folds.len() <= 2, "{folds:?}");
    let total: u64 = folds.iter().map(|t| t["count"].as_u64().unwrap()).sum();
    let sum: f64 = folds
        .iter()
        .map(|t| t["average"].as_f64().unwrap() * t["count"].as_f64().unwrap())
        .sum();
    let min = folds
        .iter()
        .map(|t| t["min"].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    let max = folds
        .iter()
        .map(|t| t["max"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!((total, sum, min, max), (10, 55.0, 1.0, 10.0), "{folds:?}");
    assert_eq!(folds.last().unwrap()["last"], 10.0);
    // The next window starts over (not from the last one's fold), and windows with nothing
    // in them send nothing: every record folds at least one reading.
    feed(
        &host,
        &[json!({"temperature": {"value": 100, "unit": "C"}}).to_string()],
    );
    let records = wait_for("the next window", TIMEOUT, || {
        let records = host.telemetry();
        (records.len() > folds.len()).then_some(records)
    });
    let last = body(records.last().unwrap())["temperature"].clone();
    assert_eq!(
        (&last["count"], &last["min"]),
        (&json!(1), &json!(100.0)),
        "{last}"
    );
    assert!(
        records
            .iter()
            .all(|r| body(r)["temperature"]["count"].as_u64() >= Some(1)),
        "{records:#?}"
    );
}

#[test]
fn a_delay_holds_messages_until_their_time() {
    let host = Host::start(&format!(
        "{}{}
[routes]
feed = {{ from = \"feed/out\", to = \"hold/in\" }}
released = {{ from = \"hold/output\", to = \"$upstream\" }}
",
        module("feed", ECHO, ""),
        operator("hold", "aio-delay", "config = { delay_ms = 400 }"),
    ));
    let bodies: Vec<String> = (0..5)
        .map(|i| json!({"humidity": {"value": i}}).to_string())
        .collect();
    let sent = SystemTime::now();
    feed(&host, &bodies);
    let records = wait_for("five released", TIMEOUT, || {
        let records = host.telemetry();
        (records.len() >= 5).then_some(records)
    });
    let order: Vec<u64> = records
        .iter()
        .map(|r| body(r)["humidity"]["value"].as_u64().unwrap())
        .collect();
    assert_eq!(order, [0, 1, 2, 3, 4]);
    for record in &records {
        let enqueued = humantime::parse_rfc3339(record["enqueued-time"].as_str().unwrap()).unwrap();
        let held = enqueued.duration_since(sent).unwrap_or_default();
        assert!(
            held >= Duration::from_millis(400),
            "released after {held:?}: {record}"
        );
    }
}

#[test]
fn the_state_store_behaves_as_the_interface_says() {
    // The operator's `init` runs the checks and refuses to start if one fails (logging it).
    let host = Host::start(&operator(
        "check",
        "aio-map",
        "config = { state_store_check = \"true\" }",
    ));
    // `init` logs its settings only once the checks passed.
    wait_for("init to finish", TIMEOUT, || {
        let logs = host.cli(&["logs", "check"]);
        let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
        (logs.contains("[map] init: bounds") || logs.contains("state store:")).then_some(())
    });
    let status = host.module_status("check");
    assert_eq!(
        (status["state"].as_str(), status["last-error"].as_str()),
        (Some("running"), None),
        "{status}\n{}",
        host.log()
    );
}

#[test]
fn a_component_run_as_the_wrong_kind_is_refused_saying_what_it_is() {
    let wrong = [
        (
            module("m", ECHO, "kind = \"aio-map\""),
            vec![
                "does not export `wasm-graph:processor/map@1.1.0`",
                "it is a wedge module: remove `kind`",
            ],
        ),
        (
            module("m", AIO_TEMPERATURE, ""),
            vec![
                "does not export `wedge:edge/module@0.1.0`",
                "`aio-map`",
                "`aio-delay`",
            ],
        ),
        (
            operator("m", "aio-accumulate", ""),
            vec!["modules.m.kind", "needs `tick-ms`"],
        ),
        (
            operator("m", "aio-filter", "tick-ms = 5"),
            vec!["modules.m.tick-ms", "not ticked"],
        ),
        (
            operator("m", "aio-fold", ""),
            vec![
                "wedge.toml:3:8",
                "unknown variant `aio-fold`",
                "`aio-accumulate`",
            ],
        ),
    ];
    for (toml, needles) in wrong {
        let error = run_refused(&toml, &[]);
        for needle in needles {
            assert!(error.contains(needle), "`{needle}` not in: {error}");
        }
    }
}
