//! Telemetry throughput to Mosquitto over TLS at QoS 1: wedge's IoT Hub upstream against a plain
//! rumqttc publisher, measured in the same run on the same broker (the ratio is what matters on
//! a noisy machine). Run with `cargo xtask bench`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use wedge_hub::Cloud;
use wedge_hub::iothub::connection_string::ConnectionString;
use wedge_hub::iothub::session::{IotHub, IotHubOptions};
use wedge_hub::iothub::{sas, topics};
use wedge_hub_emulator::{Broker, BrokerOptions, client_tls_config};
use wedge_runtime::{Message, Upstream, UpstreamMessage};

const MESSAGES: usize = 20_000;
const BODY: usize = 256;
const IN_FLIGHT: u16 = 100;
const ROUNDS: usize = 3;

#[tokio::main]
async fn main() {
    let identity = topics::Identity {
        host_name: "bench.azure-devices.net".into(),
        device_id: "dev1".into(),
        module_id: None,
    };
    let expiry = sas::unix_seconds(SystemTime::now()) + 3600;
    let token = sas::token("YmVuY2gta2V5", &identity.sas_resource_uri(), None, expiry).unwrap();
    let broker = Broker::start(BrokerOptions {
        users: vec![
            (
                identity.username(Some(topics::DEVICE_CLIENT_TYPE)),
                token.expose().to_string(),
            ),
            ("plain".into(), "plain-password".into()),
        ],
        ..BrokerOptions::default()
    })
    .expect("mosquitto");

    println!(
        "telemetry to Mosquitto over TLS, QoS 1, {MESSAGES} messages of {BODY} B, median of {ROUNDS}"
    );
    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let plain = plain_rumqttc(&broker).await;
        let wedge = wedge_upstream(&broker, &identity, token.expose()).await;
        let ratio = wedge / plain;
        println!(
            "round {round}: plain rumqttc {plain:>8.0} msg/s   wedge upstream {wedge:>8.0} msg/s   ratio {ratio:.2}"
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio wedge/plain: {:.2}", ratios[ROUNDS / 2]);
}

/// The baseline: one rumqttc client, 100 in flight, counting PUBACKs.
async fn plain_rumqttc(broker: &Broker) -> f64 {
    let mut options = MqttOptions::new("plain", "127.0.0.1", broker.port());
    options
        .set_credentials("plain", "plain-password")
        .set_inflight(IN_FLIGHT);
    let tls = client_tls_config(&broker.ca_pem()).unwrap();
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls),
    )));
    let (client, mut eventloop) = AsyncClient::new(options, MESSAGES);
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await.unwrap() {
            break;
        }
    }
    let start = Instant::now();
    let publisher = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            client
                .publish(
                    "devices/plain/messages/events/",
                    QoS::AtLeastOnce,
                    false,
                    vec![b'x'; BODY],
                )
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < MESSAGES {
        match eventloop.poll().await.unwrap() {
            Event::Incoming(Packet::PubAck(_)) => acked += 1,
            Event::Outgoing(Outgoing::Disconnect) => panic!("disconnected"),
            _ => {}
        }
    }
    let rate = MESSAGES as f64 / start.elapsed().as_secs_f64();
    drop(publisher.await.unwrap());
    rate
}

/// wedge: `Upstream::send` as the router calls it for `$upstream` targets, until the hub
/// session has seen every PUBACK.
async fn wedge_upstream(broker: &Broker, identity: &topics::Identity, token: &str) -> f64 {
    let connection = ConnectionString::parse(&format!(
        "HostName={};DeviceId={};GatewayHostName=127.0.0.1;SharedAccessSignature={token}",
        identity.host_name, identity.device_id
    ))
    .unwrap();
    let mut options = IotHubOptions::new(connection);
    options.port = broker.port();
    options.ca_file = Some(broker.ca_pem_path());
    let (hub, _events) = IotHub::start(options).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hub.status().connected {
        assert!(
            Instant::now() < deadline,
            "wedge did not connect: {:?}",
            hub.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let message = Message {
        body: vec![b'x'; BODY],
        content_type: Some("application/json".into()),
        ..Message::default()
    };
    let start = Instant::now();
    for _ in 0..MESSAGES {
        let upstream = UpstreamMessage {
            module: "bench".into(),
            output: "out".into(),
            message: message.clone(),
            enqueued: SystemTime::now(),
        };
        hub.send(upstream).await.unwrap();
    }
    while (hub.status().acknowledged as usize) < MESSAGES {
        assert!(
            Instant::now() < deadline + Duration::from_secs(120),
            "stalled: {:?}",
            hub.status()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}
