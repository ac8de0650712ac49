//! Hostile routing: a destination that fails on every message, a sender that floods, and a
//! route cycle. In each case the healthy destinations keep their full rate and get every
//! message exactly once, and what was dropped is counted.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::process::rss_kib;
use support::{Host, body, module, wait_for};
use wedge_test_artifacts::{COUNTER, ECHO, TRAPPER};

const TIMEOUT: Duration = Duration::from_secs(30);

/// How many times each `seq` the local hub has received from `module`.
fn seq_counts(host: &Host, module: &str) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for record in host.telemetry() {
        if record["module"] == module {
            *counts
                .entry(body(&record)["seq"].as_u64().unwrap())
                .or_default() += 1;
        }
    }
    counts
}

fn assert_exactly_once(counts: &BTreeMap<u64, usize>, limit: u64) {
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "duplicates (seq, times): {duplicated:?}"
    );
    let expected: Vec<u64> = (1..=limit).collect();
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), expected);
}

/// A fan-out: `counter/counts` goes to the hub and to a module that traps on every message.
/// Once the trapping module's inbox is full, the hub's route keeps its rate, with no
/// duplicates (a send is all or nothing), and the trapper's inbox drops its oldest messages,
/// counted.
#[test]
fn a_module_that_traps_on_every_message_does_not_stall_its_siblings() {
    const LIMIT: u64 = 400;
    // Both route orders: the failing destination first and last.
    let host = Host::start(&format!(
        "{}{}\
         [routes.a-trap]\nfrom = \"counter/counts\"\nto = \"trapper/in\"\n\
         [routes.b-hub]\nfrom = \"counter/counts\"\nto = \"$upstream\"\n\
         [routes.c-trap]\nfrom = \"counter/counts\"\nto = \"trapper/again\"\n",
        module(
            "counter",
            COUNTER,
            &format!("tick-ms = 5\nconfig = {{ limit = {LIMIT} }}")
        ),
        module("trapper", TRAPPER, "inbox = 4"),
    ));

    wait_for("every number at the hub", TIMEOUT, || {
        (seq_counts(&host, "counter").len() as u64 >= LIMIT).then_some(())
    });
    assert_exactly_once(&seq_counts(&host, "counter"), LIMIT);
    let trapper = host.module_status("trapper");
    assert!(
        trapper["dropped"].as_u64().unwrap() > 0,
        "the trapper's inbox dropped nothing: {trapper}"
    );
    let counter = host.module_status("counter");
    assert_eq!(counter["messages-out"], LIMIT, "{counter}");
}

/// A counter fanning out to the hub and to a slow but healthy `echo` (which forwards what it
/// gets to the hub too), with `when_full` on the route to the echo.
fn slow_fan_out(limit: u64, when_full: &str) -> Host {
    Host::start(&format!(
        "{}{}\
         [routes.hub]\nfrom = \"counter/counts\"\nto = \"$upstream\"\n\
         [routes.slow]\nfrom = \"counter/counts\"\nto = \"echo/in\"\nwhen-full = \"{when_full}\"\n\
         [routes.echo-out]\nfrom = \"echo/out\"\nto = \"$upstream\"\n",
        module(
            "counter",
            COUNTER,
            &format!("tick-ms = 2\nconfig = {{ limit = {limit}, batch = 8 }}")
        ),
        module("echo", ECHO, "inbox = 2\nconfig = { sleep-ms = 5 }"),
    ))
}

/// `when-full = "reject"`: the slow destination pushes back (`full`), the sender tries again,
/// and both destinations get every message exactly once.
#[test]
fn a_slow_destination_that_rejects_pushes_back_without_loss_or_duplicates() {
    const LIMIT: u64 = 100;
    let host = slow_fan_out(LIMIT, "reject");
    wait_for("every number through the echo", TIMEOUT, || {
        (seq_counts(&host, "echo").len() as u64 >= LIMIT).then_some(())
    });
    assert_exactly_once(&seq_counts(&host, "counter"), LIMIT);
    assert_exactly_once(&seq_counts(&host, "echo"), LIMIT);
    let counter = host.module_status("counter");
    assert!(
        counter["errors"].as_u64().unwrap() > 0,
        "never pushed back: {counter}"
    );
    assert_eq!(host.module_status("echo")["dropped"], 0);
}

/// `when-full = "drop-oldest"`: the slow destination makes room instead (counted), and the
/// sender's other route gets everything at its own pace.
#[test]
fn a_slow_destination_that_drops_the_oldest_never_pushes_back() {
    const LIMIT: u64 = 200;
    let host = slow_fan_out(LIMIT, "drop-oldest");
    wait_for("every number at the hub", TIMEOUT, || {
        (seq_counts(&host, "counter").len() as u64 >= LIMIT).then_some(())
    });
    assert_exactly_once(&seq_counts(&host, "counter"), LIMIT);
    let counter = host.module_status("counter");
    assert_eq!(counter["errors"], 0, "pushed back: {counter}");
    let echo = host.module_status("echo");
    assert!(echo["dropped"].as_u64().unwrap() > 0, "{echo}");
    assert_eq!(echo["state"], "running", "{echo}");
}

/// A module sending 1024-message batches as fast as it can next to one sending a reading every
/// few milliseconds: the healthy one's messages all arrive, once each, and the host's memory
/// stays bounded (the flood waits in the outbox on disk, not in memory).
#[test]
fn a_send_flood_does_not_starve_a_healthy_sender() {
    const LIMIT: u64 = 200;
    let host = Host::start(&format!(
        "{}{}\
         [routes.flood]\nfrom = \"flood/counts\"\nto = \"$upstream\"\n\
         [routes.healthy]\nfrom = \"healthy/counts\"\nto = \"$upstream\"\n",
        module("flood", COUNTER, "tick-ms = 1\nconfig = { batch = 1024 }"),
        module(
            "healthy",
            COUNTER,
            &format!("tick-ms = 5\nconfig = {{ limit = {LIMIT} }}")
        ),
    ));
    let mut peak = 0;
    wait_for("every healthy number", TIMEOUT, || {
        peak = peak.max(rss_kib(host.pid()) << 10);
        (seq_counts(&host, "healthy").len() as u64 >= LIMIT).then_some(())
    });
    assert_exactly_once(&seq_counts(&host, "healthy"), LIMIT);
    let flooded = host.module_status("flood")["messages-out"]
        .as_u64()
        .unwrap();
    assert!(flooded > 10 * LIMIT, "the flood sent only {flooded}");
    eprintln!(
        "flood: {flooded} messages; healthy: {LIMIT}; peak RSS {} MiB",
        peak >> 20
    );
    assert!(peak < 256 << 20, "peak RSS {} MiB", peak >> 20);
}
