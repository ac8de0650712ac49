//! A module written against the standard `wasi:keyvalue` and `wasi:config` (the `wasi-std`
//! test guest, no wedge SDK) runs in wedge: its configuration comes through `wasi:config` as
//! flat keys, live; its keyvalue bucket is the module's durable state (kept across a host
//! restart, under the state quota); batch calls and unknown buckets behave as the interface
//! says.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Host, body, module, wait_for};
use wedge_test_artifacts::WASI_STD;

const TIMEOUT: Duration = Duration::from_secs(30);

fn deployment() -> String {
    format!(
        "{}[routes]\nout = {{ from = \"std/out\", to = \"$upstream\" }}\n",
        module(
            "std",
            WASI_STD,
            "tick-ms = 20\nstate-kb = 64\nconfig = { threshold = 30, units = { temperature = \"celsius\" } }"
        )
    )
}

/// The bodies the module sent, in order.
fn bodies(host: &Host) -> Vec<Value> {
    host.telemetry().iter().map(body).collect()
}

#[test]
fn config_and_keyvalue_work_through_the_standard_interfaces() {
    let mut host = Host::start(&deployment());
    let sent = wait_for("five ticks", TIMEOUT, || {
        let sent = bodies(&host);
        (sent.len() >= 5).then_some(sent)
    });
    // `atomics.increment` counts 1, 2, 3, ...; config keys are flat, values text.
    for (i, body) in sent.iter().enumerate() {
        assert_eq!(body["ticks"], i as u64 + 1, "{sent:?}");
        assert_eq!(
            (&body["threshold"], &body["unit"]),
            (&json!("30"), &json!("celsius"))
        );
    }
    assert_eq!(
        host.call("std", "config", &json!({})),
        json!({"threshold": "30", "units.temperature": "celsius"})
    );

    // A live change is seen by the next call.
    let out = host.cli(&["twin", "set", "std", "threshold=24"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the new threshold", TIMEOUT, || {
        bodies(&host)
            .iter()
            .any(|b| b["threshold"] == "24")
            .then_some(())
    });

    let batch = host.call("std", "batch", &json!({}));
    assert_eq!(
        batch["get-many"],
        json!([["a", "1"], ["b", "2"], null]),
        "{batch}"
    );
    assert_eq!(
        (&batch["a-exists"], &batch["b-exists"]),
        (&json!(false), &json!(true))
    );
    assert_eq!(batch["b"], "2");
    assert_eq!(batch["keys"], json!(["b", "ticks"]), "{batch}");
    assert_eq!(batch["cursor"], Value::Null);

    assert_eq!(
        host.call("std", "open-other", &json!({})),
        json!({"error": "Error::NoSuchStore"})
    );
    // The bucket is the module's state: its quota (64 KiB) holds.
    let big = host.call("std", "big", &json!({"bytes": 100_000}));
    assert!(
        big["error"].as_str().is_some_and(|e| e.contains("quota")),
        "{big}"
    );

    // Durable: after a host restart the count goes on from where it was (a count kept in
    // memory would start at 1 again).
    let sent_before = bodies(&host).len();
    host.restart();
    let ticks: Vec<u64> = wait_for("ticks after the restart", TIMEOUT, || {
        let sent = bodies(&host);
        (sent.len() >= sent_before + 5).then_some(sent)
    })
    .iter()
    .map(|b| b["ticks"].as_u64().unwrap())
    .collect();
    assert!(
        ticks.windows(2).all(|w| w[0] < w[1]),
        "the count went back after the restart: {ticks:?}"
    );
}
