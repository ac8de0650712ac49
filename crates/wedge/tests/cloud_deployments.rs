//! Deployments from the cloud itself: the IoT Hub twin's `desired.wedge` (through the
//! emulator on a real Mosquitto) and an MQTT broker's retained config document add a module
//! from a real OCI registry to a host that started with nothing but its upstream, and the
//! outcome comes back in the reported state.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::iothub::{Cloud, DEVICE};
use support::mqtt::{MqttSetup, PASSWORD};
use support::{Host, wait_for};
use wedge_hub_emulator::MqttObserver;
use wedge_test_artifacts::COUNTER;
use wedge_test_registry::Registry;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A registry holding the counter guest as `wedge/counter:1.0`.
async fn registry() -> Registry {
    let registry = Registry::start().unwrap();
    let wasm = std::fs::read(COUNTER).unwrap();
    registry
        .push_wasm("wedge/counter", "1.0", &wasm)
        .await
        .unwrap();
    registry
}

/// The counter from `registry`, its numbers to the cloud.
fn counter_deployment(registry: &Registry) -> Value {
    json!({
        "modules": { "counter": { "source": registry.oci_source("wedge/counter:1.0"),
                                  "tick-ms": 20 } },
        "routes": { "up": { "from": "counter/counts", "to": "$upstream" } },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_iothub_twin_deploys_a_module_from_a_registry() {
    let registry = registry().await;
    let cloud = Cloud::start().await;
    let host = Host::start(&cloud.deployment(&cloud.token, ""));

    let patch = json!({ "wedge": counter_deployment(&registry) });
    let version = cloud.hub.set_desired(DEVICE, patch).await.unwrap();
    let applied = |r: &Value| r["wedge"]["lastDesiredVersion"] == version;
    let reported = cloud
        .hub
        .wait_for_reported(DEVICE, applied, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        reported["wedge"]["lastDesiredStatus"]["code"], 200,
        "{reported}"
    );
    let received = cloud.hub.wait_for_telemetry(5, TIMEOUT).await.unwrap();
    assert!(
        received
            .iter()
            .all(|m| m.property("wedge-module") == Some("counter"))
    );
    let running = |r: &Value| r["wedge"]["modules"]["counter"]["runtimeStatus"] == "running";
    cloud
        .hub
        .wait_for_reported(DEVICE, running, TIMEOUT)
        .await
        .unwrap();

    // A broken addition is refused whole, reported 400, and the counter keeps sending.
    let bad = json!({"wedge": {"modules": {"extra": {
        "source": registry.oci_source("wedge/counter:1.0"), "sha256": "0".repeat(64) }}}});
    let version = cloud.hub.set_desired(DEVICE, bad).await.unwrap();
    let refused = |r: &Value| r["wedge"]["lastDesiredVersion"] == version;
    let reported = cloud
        .hub
        .wait_for_reported(DEVICE, refused, TIMEOUT)
        .await
        .unwrap();
    let status = &reported["wedge"]["lastDesiredStatus"];
    assert_eq!(status["code"], 400, "{reported}");
    assert!(
        status["description"]
            .as_str()
            .unwrap()
            .contains("modules.extra.source"),
        "{status}"
    );
    let sent = cloud.hub.telemetry().len();
    cloud
        .hub
        .wait_for_telemetry(sent + 5, TIMEOUT)
        .await
        .unwrap();
    let modules = host.request(&json!({"op": "status"})).unwrap()["modules"].clone();
    assert_eq!(modules.as_array().unwrap().len(), 1, "{modules}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mqtt_config_topic_deploys_a_module_from_a_registry() {
    let registry = registry().await;
    let setup = MqttSetup::start();
    let observer = MqttObserver::start(&setup.broker, "wedge/#").await.unwrap();
    let document = json!({ "wedge": counter_deployment(&registry) });
    observer
        .publish("wedge/dev1/config", document.to_string(), true)
        .await
        .unwrap();
    let host = Host::start(&setup.deployment(PASSWORD, ""));

    observer
        .wait_for("numbers from the deployed counter", TIMEOUT, |received| {
            let counts = received
                .iter()
                .filter(|m| m.topic == "wedge/dev1/counter/counts")
                .count();
            (counts >= 5).then_some(())
        })
        .await
        .unwrap();
    let reported = observer
        .wait_for("the deployment reported", TIMEOUT, |received| {
            received
                .iter()
                .rev()
                .filter(|m| m.topic == "wedge/dev1/reported")
                .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap())
                .find(|doc| doc["wedge"]["modules"]["counter"]["runtimeStatus"] == "running")
        })
        .await
        .unwrap();
    assert_eq!(
        reported["wedge"]["lastDesiredStatus"]["code"], 200,
        "{reported}"
    );
    assert_eq!(reported["wedge"]["lastDesiredVersion"], 1, "{reported}");
    wait_for("the counter in wedge status", TIMEOUT, || {
        (host.module_status("counter")["state"] == "running").then_some(())
    });
}
