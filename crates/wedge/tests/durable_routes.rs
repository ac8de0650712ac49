//! A durable route between modules end to end: `counter` sends numbers to `echo` over a route
//! marked `durable`, `echo` forwards them to the local hub. The host is killed with SIGKILL
//! while messages are on their way between the modules; every number whose send returned ok
//! still reaches the hub.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::{Host, body, module, wait_for};
use wedge_test_artifacts::{COUNTER, ECHO};

const TIMEOUT: Duration = Duration::from_secs(30);
const KILLS: usize = 5;

fn deployment() -> String {
    format!(
        "{}{}
[routes]
counts = {{ from = \"counter/counts\", to = \"echo/in\", durable = true }}
echoed = {{ from = \"echo/out\", to = \"$upstream\" }}
",
        module("counter", COUNTER, "tick-ms = 5\nconfig = { batch = 5 }"),
        // A small inbox: messages wait in the route's queue, not in memory.
        module("echo", ECHO, "inbox = 4"),
    )
}

/// The numbers at the local hub.
fn delivered(host: &Host) -> BTreeSet<u64> {
    host.telemetry()
        .iter()
        .map(|record| body(record)["seq"].as_u64().unwrap())
        .collect()
}

/// The counter's next number: everything below was accepted by the durable route.
fn next(host: &Host) -> u64 {
    host.call("counter", "next", &json!({}))["next"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_durable_route_loses_nothing_when_the_host_is_killed() {
    let mut host = Host::start(&deployment());
    for round in 0..KILLS {
        let before = delivered(&host).len();
        wait_for("more numbers through the route", TIMEOUT, || {
            (delivered(&host).len() >= before + 20).then_some(())
        });
        eprintln!(
            "round {round}: {} numbers at the hub",
            delivered(&host).len()
        );
        host.restart(); // SIGKILL, then the same deployment on the same data dir
    }
    let accepted = next(&host) - 1;
    let seqs = wait_for("every accepted number at the hub", TIMEOUT, || {
        let seqs = delivered(&host);
        (1..=accepted).all(|n| seqs.contains(&n)).then_some(seqs)
    });
    assert!(accepted > 100, "only {accepted} numbers sent");
    assert!(seqs.len() as u64 >= accepted);
    assert!(
        host.data_dir.join("routes/counts/wedge.db").is_file(),
        "the route's queue is on disk"
    );
}
