//! Zero-touch onboarding end to end: a real `wedge run` with only an ID scope and an
//! attestation in `[upstream.dps]` is provisioned by the emulated DPS on a real Mosquitto (SAS
//! tokens and certificates checked by the emulator's gateway as DPS and IoT Hub check them),
//! connects to the hub it was assigned, keeps the assignment for offline starts, and is
//! provisioned again when the hub refuses it.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Host, module, wait_for};
use wedge_hub_emulator::{
    Assignment, Attestation, Broker, BrokerOptions, DpsEmulator, DpsOptions, HubEmulator,
};
use wedge_test_artifacts::{FILTER, SENSOR};

const TIMEOUT: Duration = Duration::from_secs(30);
const GROUP_KEY: &str =
    "O8p1PHAGNdwXwq9ZQmvJ6xK1V5C3RxxjXBdGz4pNxQmOXCnEkMH8U8m2C5qX6Jqv9V0n6jDv2HkD/Cb5OZeK6g==";
const DEVICE_KEY: &str = "ZGV2aWNlLWtleS1vZi1hbi1pbmRpdmlkdWFsLWVucm9sbG1lbnQ=";
const REGISTRATION: &str = "wedge-device-01";

struct Cloud {
    broker: Broker,
    dps: DpsEmulator,
    hub: HubEmulator,
    secrets: tempfile::TempDir,
}

/// A broker with the gateway, DPS on it, and the hub's service side attributing `$iothub`
/// traffic to `device`.
async fn cloud(device: &str) -> Cloud {
    let broker = Broker::start(BrokerOptions {
        gateway: true,
        certificates: vec![REGISTRATION.into()],
        ..BrokerOptions::default()
    })
    .unwrap();
    let dps = DpsEmulator::start(&broker, DpsOptions::default())
        .await
        .unwrap();
    let hub = HubEmulator::start_for(&broker, device).await.unwrap();
    Cloud {
        broker,
        dps,
        hub,
        secrets: tempfile::tempdir().unwrap(),
    }
}

impl Cloud {
    /// A secret in a file of its own.
    fn secret(&self, name: &str, value: &str) -> std::path::PathBuf {
        let path = self.secrets.path().join(name);
        std::fs::write(&path, value).unwrap();
        path
    }

    /// The deployment: `[upstream.dps]` with `attestation` lines, DPS at `endpoint`, then
    /// sensor → filter (threshold 30) → `$upstream`.
    fn deployment(&self, endpoint: &str, attestation: &str) -> String {
        format!(
            "[upstream]
kind = \"iothub\"
ca-file = {ca:?}
port = {port}

[upstream.dps]
id-scope = \"{scope}\"
registration-id = \"{REGISTRATION}\"
global-endpoint = \"{endpoint}\"
model-id = \"dtmi:wedge:sensor;1\"
payload = {{ site = \"hall 7\" }}
{attestation}

{sensor}{filter}
[routes]
readings = {{ from = \"sensor/readings\", to = \"filter/input\" }}
alerts = {{ from = \"filter/alerts\", to = \"$upstream\" }}
",
            ca = self.broker.ca_pem_path(),
            port = self.dps.port(),
            scope = self.dps.id_scope(),
            sensor = module("sensor", SENSOR, "tick-ms = 20"),
            filter = module("filter", FILTER, "config = { threshold = 30.0 }"),
        )
    }

    /// Waits until telemetry from `device` has arrived (at least `n` messages in all).
    async fn telemetry_from(&self, device: &str, n: usize, host: &Host) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let count = self
                .hub
                .telemetry()
                .iter()
                .filter(|m| m.device == device)
                .count();
            if count >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no telemetry from {device}\nrefusals: {:?}\nwedge:\n{}",
                self.dps.refusals(),
                host.log()
            );
            let _ = self
                .hub
                .wait_for_telemetry(self.hub.telemetry().len() + 1, Duration::from_millis(200))
                .await;
        }
    }
}

fn upstream(host: &Host) -> Value {
    host.request(&json!({"op": "status"})).unwrap()["upstream"].clone()
}

/// A loopback port nothing listens on.
fn dead_endpoint() -> String {
    format!("127.0.0.1:{}", support::free_port())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_key_device_is_provisioned_connects_and_restarts_offline_from_the_store() {
    let cloud = cloud(REGISTRATION).await;
    cloud.dps.enroll_group(GROUP_KEY);
    let key_file = cloud.secret("group.key", GROUP_KEY);
    let attestation = format!("group-key-file = {key_file:?}");
    let mut host = Host::start(&cloud.deployment(&cloud.dps.endpoint(), &attestation));

    cloud.telemetry_from(REGISTRATION, 3, &host).await;
    // The device announced its model and custom payload, and waited the 1 s it was told.
    let registrations = cloud.dps.registrations();
    assert_eq!(registrations.len(), 1);
    assert_eq!(
        registrations[0].payload,
        json!({"site": "hall 7", "modelId": "dtmi:wedge:sensor;1"})
    );
    let waited = cloud.dps.polls()[0] - registrations[0].at;
    assert!(waited >= Duration::from_secs(1), "polled after {waited:?}");
    println!("retry-after 1 s: first poll {waited:?} after the register request");

    // The twin works with the assigned identity.
    let patch = json!({"wedge": {"modules": {"filter": {"config": {"threshold": 35.0}}}}});
    let version = cloud.hub.set_desired(REGISTRATION, patch).await.unwrap();
    cloud
        .hub
        .wait_for_reported(
            REGISTRATION,
            |r| r["wedge"]["modules"]["filter"]["config"]["av"] == version,
            TIMEOUT,
        )
        .await
        .unwrap();

    // The hub connection announces the model.
    let login = cloud.dps.hub_logins()[0].clone();
    assert!(
        login.starts_with("localhost/wedge-device-01/?api-version=")
            && login.ends_with("&model-id=dtmi%3Awedge%3Asensor%3B1"),
        "{login}"
    );
    let identity = &upstream(&host)["identity"];
    assert_eq!(
        (
            &identity["hub"],
            &identity["device-id"],
            &identity["from-store"]
        ),
        (&json!("localhost"), &json!(REGISTRATION), &json!(false)),
        "{identity}"
    );
    let out = host.cli(&["status"]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("identity dps: hub localhost, device wedge-device-01 (registration wedge-device-01), provisioned 20"),
        "{out}"
    );
    // Kept privately, without the key.
    let stored = host.data_dir.join("dps-assignment.json");
    let text = std::fs::read_to_string(&stored).unwrap();
    assert!(
        !text.contains(GROUP_KEY) && text.contains("\"hub\": \"localhost\""),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!host.log().contains(GROUP_KEY));

    // `wedge check` sees the identity, the kept assignment and both endpoints.
    let checked = wedge_check(&host);
    assert!(checked.status.success(), "{}", checked.text);
    for line in [
        "ok      dps attestation: registration wedge-device-01 in ID scope",
        "ok      dps assignment: device wedge-device-01 on localhost, provisioned 20",
        "ok      dps tls:",
        "ok      upstream tls:",
    ] {
        assert!(
            checked.text.contains(line),
            "no `{line}` in\n{}",
            checked.text
        );
    }
    assert!(!checked.text.contains(GROUP_KEY));

    // Restart with DPS unreachable: straight to the stored hub.
    std::fs::write(
        &host.deployment.path,
        cloud.deployment(&dead_endpoint(), &attestation),
    )
    .unwrap();
    let logins = cloud.dps.hub_logins().len();
    let restarted = Instant::now();
    host.restart();
    cloud
        .dps
        .wait_for_hub_logins(logins + 1, TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", host.log()));
    println!(
        "restart to hub connection with DPS unreachable: {:?}",
        restarted.elapsed()
    );
    assert_eq!(cloud.dps.registrations().len(), 1, "no DPS round trip");
    wait_for("the link up after the restart", TIMEOUT, || {
        let upstream = upstream(&host);
        (upstream["link"]["connected"] == true).then_some(())
    });
    assert_eq!(upstream(&host)["identity"]["from-store"], true);
    // The check names DPS as unreachable while the kept hub is fine.
    let checked = wedge_check(&host);
    assert!(!checked.status.success(), "{}", checked.text);
    assert!(
        checked
            .text
            .contains("error   dps tcp: TCP connect to 127.0.0.1:")
            && checked.text.contains("ok      upstream tls:"),
        "{}",
        checked.text
    );
}

struct CheckOutput {
    status: std::process::ExitStatus,
    text: String,
}

/// `wedge check` of the host's deployment and data dir.
fn wedge_check(host: &Host) -> CheckOutput {
    let deployment = host.deployment.path.to_str().unwrap().to_string();
    let out = host.cli(&["check", &deployment]);
    CheckOutput {
        status: out.status,
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_refusing_the_identity_makes_wedge_provision_again() {
    let cloud = cloud("moved-device").await;
    cloud
        .dps
        .enroll(REGISTRATION, Attestation::SymmetricKey(DEVICE_KEY.into()));
    let key_file = cloud.secret("device.key", DEVICE_KEY);
    let deployment = cloud.deployment(
        &cloud.dps.endpoint(),
        &format!("symmetric-key-file = {key_file:?}"),
    );
    let mut cloud = cloud;
    let host = Host::start(&deployment);
    cloud.telemetry_from(REGISTRATION, 1, &host).await;

    // The device is deleted from its hub and its enrollment now points elsewhere; the broker
    // restart ends the connection, as a hub maintenance would.
    cloud.dps.remove_device("localhost", REGISTRATION);
    cloud.dps.assign(
        REGISTRATION,
        Assignment {
            hub: "127.0.0.1".into(),
            device_id: "moved-device".into(),
        },
    );
    cloud.broker.restart().unwrap();
    cloud.telemetry_from("moved-device", 1, &host).await;
    assert_eq!(cloud.dps.registrations().len(), 2);
    assert!(
        cloud.dps.refusals().iter().any(|r| r.contains("no device")),
        "{:?}",
        cloud.dps.refusals()
    );
    let identity = &upstream(&host)["identity"];
    assert_eq!(
        (&identity["hub"], &identity["device-id"]),
        (&json!("127.0.0.1"), &json!("moved-device")),
        "{identity}"
    );
    let stored = std::fs::read_to_string(host.data_dir.join("dps-assignment.json")).unwrap();
    assert!(stored.contains("moved-device"), "{stored}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_x509_device_is_provisioned_by_its_certificate() {
    let cloud = cloud(REGISTRATION).await;
    cloud.dps.enroll(REGISTRATION, Attestation::X509);
    let (cert, key) = cloud.broker.device_certificate(REGISTRATION).unwrap();
    let host = Host::start(&cloud.deployment(&cloud.dps.endpoint(), &certificate(&cert, &key)));
    cloud.telemetry_from(REGISTRATION, 1, &host).await;
    assert_eq!(cloud.dps.registrations().len(), 1);
}

fn certificate(cert: &Path, key: &Path) -> String {
    format!("cert-file = {cert:?}\nkey-file = {key:?}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_group_key_is_shown_as_refused() {
    let cloud = cloud(REGISTRATION).await;
    cloud.dps.enroll_group(GROUP_KEY);
    let wrong = "b3RoZXItZ3JvdXAta2V5LW9mLTMyLWJ5dGVzLTAxMjM=";
    let key_file = cloud.secret("group.key", wrong);
    let host = Host::start(&cloud.deployment(
        &cloud.dps.endpoint(),
        &format!("group-key-file = {key_file:?}"),
    ));
    let error = wait_for("the refusal in wedge status", TIMEOUT, || {
        let identity = upstream(&host)["identity"].clone();
        identity["error"]
            .as_str()
            .filter(|e| e.contains("not authorized"))
            .map(String::from)
    });
    assert!(error.contains("DPS refused the connection"), "{error}");
    let out = host.cli(&["status"]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("identity dps (registration wedge-device-01): provisioning: DPS refused"),
        "{out}"
    );
    assert!(cloud.dps.registrations().is_empty());
    assert!(!host.log().contains(wrong));
}
