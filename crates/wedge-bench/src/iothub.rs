//! The end-to-end setting of the telemetry benches: one Mosquitto over TLS with an IoT Hub
//! device identity (SAS) for wedge and a plain user for the baseline publisher, wedge's IoT Hub
//! link draining a durable outbox, and the baseline itself: plain rumqttc at QoS 1.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use wedge_hub::iothub::connection_string::ConnectionString;
use wedge_hub::iothub::session::{IotHub, IotHubOptions};
use wedge_hub::iothub::{sas, topics};
use wedge_hub::{Cloud, Drain};
use wedge_hub_emulator::{Broker, BrokerOptions, client_tls_config};
use wedge_store::{Outbox, OutboxLimits, Store, WhenFull};

/// PUBLISHes the baseline keeps in flight (wedge's link keeps as many).
pub const IN_FLIGHT: u16 = 100;
const PLAIN_USER: &str = "plain";
const PLAIN_PASSWORD: &str = "plain-password";

/// A broker wedge connects to as IoT Hub device `dev1`.
pub struct Hub {
    /// The broker.
    pub broker: Broker,
    identity: topics::Identity,
    token: String,
}

impl Hub {
    /// Starts Mosquitto with TLS, device `dev1` (a SAS token valid for an hour) and the plain
    /// user.
    ///
    /// # Panics
    /// If Mosquitto cannot start.
    pub fn start() -> Hub {
        let identity = topics::Identity {
            host_name: "bench.azure-devices.net".into(),
            device_id: "dev1".into(),
            module_id: None,
        };
        let expiry = sas::unix_seconds(SystemTime::now()) + 3600;
        let token = sas::token("YmVuY2gta2V5", &identity.sas_resource_uri(), None, expiry)
            .expect("token")
            .expose()
            .to_string();
        let broker = Broker::start(BrokerOptions {
            users: vec![
                (
                    identity.username(Some(topics::DEVICE_CLIENT_TYPE)),
                    token.clone(),
                ),
                (PLAIN_USER.into(), PLAIN_PASSWORD.into()),
            ],
            quiet: true,
            ..BrokerOptions::default()
        })
        .expect("mosquitto");
        Hub {
            broker,
            identity,
            token,
        }
    }

    /// wedge's IoT Hub link draining `outbox`, once connected.
    pub async fn link(&self, outbox: Outbox, meta: wedge_store::Meta) -> IotHub {
        let connection = ConnectionString::parse(&format!(
            "HostName={};DeviceId={};GatewayHostName=127.0.0.1;SharedAccessSignature={}",
            self.identity.host_name, self.identity.device_id, self.token
        ))
        .expect("connection string");
        let mut options = IotHubOptions::new(connection);
        options.port = self.broker.port();
        options.ca_file = Some(self.broker.ca_pem_path());
        let drain = Drain {
            outbox,
            id_prefix: "bench".into(),
            meta,
        };
        let (hub, _events) = IotHub::start(options, drain).expect("iot hub link");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !hub.status().connected {
            assert!(
                Instant::now() < deadline,
                "no connection: {:?}",
                hub.status()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        hub
    }

    /// The baseline: one rumqttc client over TLS, [`IN_FLIGHT`] in flight, publishing
    /// `count` bodies of `size` bytes at QoS 1; messages per second from the first PUBLISH to
    /// the last PUBACK.
    pub async fn plain_rumqttc(&self, count: usize, size: usize) -> f64 {
        let mut options = MqttOptions::new("plain", "127.0.0.1", self.broker.port());
        options
            .set_credentials(PLAIN_USER, PLAIN_PASSWORD)
            .set_inflight(IN_FLIGHT)
            .set_max_packet_size(1 << 20, 1 << 20);
        let tls = client_tls_config(&self.broker.ca_pem()).expect("tls");
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
        let (client, mut eventloop) = AsyncClient::new(options, count);
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = eventloop.poll().await.expect("connect") {
                break;
            }
        }
        let start = Instant::now();
        let publisher = tokio::spawn(async move {
            let body = vec![b'x'; size];
            for _ in 0..count {
                client
                    .publish(
                        "devices/plain/messages/events/",
                        QoS::AtLeastOnce,
                        false,
                        body.clone(),
                    )
                    .await
                    .expect("publish");
            }
            client
        });
        let mut acked = 0;
        while acked < count {
            match eventloop.poll().await.expect("baseline connection") {
                Event::Incoming(Packet::PubAck(_)) => acked += 1,
                Event::Outgoing(Outgoing::Disconnect) => panic!("baseline disconnected"),
                _ => {}
            }
        }
        let rate = count as f64 / start.elapsed().as_secs_f64();
        let client = publisher.await.expect("publisher");
        let _ = client.disconnect().await;
        rate
    }
}

/// A durable store in `dir` and its outbox, with room for any run.
pub fn durable_outbox(dir: &std::path::Path) -> (Store, Outbox) {
    let store = Store::open(dir).expect("store");
    let outbox = store.outbox(OutboxLimits {
        max_bytes: 1 << 32,
        ttl: None,
        when_full: WhenFull::Reject,
    });
    (store, outbox)
}

/// Waits until `hub` acknowledged `count` messages; messages per second since `start`.
pub async fn acknowledged(hub: &IotHub, count: usize, start: Instant) -> f64 {
    let deadline = start + Duration::from_secs(180);
    while (hub.status().acknowledged as usize) < count {
        assert!(Instant::now() < deadline, "stalled: {:?}", hub.status());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    count as f64 / start.elapsed().as_secs_f64()
}
