//! A real Mosquitto over TLS for the generic MQTT upstream, with the device's password in a
//! file, and a `wedge.toml` pointing at it.

use wedge_hub_emulator::{Broker, BrokerOptions};

/// The device name (also its MQTT username: the broker lets it use `wedge/dev1/#`).
pub const DEVICE: &str = "dev1";
/// The device's password.
pub const PASSWORD: &str = "correct horse battery staple";

/// The broker and where the password file lives.
pub struct MqttSetup {
    pub broker: Broker,
    secrets: tempfile::TempDir,
}

impl MqttSetup {
    pub fn start() -> MqttSetup {
        let broker = Broker::start(BrokerOptions {
            mqtt_users: vec![(DEVICE.into(), PASSWORD.into())],
            ..BrokerOptions::default()
        })
        .unwrap();
        MqttSetup {
            broker,
            secrets: tempfile::tempdir().unwrap(),
        }
    }

    /// A deployment with the MQTT upstream (config and reported topics under
    /// `wedge/dev1/`), logging in with `password`, followed by `rest` (modules, routes,
    /// `[outbox]`).
    pub fn deployment(&self, password: &str, rest: &str) -> String {
        let file = self.secrets.path().join("password");
        std::fs::write(&file, password).unwrap();
        format!(
            "[upstream]
kind = \"mqtt\"
host = \"127.0.0.1\"
port = {port}
ca-file = {ca:?}
device = \"{DEVICE}\"
username = \"{DEVICE}\"
password-file = {file:?}
config-topic = \"wedge/{{device}}/config\"
reported-topic = \"wedge/{{device}}/reported\"

{rest}",
            ca = self.broker.ca_pem_path(),
            port = self.broker.port(),
        )
    }
}
