//! The cloud side of IoT Hub tests: a real Mosquitto over TLS with the emulator playing the IoT
//! Hub service on it, and deployments of wedge that connect to it.

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde_json::{Value, json};
use wedge_hub::iothub::sas;
use wedge_hub::iothub::topics::{DEVICE_CLIENT_TYPE, Identity};
use wedge_hub_emulator::{Broker, BrokerOptions, HubEmulator, Telemetry};
use wedge_test_artifacts::{ECHO, FILTER, SENSOR};

use super::module;

/// How long the cloud side waits for wedge.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub const DEVICE: &str = "dev1";
pub const HUB: &str = "wedge-test.azure-devices.net";
pub const KEY: &str = "c2VjcmV0LWtleS1mb3Itd2VkZ2UtdGVzdHMtMDEyMzQ1Njc4OQ==";

/// The broker knows the device by the exact username and SAS token IoT Hub would see, so the
/// broker itself refuses anything else.
pub struct Cloud {
    pub broker: Broker,
    pub hub: HubEmulator,
    secrets: tempfile::TempDir,
    pub token: String,
    /// `;ModuleId=...` when wedge connects as a module identity.
    module_id: Option<&'static str>,
}

impl Cloud {
    /// Sets the desired `config` of `module` in the twin of `identity` (`device` or
    /// `device/module`) and waits until wedge acknowledges that version; returns the module's
    /// acknowledgement (`{"value", "ac", "av", "ad"}`) and the whole reported document.
    pub async fn configure(&self, identity: &str, module: &str, config: Value) -> (Value, Value) {
        let patch = json!({"wedge": {"modules": {module: {"config": config}}}});
        let version = self.hub.set_desired(identity, patch).await.unwrap();
        let ack = |reported: &Value| reported["wedge"]["modules"][module]["config"].clone();
        let reported = self
            .hub
            .wait_for_reported(identity, |r| ack(r)["av"] == version, TIMEOUT)
            .await
            .unwrap();
        (ack(&reported), reported)
    }

    pub async fn start() -> Cloud {
        Self::start_as(None).await
    }

    /// The cloud of a device identity, or of module identity `module_id` of the device.
    pub async fn start_as(module_id: Option<&'static str>) -> Cloud {
        let identity = Identity {
            host_name: HUB.into(),
            device_id: DEVICE.into(),
            module_id: module_id.map(String::from),
        };
        let far_future = sas::unix_seconds(SystemTime::now()) + 24 * 3600;
        let token = sas::token(KEY, &identity.sas_resource_uri(), None, far_future).unwrap();
        let token = token.expose().to_string();
        let broker = Broker::start(BrokerOptions {
            users: vec![(identity.username(Some(DEVICE_CLIENT_TYPE)), token.clone())],
            ..BrokerOptions::default()
        })
        .unwrap();
        let hub = HubEmulator::start(&broker).await.unwrap();
        Cloud {
            broker,
            hub,
            secrets: tempfile::tempdir().unwrap(),
            token,
            module_id,
        }
    }

    /// A deployment with the IoT Hub upstream using `token`, followed by `modules` (the
    /// `[modules.*]` and `[routes]` tables, and any other top-level tables).
    pub fn deployment(&self, token: &str, modules: &str) -> String {
        let file = self
            .secrets
            .path()
            .join(format!("connection-{}.txt", token.len()));
        // The gateway host makes wedge connect to the local broker while signing for the hub.
        let module_id = self
            .module_id
            .map(|m| format!("ModuleId={m};"))
            .unwrap_or_default();
        let connection = format!(
            "HostName={HUB};DeviceId={DEVICE};{module_id}GatewayHostName=127.0.0.1;SharedAccessSignature={token}"
        );
        std::fs::write(&file, connection).unwrap();
        format!(
            "[upstream]\nkind = \"iothub\"\nconnection-string-file = {file:?}\nca-file = {ca:?}\nport = {port}\n\n{modules}",
            ca = self.broker.ca_pem_path(),
            port = self.broker.port(),
        )
    }
}

/// The demo pipeline (sensor → filter with threshold 30 → `$upstream`) plus `echo` on the C2D
/// messages and direct methods.
pub fn demo_pipeline() -> String {
    format!(
        "{}{}{}
[routes]
readings = {{ from = \"sensor/readings\", to = \"filter/input\" }}
alerts = {{ from = \"filter/alerts\", to = \"$upstream\" }}
commands = {{ from = \"$upstream/c2d\", to = \"echo/commands\" }}
echoed = {{ from = \"echo/out\", to = \"$upstream\" }}
",
        module("sensor", SENSOR, "tick-ms = 20"),
        module("filter", FILTER, "config = { threshold = 30.0 }"),
        module("echo", ECHO, "method-timeout-ms = 500"),
    )
}

/// The `temperature` of a sensor reading's body.
pub fn temperature(body: &[u8]) -> f64 {
    serde_json::from_slice::<Value>(body).unwrap()["temperature"]
        .as_f64()
        .unwrap()
}

/// The message id wedge assigned (`$.mid`), as (data dir, record id).
pub fn message_id(message: &Telemetry) -> (String, u64) {
    let mid = message.property("$.mid").expect("every message has $.mid");
    let (store, record) = mid
        .rsplit_once('-')
        .unwrap_or_else(|| panic!("malformed $.mid {mid}"));
    (store.to_string(), record.parse().unwrap())
}

/// The message ids wedge assigned, as (data dir, record id) pairs, without duplicates.
pub fn unique_ids(hub: &HubEmulator) -> BTreeSet<(String, u64)> {
    hub.telemetry().iter().map(message_id).collect()
}
