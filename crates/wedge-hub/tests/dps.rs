//! One provisioning (`iothub::dps::provision`) against the emulated DPS on a real Mosquitto,
//! through the emulator's gateway, which checks SAS tokens and client certificates as DPS does.

use std::time::{Duration, Instant};

use serde_json::json;
use wedge_hub::iothub::connection_string::Secret;
use wedge_hub::iothub::dps::{self, Attestation, DpsError, DpsOptions};
use wedge_hub::iothub::session::ClientIdentity;
use wedge_hub_emulator::{
    Assignment, Attestation as Enrolled, Broker, BrokerOptions, DpsEmulator, DpsOptions as Service,
};

const DEADLINE: Duration = Duration::from_secs(20);
/// A group enrollment's primary key, and another group's.
const GROUP_KEY: &str =
    "O8p1PHAGNdwXwq9ZQmvJ6xK1V5C3RxxjXBdGz4pNxQmOXCnEkMH8U8m2C5qX6Jqv9V0n6jDv2HkD/Cb5OZeK6g==";
const OTHER_GROUP_KEY: &str = "b3RoZXItZ3JvdXAta2V5LW9mLTMyLWJ5dGVzLTAxMjM=";
const DEVICE_KEY: &str = "ZGV2aWNlLWtleS1vZi1hbi1pbmRpdmlkdWFsLWVucm9sbG1lbnQ=";

async fn service() -> (Broker, DpsEmulator) {
    let broker = Broker::start(BrokerOptions {
        gateway: true,
        certificates: vec!["camera-3".into()],
        ..BrokerOptions::default()
    })
    .unwrap();
    let dps = DpsEmulator::start(&broker, Service::default())
        .await
        .unwrap();
    (broker, dps)
}

fn options(broker: &Broker, dps: &DpsEmulator, id: &str, attestation: Attestation) -> DpsOptions {
    DpsOptions {
        id_scope: dps.id_scope().into(),
        registration_id: id.into(),
        attestation,
        host: "127.0.0.1".into(),
        port: dps.port(),
        ca_file: Some(broker.ca_pem_path()),
        payload: Some(json!({"modelId": "dtmi:wedge:test;1"})),
        token_ttl: Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn a_group_key_provisions_after_the_retry_after_it_was_told() {
    let (broker, dps) = service().await;
    dps.enroll_group(GROUP_KEY);
    dps.return_payload("wedge-device-01", json!({"site": "hall 7"}));
    let key = dps::derive_device_key(GROUP_KEY, "wedge-device-01").unwrap();
    let started = Instant::now();
    let assignment = dps::provision(
        &options(
            &broker,
            &dps,
            "wedge-device-01",
            Attestation::SymmetricKey(key),
        ),
        DEADLINE,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", dps.refusals(), broker.log()));
    assert_eq!(
        (assignment.hub.as_str(), assignment.device_id.as_str()),
        ("localhost", "wedge-device-01")
    );
    assert_eq!(assignment.payload, Some(json!({"site": "hall 7"})));
    let registrations = dps.registrations();
    assert_eq!(registrations.len(), 1);
    assert_eq!(
        registrations[0].payload,
        json!({"modelId": "dtmi:wedge:test;1"})
    );
    // The emulator answered 202 with retry-after=1: the first poll came no sooner.
    let polls = dps.polls();
    let waited = polls[0] - registrations[0].at;
    assert!(waited >= Duration::from_secs(1), "polled after {waited:?}");
    assert_eq!(
        polls.len(),
        1,
        "one poll after waiting is enough: {polls:?}"
    );
    println!(
        "group-key provisioning took {:?}, first poll after {waited:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_wrong_group_key_is_refused_with_a_clear_error() {
    let (broker, dps) = service().await;
    dps.enroll_group(GROUP_KEY);
    let key = dps::derive_device_key(OTHER_GROUP_KEY, "wedge-device-02").unwrap();
    let error = dps::provision(
        &options(
            &broker,
            &dps,
            "wedge-device-02",
            Attestation::SymmetricKey(key),
        ),
        DEADLINE,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, DpsError::NotAuthorized(_)), "{error:?}");
    assert!(!error.is_transient());
    let message = error.to_string();
    assert!(
        message.contains("DPS refused the connection: not authorized"),
        "{message}"
    );
    assert!(!message.contains(OTHER_GROUP_KEY), "{message}");
    assert!(dps.registrations().is_empty());
    assert!(
        dps.refusals()[0].contains("signature does not match"),
        "{:?}",
        dps.refusals()
    );
}

#[tokio::test]
async fn individual_keys_and_certificates_provision_where_the_enrollment_says() {
    let (broker, dps) = service().await;
    dps.enroll("sensor-7", Enrolled::SymmetricKey(DEVICE_KEY.into()));
    dps.assign(
        "sensor-7",
        Assignment {
            hub: "127.0.0.1".into(),
            device_id: "hall-7-sensor".into(),
        },
    );
    let assignment = dps::provision(
        &options(
            &broker,
            &dps,
            "sensor-7",
            Attestation::SymmetricKey(Secret::new(DEVICE_KEY)),
        ),
        DEADLINE,
    )
    .await
    .unwrap();
    assert_eq!(
        (assignment.hub.as_str(), assignment.device_id.as_str()),
        ("127.0.0.1", "hall-7-sensor")
    );

    // X.509: the certificate's CN is the registration id; no password.
    let (cert_file, key_file) = broker.device_certificate("camera-3").unwrap();
    dps.enroll("camera-3", Enrolled::X509);
    let identity = ClientIdentity {
        cert_file,
        key_file,
    };
    let assignment = dps::provision(
        &options(
            &broker,
            &dps,
            "camera-3",
            Attestation::X509(identity.clone()),
        ),
        DEADLINE,
    )
    .await
    .unwrap();
    assert_eq!(assignment.device_id, "camera-3");
    // The same certificate cannot stand for another registration id.
    dps.enroll("camera-4", Enrolled::X509);
    let error = dps::provision(
        &options(&broker, &dps, "camera-4", Attestation::X509(identity)),
        DEADLINE,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, DpsError::NotAuthorized(_)), "{error:?}");
}

#[tokio::test]
async fn an_unreachable_dps_is_transient() {
    let (broker, dps) = service().await;
    let mut options = options(
        &broker,
        &dps,
        "dev",
        Attestation::SymmetricKey(Secret::new(DEVICE_KEY)),
    );
    options.port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = dps::provision(&options, DEADLINE).await.unwrap_err();
    assert!(matches!(error, DpsError::Unreachable(_)), "{error:?}");
    assert!(error.is_transient());
}
