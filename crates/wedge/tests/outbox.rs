//! The outbox's limits end to end: the `counter` guest sends numbered messages to a generic
//! MQTT upstream whose broker is down, so that everything stays in the outbox; then the broker
//! comes up and a subscriber sees what was kept.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::mqtt::{MqttSetup, PASSWORD};
use support::{Host, module, wait_for};
use wedge_hub_emulator::{MqttObserver, Received};
use wedge_test_artifacts::COUNTER;

const TIMEOUT: Duration = Duration::from_secs(30);
const COUNTS_TOPIC: &str = "wedge/dev1/counter/counts";

/// `counter` every `tick_ms`, up to `limit` numbers, to `$upstream`; then `outbox`.
fn deployment(setup: &MqttSetup, tick_ms: u64, limit: Option<u64>, outbox: &str) -> String {
    let config = match limit {
        Some(limit) => format!("config = {{ limit = {limit} }}"),
        None => String::new(),
    };
    let rest = format!(
        "{}
[routes]
counts = {{ from = \"counter/counts\", to = \"$upstream\" }}

[outbox]
{outbox}
",
        module(
            "counter",
            COUNTER,
            &format!("tick-ms = {tick_ms}\n{config}")
        ),
    );
    setup.deployment(PASSWORD, &rest)
}

fn outbox(host: &Host) -> Value {
    host.request(&json!({"op": "status"})).unwrap()["outbox"].clone()
}

/// The counter's next number to send.
fn next(host: &Host) -> u64 {
    host.call("counter", "next", &json!({}))["next"]
        .as_u64()
        .unwrap()
}

/// The numbers received, in arrival order.
fn seqs(received: &[Received]) -> Vec<u64> {
    received
        .iter()
        .filter(|m| m.topic == COUNTS_TOPIC)
        .map(|m| {
            serde_json::from_slice::<Value>(&m.payload).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Starts the broker again and waits until the outbox is empty.
async fn reconnect_and_drain(setup: &mut MqttSetup, host: &Host) {
    setup.broker.restart().unwrap();
    wait_for("the outbox drained", 3 * TIMEOUT, || {
        (outbox(host)["depth"] == 0).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_outbox_refuses_sends_and_keeps_what_it_holds() {
    let mut setup = MqttSetup::start();
    let observer = MqttObserver::start(&setup.broker, "wedge/#").await.unwrap();
    setup.broker.stop();
    // About 100 bytes a record: room for a few dozen.
    let host = Host::start(&deployment(
        &setup,
        5,
        None,
        "max-kb = 4\nwhen-full = \"reject\"",
    ));
    let counter = wait_for("the counter told `full`", TIMEOUT, || {
        let counter = host.module_status("counter");
        let error = counter["last-error"].as_str().unwrap_or_default();
        error.to_lowercase().contains("full").then_some(counter)
    });
    assert_eq!(counter["state"], "running", "a refused send is no failure");
    let stored = outbox(&host)["depth"].as_u64().unwrap();
    let accepted = next(&host) - 1;
    assert!(stored >= 20, "{stored} messages stored");
    assert_eq!(
        accepted, stored,
        "every accepted message is stored, nothing more"
    );
    let bytes = outbox(&host)["bytes"].as_u64().unwrap();
    assert!(bytes <= 4 * 1024, "{bytes} bytes stored");

    reconnect_and_drain(&mut setup, &host).await;
    // Everything stored arrives, and the counter carries on from where `full` stopped it.
    let received = observer
        .wait_for("the stored messages and some new ones", TIMEOUT, |r| {
            let seqs = seqs(r);
            (seqs.len() as u64 > stored + 5).then_some(seqs)
        })
        .await
        .unwrap();
    let expected: Vec<u64> = (1..=received.len() as u64).collect();
    assert_eq!(received, expected, "in order, none lost, none twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_oldest_counts_what_it_dropped() {
    let mut setup = MqttSetup::start();
    let observer = MqttObserver::start(&setup.broker, "wedge/#").await.unwrap();
    setup.broker.stop();
    let host = Host::start(&deployment(
        &setup,
        2,
        Some(300),
        "max-kb = 4\nwhen-full = \"drop-oldest\"",
    ));
    wait_for("all 300 sent", TIMEOUT, || {
        (next(&host) == 301).then_some(())
    });
    let status = outbox(&host);
    let (dropped, kept) = (
        status["dropped"].as_u64().unwrap(),
        status["depth"].as_u64().unwrap(),
    );
    assert_eq!(dropped + kept, 300, "{status}");
    assert!(dropped > 0, "{status}");
    assert_eq!(
        host.module_status("counter")["errors"],
        0,
        "no send was refused"
    );

    reconnect_and_drain(&mut setup, &host).await;
    let received = observer
        .wait_for("the kept messages", TIMEOUT, |r| {
            let seqs = seqs(r);
            (seqs.len() as u64 >= kept).then_some(seqs)
        })
        .await
        .unwrap();
    let newest: Vec<u64> = (dropped + 1..=300).collect();
    assert_eq!(
        received, newest,
        "the oldest were dropped, the newest kept in order"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_messages_are_counted_not_sent() {
    let mut setup = MqttSetup::start();
    let observer = MqttObserver::start(&setup.broker, "wedge/#").await.unwrap();
    setup.broker.stop();
    let host = Host::start(&deployment(&setup, 2, Some(50), "ttl-s = 1"));
    wait_for("all 50 stored", TIMEOUT, || {
        (next(&host) == 51).then_some(())
    });
    wait_for("the oldest message past its time to live", TIMEOUT, || {
        (outbox(&host)["oldest-age-ms"].as_u64().unwrap_or(0) > 1_000).then_some(())
    });
    wait_for("the newest past it too", TIMEOUT, || {
        // A second after the last one was stored.
        (outbox(&host)["oldest-age-ms"].as_u64().unwrap_or(0) > 1_500).then_some(())
    });

    reconnect_and_drain(&mut setup, &host).await;
    wait_for("50 expired", TIMEOUT, || {
        (outbox(&host)["expired"] == 50).then_some(())
    });
    // The link has read past them; a marker published after proves the subscriber is
    // connected and would have seen them.
    observer
        .publish("wedge/dev1/marker", "after", false)
        .await
        .unwrap();
    observer
        .wait_for("the marker", TIMEOUT, |r| {
            r.iter()
                .any(|m| m.topic == "wedge/dev1/marker")
                .then_some(())
        })
        .await
        .unwrap();
    assert!(
        seqs(&observer.received()).is_empty(),
        "expired messages are not sent"
    );
}
