use std::sync::Arc;

use rumqttc::{
    AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};

use super::*;
use crate::HubEmulator;

const TIMEOUT: Duration = Duration::from_secs(10);

fn x509_broker() -> Broker {
    Broker::start(BrokerOptions {
        x509_devices: vec!["dev1".into()],
        ..BrokerOptions::default()
    })
    .unwrap()
}

/// Connects as a device presenting `tls`; the username is IoT Hub's and there is no
/// password, as with `x509=true`.
async fn connect(
    broker: &Broker,
    tls: rustls::ClientConfig,
) -> (AsyncClient, Result<rumqttc::EventLoop, ConnectionError>) {
    let mut options = MqttOptions::new("dev1", "127.0.0.1", broker.port());
    options
        .set_credentials("hub.example/dev1/?api-version=2021-04-12", "")
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    let (client, mut eventloop) = AsyncClient::new(options, 8);
    let connected = tokio::time::timeout(TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the broker answers within the timeout");
    (client, connected.map(|()| eventloop))
}

fn device_tls(broker: &Broker, (cert, key): (PathBuf, PathBuf)) -> rustls::ClientConfig {
    let read = |path: PathBuf| std::fs::read_to_string(path).unwrap();
    client_tls_config_with_cert(&broker.ca_pem(), &read(cert), &read(key)).unwrap()
}

#[tokio::test]
async fn x509_devices_connect_by_certificate_and_their_cn_is_their_identity() {
    let broker = x509_broker();
    assert!(broker.requires_client_certificates());
    assert!(broker.config().contains("require_certificate true"));
    assert_eq!(broker.identities()[0].key(), "dev1");
    // The service side connects with its own certificate.
    let hub = HubEmulator::start(&broker)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", broker.log()));

    let cert = broker.device_certificate("dev1").expect("issued at start");
    assert!(broker.device_certificate("dev2").is_none());
    assert!(broker.device_certificate(SERVICE_USER).is_none());
    let (client, eventloop) = connect(&broker, device_tls(&broker, cert)).await;
    let mut eventloop = eventloop.unwrap_or_else(|e| panic!("{e}\n{}", broker.log()));
    let poller = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    // The ACL is keyed by the CN: its own telemetry topic is allowed, another's is not.
    for device in ["dev2", "dev1"] {
        client
            .publish(
                format!("devices/{device}/messages/events/"),
                QoS::AtLeastOnce,
                false,
                device.as_bytes().to_vec(),
            )
            .await
            .unwrap();
    }
    let telemetry = hub.wait_for_telemetry(1, TIMEOUT).await.unwrap();
    assert_eq!(
        (telemetry[0].device.as_str(), &telemetry[0].body[..]),
        ("dev1", &b"dev1"[..]),
        "{telemetry:?}"
    );
    assert_eq!(hub.telemetry().len(), 1);
    poller.abort();
}

#[tokio::test]
async fn a_certificate_of_another_ca_or_none_is_refused() {
    let broker = x509_broker();
    let foreign = broker.foreign_device_certificate("dev1").unwrap();
    let (_client, refused) = connect(&broker, device_tls(&broker, foreign)).await;
    // Mosquitto (OpenSSL) answers the handshake with an `unknown_ca` alert.
    let error = format!(
        "{:?}",
        refused.err().expect("a foreign certificate connected")
    );
    assert!(error.contains("UnknownCA"), "{error}");
    let (_client, refused) = connect(&broker, client_tls_config(&broker.ca_pem()).unwrap()).await;
    assert!(refused.is_err(), "a client without a certificate connected");
    let log = broker.log();
    assert!(
        log.contains("certificate verify failed") || log.contains("OpenSSL Error"),
        "{log}"
    );
}

#[test]
fn client_certificates_need_tls_and_no_password_users() {
    let err = Broker::start(BrokerOptions {
        x509_devices: vec!["dev1".into()],
        users: vec![("dev2".into(), "pw".into())],
        ..BrokerOptions::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("password users"), "{err}");
    let err = Broker::start(BrokerOptions {
        x509_devices: vec!["dev1".into()],
        tls: false,
        ..BrokerOptions::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}
