//! The generic MQTT upstream end to end: a real `wedge run` publishes to a real Mosquitto over
//! TLS with a username and password; a test client reads the telemetry topics and publishes
//! the retained config document.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::mqtt::{MqttSetup, PASSWORD};
use support::{Host, module};
use wedge_hub_emulator::{MqttObserver, Received};
use wedge_test_artifacts::{FILTER, SENSOR};

const TIMEOUT: Duration = Duration::from_secs(30);
const CONFIG_TOPIC: &str = "wedge/dev1/config";
const REPORTED_TOPIC: &str = "wedge/dev1/reported";
const ALERTS_TOPIC: &str = "wedge/dev1/filter/alerts";

/// The demo pipeline, filter alerts to the MQTT upstream.
fn pipeline() -> String {
    format!(
        "{}{}
[routes]
readings = {{ from = \"sensor/readings\", to = \"filter/input\" }}
alerts = {{ from = \"filter/alerts\", to = \"$upstream\" }}
",
        module("sensor", SENSOR, "tick-ms = 20"),
        module("filter", FILTER, "config = { threshold = 30.0 }"),
    )
}

fn temperature(message: &Received) -> f64 {
    serde_json::from_slice::<Value>(&message.payload).unwrap()["temperature"]
        .as_f64()
        .unwrap()
}

fn alerts(received: &[Received]) -> Vec<&Received> {
    received
        .iter()
        .filter(|m| m.topic == ALERTS_TOPIC)
        .collect()
}

/// The latest reported document whose `config` acknowledgement for the filter satisfies `check`.
fn reported_ack(received: &[Received], check: impl Fn(&Value) -> bool) -> Option<Value> {
    received
        .iter()
        .rev()
        .filter(|m| m.topic == REPORTED_TOPIC)
        .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap())
        .find(|doc| check(&doc["wedge"]["modules"]["filter"]["config"]))
}

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_arrives_on_the_templated_topic() {
    let setup = MqttSetup::start();
    let observer = MqttObserver::start(&setup.broker, "wedge/#").await.unwrap();
    let host = Host::start(&setup.deployment(PASSWORD, &pipeline()));
    let received = observer
        .wait_for("10 alerts", TIMEOUT, |r| {
            let alerts = alerts(r);
            (alerts.len() >= 10).then(|| alerts.into_iter().cloned().collect::<Vec<_>>())
        })
        .await
        .unwrap();
    for message in &received {
        assert!(temperature(message) > 30.0, "{message:?}");
    }
    let status = host.request(&json!({"op": "status"})).unwrap();
    assert_eq!(status["upstream"]["kind"], "mqtt", "{status}");
    assert_eq!(status["upstream"]["link"]["connected"], true, "{status}");
    assert!(
        !host.log().contains(PASSWORD),
        "the password must not be logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_refused_and_reported() {
    let setup = MqttSetup::start();
    let host = Host::start(&setup.deployment("not the password", &pipeline()));
    let link = host.wait_for_link_error(TIMEOUT);
    assert_eq!(link["connected"], false);
    assert!(
        link["last-error"].as_str().unwrap().contains("refused"),
        "{link}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retained_config_document_configures_modules() {
    let setup = MqttSetup::start();
    let observer = MqttObserver::start(&setup.broker, "wedge/#").await.unwrap();
    // Retained before wedge starts: the broker hands it over on subscribe.
    let lower = json!({"wedge": {"modules": {"filter": {"config": {"threshold": 24.0}}}}});
    observer
        .publish(CONFIG_TOPIC, lower.to_string(), true)
        .await
        .unwrap();
    let host = Host::start(&setup.deployment(PASSWORD, &pipeline()));
    let acked = observer
        .wait_for("the config acknowledged", TIMEOUT, |r| {
            reported_ack(r, |ack| ack["ac"] == 200)
        })
        .await
        .unwrap();
    let ack = &acked["wedge"]["modules"]["filter"]["config"];
    assert_eq!(ack["value"], json!({"threshold": 24.0}), "{acked}");
    observer
        .wait_for("an alert between 24 and 30", TIMEOUT, |r| {
            alerts(r)
                .iter()
                .any(|m| (24.0..=30.0).contains(&temperature(m)))
                .then_some(())
        })
        .await
        .unwrap();

    // A config the module rejects is acknowledged 400; the filter keeps running on 24.
    let bad = json!({"wedge": {"modules": {"filter": {"config": {"threshold": "warm"}}}}});
    observer
        .publish(CONFIG_TOPIC, bad.to_string(), true)
        .await
        .unwrap();
    let rejected = observer
        .wait_for("the bad config refused", TIMEOUT, |r| {
            reported_ack(r, |ack| ack["ac"] == 400)
        })
        .await
        .unwrap();
    let ack = &rejected["wedge"]["modules"]["filter"]["config"];
    assert!(ack["ad"].as_str().unwrap().contains("threshold"), "{ack}");
    let filter = host.module_status("filter");
    assert_eq!(
        (filter["state"].as_str(), filter["restarts"].as_u64()),
        (Some("running"), Some(0))
    );

    // A document that is not JSON is reported and changes nothing either.
    observer
        .publish(CONFIG_TOPIC, "{not json", true)
        .await
        .unwrap();
    let errored = observer
        .wait_for("the config error reported", TIMEOUT, |r| {
            r.iter()
                .rev()
                .filter(|m| m.topic == REPORTED_TOPIC)
                .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap())
                .find(|doc| doc["wedge"]["config-error"].is_string())
        })
        .await
        .unwrap();
    assert!(
        errored["wedge"]["config-error"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{errored}"
    );
    let before = alerts(&observer.received()).len();
    observer
        .wait_for("alerts between 24 and 30 still arriving", TIMEOUT, |r| {
            alerts(r)[before..]
                .iter()
                .any(|m| (24.0..=30.0).contains(&temperature(m)))
                .then_some(())
        })
        .await
        .unwrap();
}

/// `lastDesiredVersion` in the latest reported document that has one: the version of the
/// config document last applied (also the `av` of its acknowledgements).
fn desired_version(received: &[Received]) -> Option<u64> {
    received
        .iter()
        .rev()
        .filter(|m| m.topic == REPORTED_TOPIC)
        .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
        .find_map(|doc| doc["wedge"]["lastDesiredVersion"].as_u64())
}

#[tokio::test(flavor = "multi_thread")]
async fn config_versions_keep_growing_across_restarts() {
    let setup = MqttSetup::start();
    let observer = MqttObserver::start(&setup.broker, "wedge/#").await.unwrap();
    let config = json!({"wedge": {"modules": {"filter": {"config": {"threshold": 24.0}}}}});
    observer
        .publish(CONFIG_TOPIC, config.to_string(), true)
        .await
        .unwrap();
    let mut host = Host::start(&setup.deployment(PASSWORD, &pipeline()));
    let first = observer
        .wait_for("the config applied", TIMEOUT, |r| {
            reported_ack(r, |ack| ack["ac"] == 200)?;
            desired_version(r)
        })
        .await
        .unwrap();
    // The same retained document after a restart is applied at a later version, never at one
    // already used.
    host.restart();
    let second = observer
        .wait_for("the config applied after the restart", TIMEOUT, |r| {
            desired_version(r).filter(|&v| v != first)
        })
        .await
        .unwrap();
    assert!(second > first, "the version went from {first} to {second}");
}
