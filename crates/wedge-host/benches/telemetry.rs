//! Telemetry throughput to Mosquitto over TLS at QoS 1, against a plain rumqttc publisher
//! measured in the same run on the same broker (the ratio is what matters on a noisy machine):
//! - end to end: a real module (the `counter` guest, `send-batch` of 100) through the runtime,
//!   the durable outbox and the IoT Hub link;
//! - the outbox and link alone, with the outbox on disk (durable) and in memory.
//!
//! Run with `cargo xtask bench`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use wedge_core::{Message, UpstreamMessage};
use wedge_host::config::Deployment;
use wedge_hub::iothub::connection_string::ConnectionString;
use wedge_hub::iothub::session::{IotHub, IotHubOptions};
use wedge_hub::iothub::{sas, topics};
use wedge_hub::{Cloud, Drain};
use wedge_hub_emulator::{Broker, BrokerOptions, client_tls_config};
use wedge_runtime::{EngineCtx, Runtime};
use wedge_store::{Outbox, OutboxLimits, Store, WhenFull};
use wedge_test_artifacts::COUNTER;

const MESSAGES: usize = 20_000;
const BODY: usize = 256;
const IN_FLIGHT: u16 = 100;
/// Messages per outbox append, as a module's `send-batch` makes them.
const BATCH: usize = 100;
/// Rounds of each measurement; the medians are printed (this machine is noisy).
const ROUNDS: usize = 5;

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
        quiet: true,
        ..BrokerOptions::default()
    })
    .expect("mosquitto");

    println!(
        "telemetry to Mosquitto over TLS, QoS 1, {MESSAGES} messages of {BODY} B, median of {ROUNDS}"
    );
    let (mut durable_ratios, mut memory_ratios, mut module_ratios) =
        (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let plain = plain_rumqttc(&broker).await;
        let module = module_e2e(&broker, &identity, token.expose()).await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let durable = wedge_upstream(&broker, &identity, token.expose(), &store).await;
        drop(store);
        let store = Store::open_in_memory().unwrap();
        let memory = wedge_upstream(&broker, &identity, token.expose(), &store).await;
        println!(
            "round {round}: plain rumqttc {plain:>7.0} msg/s | module end to end {module:>7.0} msg/s ({:.2}x) | outbox on disk {durable:>7.0} msg/s ({:.2}x) | outbox in memory {memory:>7.0} msg/s ({:.2}x)",
            module / plain,
            durable / plain,
            memory / plain,
        );
        module_ratios.push(module / plain);
        durable_ratios.push(durable / plain);
        memory_ratios.push(memory / plain);
    }
    println!(
        "median ratio to plain rumqttc: module end to end (durable) {:.2}, outbox on disk {:.2}, outbox in memory {:.2}",
        median(&mut module_ratios),
        median(&mut durable_ratios),
        median(&mut memory_ratios)
    );
}

/// The IoT Hub link of a device, draining `outbox`, once connected.
async fn connected_hub(
    broker: &Broker,
    identity: &topics::Identity,
    token: &str,
    outbox: Outbox,
    meta: wedge_store::Meta,
) -> IotHub {
    let connection = ConnectionString::parse(&format!(
        "HostName={};DeviceId={};GatewayHostName=127.0.0.1;SharedAccessSignature={token}",
        identity.host_name, identity.device_id
    ))
    .unwrap();
    let mut options = IotHubOptions::new(connection);
    options.port = broker.port();
    options.ca_file = Some(broker.ca_pem_path());
    let drain = Drain {
        outbox,
        id_prefix: "bench".into(),
        meta,
    };
    let (hub, _events) = IotHub::start(options, drain).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hub.status().connected {
        assert!(
            Instant::now() < deadline,
            "wedge did not connect: {:?}",
            hub.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hub
}

/// Waits until the hub acknowledged `MESSAGES` messages; the rate since `start`.
async fn all_acknowledged(hub: &IotHub, start: Instant) -> f64 {
    let deadline = start + Duration::from_secs(120);
    while (hub.status().acknowledged as usize) < MESSAGES {
        assert!(Instant::now() < deadline, "stalled: {:?}", hub.status());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

fn unbounded_outbox(store: &Store) -> Outbox {
    store.outbox(OutboxLimits {
        max_bytes: 1 << 30,
        ttl: None,
        when_full: WhenFull::Reject,
    })
}

/// A module sending `MESSAGES` bodies of about `BODY` bytes in `send-batch`es of [`BATCH`],
/// through the runtime and the durable outbox, until every PUBACK. The clock starts once the
/// module is compiled and started.
async fn module_e2e(broker: &Broker, identity: &topics::Identity, token: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let outbox = unbounded_outbox(&store);
    let hub = Arc::new(connected_hub(broker, identity, token, outbox.clone(), store.meta()).await);
    let toml = format!(
        "[modules.counter]\npath = {COUNTER:?}\ntick-ms = 1\n\
         config = {{ batch = {BATCH}, limit = {MESSAGES}, pad = {} }}\n\
         [routes]\ncounts = {{ from = \"counter/counts\", to = \"$upstream\" }}\n",
        BODY - 20
    );
    let deployment = Deployment::parse(&dir.path().join("wedge.toml"), &toml).unwrap();
    let engine = EngineCtx::new().unwrap();
    let module = &deployment.modules["counter"];
    let image = engine.compile_file(&module.path).unwrap();
    let runtime = Runtime::new(engine, hub.clone(), store, outbox, dir.path().into());
    let config = module.spec.config.clone();
    runtime
        .add_module("counter", module.spec.clone(), image, config)
        .unwrap();
    runtime
        .set_routes(&deployment.routes, deployment.outbox)
        .unwrap();
    let rate = all_acknowledged(&hub, Instant::now()).await;
    runtime.shutdown().await;
    rate
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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

/// wedge: records appended to the outbox as the router does for `$upstream` (batches of
/// [`BATCH`], as `send-batch` makes them) while the IoT Hub link drains it, until every PUBACK.
async fn wedge_upstream(
    broker: &Broker,
    identity: &topics::Identity,
    token: &str,
    store: &Store,
) -> f64 {
    let outbox = unbounded_outbox(store);
    let hub = connected_hub(broker, identity, token, outbox.clone(), store.meta()).await;
    let record = UpstreamMessage {
        module: "bench".into(),
        output: "out".into(),
        message: Message {
            body: vec![b'x'; BODY],
            content_type: Some("application/json".into()),
            ..Message::default()
        },
        enqueued: SystemTime::now(),
    }
    .to_record();
    let start = Instant::now();
    let producer = tokio::spawn(async move {
        for _ in 0..MESSAGES / BATCH {
            outbox
                .append_batch(vec![record.clone(); BATCH])
                .await
                .unwrap();
        }
    });
    let rate = all_acknowledged(&hub, start).await;
    producer.await.unwrap();
    rate
}
