//! X.509 authentication to IoT Hub end to end: a real `wedge run` with an `x509=true` connection
//! string, `cert-file` and `key-file` talks MQTT over TLS to a real Mosquitto that requires
//! client certificates (CN = device id, as IoT Hub's X.509 devices), where the emulator plays
//! the IoT Hub service side.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Host, WEDGE, module, wait_for};
use wedge_hub_emulator::{Broker, BrokerOptions, HubEmulator};
use wedge_test_artifacts::{FILTER, SENSOR};

const TIMEOUT: Duration = Duration::from_secs(30);
const DEVICE: &str = "dev1";
const HUB: &str = "wedge-test.azure-devices.net";

/// A broker requiring client certificates, knowing [`DEVICE`] by its certificate, and the
/// service side on it.
async fn x509_cloud() -> (Broker, HubEmulator) {
    let broker = Broker::start(BrokerOptions {
        x509_devices: vec![DEVICE.into()],
        ..BrokerOptions::default()
    })
    .unwrap();
    let hub = HubEmulator::start(&broker).await.unwrap();
    (broker, hub)
}

/// The IoT Hub upstream with `x509=true` and the given certificate and key, then the demo
/// pipeline (sensor → filter with threshold 30 → `$upstream`). The gateway host makes wedge
/// connect to the local broker while naming the hub in its username.
fn deployment(broker: &Broker, (cert, key): (&Path, &Path)) -> String {
    format!(
        "[upstream]
kind = \"iothub\"
connection-string = \"HostName={HUB};DeviceId={DEVICE};GatewayHostName=127.0.0.1;x509=true\"
ca-file = {ca:?}
cert-file = {cert:?}
key-file = {key:?}
port = {port}

{sensor}{filter}
[routes]
readings = {{ from = \"sensor/readings\", to = \"filter/input\" }}
alerts = {{ from = \"filter/alerts\", to = \"$upstream\" }}
",
        ca = broker.ca_pem_path(),
        port = broker.port(),
        sensor = module("sensor", SENSOR, "tick-ms = 20"),
        filter = module("filter", FILTER, "config = { threshold = 30.0 }"),
    )
}

fn link(host: &Host) -> Value {
    host.request(&json!({"op": "status"})).unwrap()["upstream"]["link"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_x509_device_sends_telemetry_and_its_twin_works() {
    let (broker, hub) = x509_cloud().await;
    let (cert, key) = broker.device_certificate(DEVICE).unwrap();
    let host = Host::start(&deployment(&broker, (&cert, &key)));

    let received = hub
        .wait_for_telemetry(5, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\nwedge:\n{}\nbroker:\n{}", host.log(), broker.log()));
    for message in &received {
        assert_eq!(
            (message.device.as_str(), message.module.as_deref()),
            (DEVICE, None)
        );
        assert_eq!(message.property("wedge-module"), Some("filter"));
        assert!(message.property("$.mid").is_some());
        let body: Value = serde_json::from_slice(&message.body).unwrap();
        assert!(body["temperature"].as_f64().unwrap() > 30.0, "{body}");
    }

    // The twin: a desired patch reaches the filter and is acknowledged 200.
    let patch = json!({"wedge": {"modules": {"filter": {"config": {"threshold": 24.0}}}}});
    let version = hub.set_desired(DEVICE, patch).await.unwrap();
    let ack = |reported: &Value| reported["wedge"]["modules"]["filter"]["config"].clone();
    let acked = hub
        .wait_for_reported(DEVICE, |r| ack(r)["av"] == version, TIMEOUT)
        .await
        .unwrap();
    assert_eq!(ack(&acked)["ac"], 200, "{acked}");
    assert_eq!(ack(&acked)["value"], json!({"threshold": 24.0}));

    let link = link(&host);
    assert_eq!(link["connected"], true, "{link}");
    assert_eq!(link["last-error"], Value::Null, "{link}");
    // Mosquitto took the username from the certificate's CN.
    assert!(
        broker.log().contains(&format!("u'{DEVICE}'")),
        "{}",
        broker.log()
    );
    // Neither the key nor anything from it is logged.
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let key_line = key_pem.lines().nth(1).unwrap();
    assert!(!host.log().contains(key_line), "{}", host.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_another_ca_is_refused_and_status_says_why() {
    let (broker, hub) = x509_cloud().await;
    let (cert, key) = broker.foreign_device_certificate(DEVICE).unwrap();
    let host = Host::start(&deployment(&broker, (&cert, &key)));

    let error = wait_for("the link's last error", TIMEOUT, || {
        link(&host)["last-error"].as_str().map(str::to_owned)
    });
    // Mosquitto refuses the handshake with TLS alert `unknown_ca`.
    assert!(error.contains("UnknownCA"), "{error}");
    assert_eq!(link(&host)["connected"], false);
    let log = broker.log();
    assert!(log.contains("certificate verify failed"), "{log}");
    // The modules run regardless; nothing reached the hub.
    assert_eq!(host.module_status("sensor")["state"], "running");
    assert!(hub.telemetry().is_empty());
}

#[test]
fn x509_without_a_certificate_is_refused_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wedge.toml");
    std::fs::write(
        &path,
        format!(
            "[upstream]\nkind = \"iothub\"\nconnection-string = \"HostName={HUB};DeviceId={DEVICE};x509=true\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(WEDGE)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("run")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:1:1: upstream.connection-string: `x509=true` authenticates with a device certificate",
            path.display()
        )),
        "{stderr}"
    );
}
