//! Test guest: one component providing five Azure IoT Operations operators over temperature
//! readings, written for wedge's tests after the behaviour of the public samples (the
//! `temperature` and `window` operators of Azure-Samples/explore-iot-operations), against the
//! vendored `wasm-graph:processor@1.1.0` only. Readings are JSON:
//! `{"temperature": {"value": 98.6, "unit": "F"}}` or `{"humidity": {"value": 40}}`.
//!
//! - map: a temperature in °F becomes °C (property `converted` = `true`); anything else that is
//!   JSON passes unchanged; a payload that is not JSON is an error.
//! - filter: a temperature passes when strictly between `temperature_lower_bound` and
//!   `temperature_upper_bound` (configuration, default -40 and 3422); other readings pass.
//! - branch: temperatures go to the first branch (`false`), everything else to the second.
//! - accumulate: folds temperatures into `{"temperature": {"count", "min", "max", "average",
//!   "last"}}`, starting from what `staged` already holds.
//! - delay: moves each item's time `delay_ms` (configuration, default 0) later.
//!
//! With `state_store_check = "true"` in its configuration, `init` first checks the host's
//! state-store semantics (set conditions, `del`, `vdel`, refused expiry) and refuses to start,
//! logging the first difference, if one is not as the interface says.
//!
//! Every `process` adds 1 to the `requests` counter (label `operator`) and to the state-store
//! key `<operator>-count`, so that tests see both imports work; map puts its count on each
//! message it passes as property `map-count`.

wit_bindgen::generate!({
    inline: "
        package wedge-test:aio-temperature;

        world operators {
            import wasm-graph:processor/state-store@1.1.0;
            import wasm-graph:processor/logger@1.1.0;
            import wasm-graph:processor/metrics@1.1.0;
            export wasm-graph:processor/%map@1.1.0;
            export wasm-graph:processor/filter@1.1.0;
            export wasm-graph:processor/branch@1.1.0;
            export wasm-graph:processor/accumulate@1.1.0;
            export wasm-graph:processor/delay@1.1.0;
        }
    ",
    path: "../../../wit/deps/wasm-graph-processor",
    generate_all,
});

use std::sync::Mutex;

use exports::wasm_graph::processor::{accumulate, branch, delay, filter, map};
use serde_json::{Value, json};
use wasm_graph::processor::hybrid_logical_clock::HybridLogicalClock;
use wasm_graph::processor::logger::{self, Level};
use wasm_graph::processor::metrics::{self, CounterValue, Label};
use wasm_graph::processor::state_store;
use wasm_graph::processor::state_store_types::{SetConditions, SetOptions};
use wasm_graph::processor::types::{
    BufferOrBytes, BufferOrString, DataModel, Error, Message, ModuleConfiguration,
};

/// What `init` read from the configuration. Operators keep it in a global: the host calls
/// `process` on the instance `init` ran in.
struct Settings {
    lower: f64,
    upper: f64,
    delay_ms: u64,
}

static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    lower: -40.0,
    upper: 3422.0,
    delay_ms: 0,
});

fn settings() -> std::sync::MutexGuard<'static, Settings> {
    SETTINGS.lock().unwrap_or_else(|e| e.into_inner())
}

fn init(operator: &str, configuration: ModuleConfiguration) -> bool {
    let check = configuration
        .properties
        .iter()
        .any(|(k, v)| k == "state_store_check" && v == "true");
    if check && let Err(e) = check_state_store() {
        logger::log(Level::Error, operator, &format!("state store: {e}"));
        return false;
    }
    let mut settings = settings();
    for (key, value) in &configuration.properties {
        let parsed = value.parse::<f64>();
        match (key.as_str(), parsed) {
            ("temperature_lower_bound", Ok(v)) => settings.lower = v,
            ("temperature_upper_bound", Ok(v)) => settings.upper = v,
            ("delay_ms", Ok(v)) => settings.delay_ms = v as u64,
            ("temperature_lower_bound" | "temperature_upper_bound" | "delay_ms", Err(_)) => {
                logger::log(
                    Level::Error,
                    operator,
                    &format!("`{key}` is not a number: {value}"),
                );
                return false;
            }
            _ => {}
        }
    }
    logger::log(
        Level::Info,
        operator,
        &format!(
            "init: bounds ({}, {}), delay {} ms",
            settings.lower, settings.upper, settings.delay_ms
        ),
    );
    true
}

fn set_if(key: &str, value: &str, conditions: SetConditions) -> Result<bool, String> {
    let options = SetOptions {
        conditions,
        expires: None,
    };
    state_store::set(key.as_bytes(), value.as_bytes(), None, None, options)
        .map(|r| r.response)
        .map_err(|e| format!("{e:?}"))
}

fn get(key: &str) -> Option<Vec<u8>> {
    state_store::get(key.as_bytes(), None).ok()?.response
}

/// The state store behaves as `wasm-graph:processor/state-store` says.
fn check_state_store() -> Result<(), String> {
    use SetConditions::{OnlyIfDoesNotExist, OnlyIfEqualOrDoesNotExist, Unconditional};
    let expect = |what: &str, ok: bool| if ok { Ok(()) } else { Err(what.to_string()) };
    let del = |key: &str, value: Option<&str>| {
        match value {
            None => state_store::del(key.as_bytes(), None, None),
            Some(v) => state_store::vdel(key.as_bytes(), v.as_bytes(), None, None),
        }
        .map(|r| r.response)
        .map_err(|e| format!("{e:?}"))
    };
    del("check", None)?;
    expect("set if absent on an absent key", set_if("check", "a", OnlyIfDoesNotExist)?)?;
    expect("set if absent on a present key", !set_if("check", "b", OnlyIfDoesNotExist)?)?;
    expect("the refused set changed nothing", get("check").as_deref() == Some(b"a"))?;
    expect("set if equal, equal", set_if("check", "a", OnlyIfEqualOrDoesNotExist)?)?;
    expect("set if equal, different", !set_if("check", "c", OnlyIfEqualOrDoesNotExist)?)?;
    expect("set unconditionally", set_if("check", "d", Unconditional)?)?;
    expect("vdel of another value is -1", del("check", Some("x"))? == -1)?;
    expect("vdel of the value is 1", del("check", Some("d"))? == 1)?;
    expect("the key is gone", get("check").is_none())?;
    expect("del of an absent key is 0", del("check", None)? == 0)?;
    let expiring = SetOptions {
        conditions: Unconditional,
        expires: Some(wasm_graph::processor::state_store_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
    };
    let refused = state_store::set(b"check", b"e", None, None, expiring);
    expect("expiry is refused, not ignored", refused.is_err() && get("check").is_none())
}

/// Counts one `process` call in the metrics and in the state store; returns the count.
fn count(operator: &str) -> u64 {
    let labels = [Label {
        key: "operator".into(),
        value: operator.into(),
    }];
    let _ = metrics::add_to_counter("requests", CounterValue::U64(1), Some(&labels));
    let key = format!("{operator}-count");
    let seen = state_store::get(key.as_bytes(), None)
        .ok()
        .and_then(|r| r.response)
        .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let options = SetOptions {
        conditions: SetConditions::Unconditional,
        expires: None,
    };
    if let Err(e) = state_store::set(
        key.as_bytes(),
        (seen + 1).to_string().as_bytes(),
        None,
        None,
        options,
    ) {
        logger::log(Level::Warn, operator, &format!("state store: {e:?}"));
    }
    seen + 1
}

fn bytes(b: &BufferOrBytes) -> Vec<u8> {
    match b {
        BufferOrBytes::Buffer(buffer) => buffer.read(),
        BufferOrBytes::Bytes(bytes) => bytes.clone(),
    }
}

fn text(s: &str) -> BufferOrString {
    BufferOrString::String(s.into())
}

fn error(message: impl Into<String>) -> Error {
    Error {
        message: message.into(),
    }
}

fn message(input: &DataModel) -> Result<&Message, Error> {
    match input {
        DataModel::Message(m) => Ok(m),
        _ => Err(error("expected a message")),
    }
}

/// The reading in a message's payload.
fn reading(m: &Message) -> Result<Value, Error> {
    serde_json::from_slice(&bytes(&m.payload))
        .map_err(|e| error(format!("payload is not JSON: {e}")))
}

/// The temperature of a reading, in its unit.
fn temperature(reading: &Value) -> Option<(f64, &str)> {
    let t = reading.get("temperature")?;
    Some((t["value"].as_f64()?, t["unit"].as_str().unwrap_or("C")))
}

struct Operators;

impl map::Guest for Operators {
    fn process(input: DataModel) -> Result<DataModel, Error> {
        let n = count("map");
        let DataModel::Message(mut m) = input else {
            return Err(error("expected a message"));
        };
        let reading = reading(&m)?;
        m.properties
            .user_properties
            .push((text("map-count"), text(&n.to_string())));
        if let Some((f, "F")) = temperature(&reading) {
            let celsius = (f - 32.0) * 5.0 / 9.0;
            let converted = json!({"temperature": {"value": celsius, "unit": "C"}});
            m.payload = BufferOrBytes::Bytes(converted.to_string().into_bytes());
            m.properties
                .user_properties
                .push((text("converted"), text("true")));
        }
        Ok(DataModel::Message(m))
    }

    fn init(configuration: ModuleConfiguration) -> bool {
        init("map", configuration)
    }
}

impl filter::Guest for Operators {
    fn process(input: DataModel) -> Result<bool, Error> {
        count("filter");
        let reading = reading(message(&input)?)?;
        let settings = settings();
        Ok(match temperature(&reading) {
            Some((value, _)) => settings.lower < value && value < settings.upper,
            None => true,
        })
    }

    fn init(configuration: ModuleConfiguration) -> bool {
        init("filter", configuration)
    }
}

impl branch::Guest for Operators {
    fn process(_timestamp: HybridLogicalClock, input: DataModel) -> Result<bool, Error> {
        count("branch");
        let reading = reading(message(&input)?)?;
        Ok(temperature(&reading).is_none())
    }

    fn init(configuration: ModuleConfiguration) -> bool {
        init("branch", configuration)
    }
}

impl accumulate::Guest for Operators {
    fn process(staged: DataModel, inputs: Vec<DataModel>) -> Result<DataModel, Error> {
        count("accumulate");
        let DataModel::Message(mut result) = staged else {
            return Err(error("staged is not a message"));
        };
        let before = bytes(&result.payload);
        let (mut n, mut min, mut max, mut sum, mut last) = if before.is_empty() {
            (0u64, f64::MAX, f64::MIN, 0.0, 0.0)
        } else {
            let t: Value = serde_json::from_slice(&before)
                .map_err(|e| error(format!("staged is not JSON: {e}")))?;
            let t = &t["temperature"];
            let n = t["count"].as_u64().unwrap_or(0);
            (
                n,
                t["min"].as_f64().unwrap_or(f64::MAX),
                t["max"].as_f64().unwrap_or(f64::MIN),
                t["average"].as_f64().unwrap_or(0.0) * n as f64,
                t["last"].as_f64().unwrap_or(0.0),
            )
        };
        for input in &inputs {
            let Some((value, _)) = temperature(&reading(message(input)?)?) else {
                continue;
            };
            n += 1;
            min = min.min(value);
            max = max.max(value);
            sum += value;
            last = value;
        }
        let folded = json!({"temperature": {
            "count": n, "min": min, "max": max, "average": sum / n.max(1) as f64, "last": last,
        }});
        result.payload = BufferOrBytes::Bytes(folded.to_string().into_bytes());
        Ok(DataModel::Message(result))
    }

    fn init(configuration: ModuleConfiguration) -> bool {
        init("accumulate", configuration)
    }
}

impl delay::Guest for Operators {
    fn process(
        _input: DataModel,
        mut timestamp: HybridLogicalClock,
    ) -> Result<HybridLogicalClock, Error> {
        count("delay");
        let delay_ms = settings().delay_ms;
        let nanos = u64::from(timestamp.timestamp.nanos) + (delay_ms % 1000) * 1_000_000;
        timestamp.timestamp.secs += delay_ms / 1000 + nanos / 1_000_000_000;
        timestamp.timestamp.nanos = (nanos % 1_000_000_000) as u32;
        Ok(timestamp)
    }

    fn init(configuration: ModuleConfiguration) -> bool {
        init("delay", configuration)
    }
}

export!(Operators);
