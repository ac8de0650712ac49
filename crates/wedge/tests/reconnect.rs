//! Back online within a second (issue 14), end to end: a real `wedge run` with the `counter`
//! guest sending all along, a real Mosquitto stopped for 5 s and 30 s and started again, for the
//! IoT Hub upstream (hub emulator) and the MQTT upstream. After the broker is back the first
//! PUBACK must come within a second (asserted with a generous 3 s: two cores are shared) and
//! every stored message must follow, in order, none lost. Also: CPU near idle while the broker
//! is down, and a refused credential retried with growing intervals and shown as such.
//!
//! The 5 s and 30 s outages run in every `cargo test` (the tests of this file run in parallel,
//! about 45 s of wall time in all); the 120 s outage is `#[ignore]`d (`cargo test -p wedge
//! --test reconnect -- --ignored`).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::iothub::{Cloud, message_id};
use support::mqtt::{MqttSetup, PASSWORD};
use support::process::cpu_time;
use support::{Host, module, wait_for};
use wedge_hub_emulator::{Broker, MqttObserver};
use wedge_test_artifacts::COUNTER;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The bound on the first PUBACK after the broker is back: the goal is 1 s, this leaves room
/// for a loaded machine.
const BACK_ONLINE: Duration = Duration::from_secs(3);
const COUNTS_TOPIC: &str = "wedge/dev1/counter/counts";

/// The `counter` guest sending 50 numbers a second to `$upstream`.
fn counter() -> String {
    format!(
        "{}\n[routes]\ncounts = {{ from = \"counter/counts\", to = \"$upstream\" }}\n",
        module("counter", COUNTER, "tick-ms = 20")
    )
}

fn link(host: &Host) -> Value {
    host.request(&json!({"op": "status"})).unwrap()["upstream"]["link"].clone()
}

/// The counter's next number: every number below it was accepted by the host.
fn counter_next(host: &Host) -> u64 {
    host.call("counter", "next", &Value::Null)["next"]
        .as_u64()
        .unwrap()
}

/// The share of a core the host used over a `window` from now.
fn cpu_share(host: &Host, window: Duration) -> f64 {
    let (before, started) = (cpu_time(host.pid()), Instant::now());
    // The window measured: the scenario, not a wait for a condition.
    std::thread::sleep(window);
    (cpu_time(host.pid()) - before).as_secs_f64() / started.elapsed().as_secs_f64()
}

/// Stops the broker for `outage` while the counter sends, starts it again and returns how long
/// the first PUBACK took after that, and how many messages were stored meanwhile. Checks on the
/// way that the link says why it is down and that the host stayed near idle.
fn outage(host: &Host, broker: &mut Broker, outage: Duration) -> (Duration, u64) {
    broker.stop();
    let stopped = Instant::now();
    // Read once the link is down: PUBACKs still arrive while the broker shuts down.
    let acknowledged = wait_for("the link to see the broker gone", TIMEOUT, || {
        let link = link(host);
        (link["retry"]["reason"] == "unreachable").then(|| link["acknowledged"].as_u64().unwrap())
    });
    // The rest of the outage is measured.
    let share = cpu_share(host, outage.saturating_sub(stopped.elapsed()));
    let stored = host.request(&json!({"op": "status"})).unwrap()["outbox"]["depth"]
        .as_u64()
        .unwrap();
    // `restart` returns within 10 ms of Mosquitto accepting connections.
    broker.restart().unwrap();
    let up = Instant::now();
    let first_ack = loop {
        if link(host)["acknowledged"].as_u64().unwrap() > acknowledged {
            break up.elapsed();
        }
        assert!(
            up.elapsed() < TIMEOUT,
            "no PUBACK {:?} after the broker came back: {}",
            up.elapsed(),
            link(host)
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    eprintln!(
        "outage of {outage:?}: {stored} messages stored, first PUBACK {first_ack:?} after the \
         broker was back; host CPU while down {:.2} % of a core (module sending included)",
        share * 100.0
    );
    assert!(first_ack < BACK_ONLINE, "first PUBACK after {first_ack:?}");
    // The module sends 50 messages a second into a durable outbox meanwhile; the link itself
    // sleeps between probes.
    assert!(share < 0.25, "{:.1} % of a core while down", share * 100.0);
    (first_ack, stored)
}

/// `seqs` in arrival order (duplicates of at-least-once delivery included): each number's first
/// arrival in increasing order, and every number in `1..=n` there.
fn assert_in_order_none_lost(seqs: &[u64], n: u64) {
    let mut seen = BTreeSet::new();
    let firsts: Vec<u64> = seqs.iter().copied().filter(|s| seen.insert(*s)).collect();
    let out_of_order = firsts.windows(2).position(|w| w[0] >= w[1]);
    assert_eq!(out_of_order, None, "numbers out of order: {firsts:?}");
    let missing: Vec<u64> = (1..=n).filter(|s| !seen.contains(s)).collect();
    assert!(missing.is_empty(), "numbers lost: {missing:?}");
}

fn iothub_seqs(cloud: &Cloud) -> Vec<u64> {
    let telemetry = cloud.hub.telemetry();
    // Record ids are unique per message and never reused: no id may be missing either.
    let ids: BTreeSet<u64> = telemetry.iter().map(|m| message_id(m).1).collect();
    let max = ids.last().copied().unwrap_or(0);
    assert_eq!(ids.len() as u64, max, "record ids missing below {max}");
    telemetry
        .iter()
        .map(|m| {
            serde_json::from_slice::<Value>(&m.body).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

async fn iothub_outages(outages: &[u64]) {
    let mut cloud = Cloud::start().await;
    let host = Host::start(&cloud.deployment(&cloud.token, &counter()));
    cloud.hub.wait_for_telemetry(10, TIMEOUT).await.unwrap();
    for &seconds in outages {
        let (_, stored) = outage(&host, &mut cloud.broker, Duration::from_secs(seconds));
        assert!(stored > 0, "the module sent while the broker was down");
        let n = counter_next(&host) - 1;
        wait_for("every number accepted at the hub", TIMEOUT, || {
            let seqs: BTreeSet<u64> = iothub_seqs(&cloud).into_iter().collect();
            (1..=n).all(|s| seqs.contains(&s)).then_some(())
        });
        assert_in_order_none_lost(&iothub_seqs(&cloud), n);
    }
}

async fn mqtt_outages(outages: &[u64]) {
    let mut setup = MqttSetup::start();
    let observer = MqttObserver::start(&setup.broker, COUNTS_TOPIC)
        .await
        .unwrap();
    let host = Host::start(&setup.deployment(PASSWORD, &counter()));
    let seqs = |observer: &MqttObserver| -> Vec<u64> {
        observer
            .received()
            .iter()
            .map(|m| {
                serde_json::from_slice::<Value>(&m.payload).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    wait_for("telemetry at the broker", TIMEOUT, || {
        (seqs(&observer).len() >= 10).then_some(())
    });
    for &seconds in outages {
        let (_, stored) = outage(&host, &mut setup.broker, Duration::from_secs(seconds));
        assert!(stored > 0, "the module sent while the broker was down");
        let n = counter_next(&host) - 1;
        // The observer's persistent session keeps what arrives before it is back itself.
        wait_for("every number accepted at the broker", TIMEOUT, || {
            let got: BTreeSet<u64> = seqs(&observer).into_iter().collect();
            (1..=n).all(|s| got.contains(&s)).then_some(())
        });
        assert_in_order_none_lost(&seqs(&observer), n);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn iothub_is_back_within_a_second_after_5_and_30_s_outages() {
    iothub_outages(&[5, 30]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtt_is_back_within_a_second_after_5_and_30_s_outages() {
    mqtt_outages(&[5, 30]).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a 120 s outage: run with --ignored"]
async fn both_upstreams_are_back_within_a_second_after_a_120_s_outage() {
    tokio::join!(iothub_outages(&[120]), mqtt_outages(&[120]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_is_near_idle_while_the_broker_is_down() {
    let mut setup = MqttSetup::start();
    // A module that has sent all it will send: what is measured is the link waiting.
    let counter = counter().replace("tick-ms = 20", "tick-ms = 20\nconfig = { limit = 20 }");
    let host = Host::start(&setup.deployment(PASSWORD, &counter));
    wait_for("every number acknowledged", TIMEOUT, || {
        (link(&host)["acknowledged"].as_u64() == Some(20)).then_some(())
    });
    // The same host connected, as the baseline: the module's ticks and wasmtime's epoch
    // ticker cost the same either way.
    let connected = cpu_share(&host, Duration::from_secs(10));
    setup.broker.stop();
    wait_for("the link to see the broker gone", TIMEOUT, || {
        (link(&host)["retry"]["reason"] == "unreachable").then_some(())
    });
    let down = cpu_share(&host, Duration::from_secs(30));
    eprintln!(
        "idle host: {:.2} % of a core connected, {:.2} % over 30 s with the broker down",
        connected * 100.0,
        down * 100.0
    );
    assert!(down < 0.02, "{:.2} % of a core", down * 100.0);
    assert!(
        down < connected + 0.01,
        "the link costs more down ({down:.4}) than up ({connected:.4})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_credential_is_retried_with_growing_intervals_and_shown() {
    let setup = MqttSetup::start();
    let host = Host::start(&setup.deployment("not the password", &counter()));
    // Each failed attempt bumps `failures`; note when each one is first seen.
    let mut attempts: Vec<(u64, Instant)> = Vec::new();
    let started = Instant::now();
    while attempts.len() < 5 {
        let link = link(&host);
        if let Some(failures) = link["retry"]["failures"].as_u64()
            && attempts.last().is_none_or(|(last, _)| failures > *last)
        {
            assert_eq!(link["retry"]["reason"], "refused", "{link}");
            attempts.push((failures, Instant::now()));
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "attempts so far {attempts:?}: {link}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first attempt may have been seen late (before the control socket answered).
    let intervals: Vec<Duration> = attempts[1..].windows(2).map(|w| w[1].1 - w[0].1).collect();
    eprintln!("refused: intervals between attempts {intervals:?}");
    for pair in intervals.windows(2) {
        // Doubling with up to 25 % jitter: never less than 1.5 times the interval before.
        assert!(
            pair[1].as_secs_f64() > 1.5 * pair[0].as_secs_f64(),
            "intervals do not grow: {intervals:?}"
        );
    }
    let status = host.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("retrying in ") && text.contains("not authorized"),
        "{text}"
    );
}
