//! Row 6: latencies an operator sees.
//! - config: `Host::deploy` of a new `config` for a running `echo` on the local hub until its
//!   `on-config` returned (twin, reconciler, control channel, guest), against a direct method
//!   `ping` of the same module (the same control channel and supervisor, without the document);
//! - back online: the MQTT link (TLS, Mosquitto, durable outbox on disk) with 10 000 messages
//!   stored during an outage, from the moment the broker accepts connections again to the first
//!   PUBACK and to the outbox drained; against a link started with the same 10 000 stored and
//!   the broker up (a connect from cold), so the ratio is what the outage costs beyond a
//!   connect.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use wedge_bench::{Rows, Samples, rounds, scratch};
use wedge_core::{Message, TopicTemplate, UpstreamMessage};
use wedge_host::Host;
use wedge_hub::mqtt::{MqttUpstream, MqttUpstreamOptions};
use wedge_hub::{Cloud, Drain, LinkStatus};
use wedge_hub_emulator::{Broker, BrokerOptions};
use wedge_store::{OutboxLimits, Store, WhenFull};
use wedge_test_artifacts::ECHO;

/// Configurations delivered per round; the round's figure is their median.
const CONFIGS: usize = 100;
const STORED: usize = 10_000;
const BODY: usize = 256;
const OUTAGE: Duration = Duration::from_secs(3);
const USER: &str = "dev1";
const PASSWORD: &str = "bench-password";

#[tokio::main]
async fn main() {
    let mut rows = Rows::new("latency", "6 latency");
    let rounds = rounds(3);

    let mut config = Samples::default();
    for _ in 0..rounds {
        let dir = scratch();
        let host = start_host(dir.path()).await;
        deploy(&host, json!({ "modules": { "echo": { "source": ECHO } } })).await;
        let (configs, pings) = configs(&host).await;
        config.push(median_ms(configs), median_ms(pings));
        host.shutdown().await;
    }
    rows.paired(
        "config change applied → module saw it (local hub)",
        "ms",
        &config,
        "ping of the same module",
        &format!("median of {CONFIGS} `deploy` patches of `config` per round, each until `on-config` returned"),
    );

    let mut broker = Broker::start(BrokerOptions {
        mqtt_users: vec![(USER.into(), PASSWORD.into())],
        quiet: true,
        ..BrokerOptions::default()
    })
    .expect("mosquitto");
    let (mut first, mut drained) = (Samples::default(), Samples::default());
    for _ in 0..rounds {
        let cold = connect_from_cold(&broker).await;
        let after = after_outage(&mut broker).await;
        first.push(ms(after.first), ms(cold.first));
        drained.push(ms(after.drained), ms(cold.drained));
    }
    let note = format!(
        "{STORED} messages of {BODY} B stored during a {} s outage; MQTT over TLS, QoS 1; from Mosquitto accepting connections again",
        OUTAGE.as_secs()
    );
    let row = rows.paired(
        "broker back → first PUBACK, 10k stored",
        "ms",
        &first,
        "connect from cold with 10k stored",
        &note,
    );
    let met = row.value.median <= 1000.0;
    row.target("≤ 1000 ms", met);
    rows.paired(
        "broker back → 10k stored all acknowledged",
        "ms",
        &drained,
        "connect from cold with 10k stored",
        &note,
    );
    rows.write();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    ms(samples[samples.len() / 2])
}

/// A host on the local hub with no modules, in `dir`.
async fn start_host(dir: &Path) -> Arc<Host> {
    let file = dir.join("wedge.toml");
    std::fs::write(&file, "[upstream]\nkind = \"local\"\n").expect("wedge.toml");
    Host::start(&file, &dir.join("data")).await.expect("host")
}

async fn deploy(host: &Host, patch: Value) {
    if let Err(e) = host.deploy(&patch).await {
        panic!("deploy {patch}: {e}");
    }
}

/// Configurations of `echo`, each after a `ping` (the baseline); how long each took.
async fn configs(host: &Host) -> (Vec<Duration>, Vec<Duration>) {
    let (mut configs, mut pings) = (Vec::new(), Vec::new());
    for n in 0..CONFIGS {
        let start = Instant::now();
        let answer = host.invoke("echo", "ping", "{}").await.expect("ping");
        assert_eq!(answer.status, 200, "{}", answer.payload);
        pings.push(start.elapsed());
        let start = Instant::now();
        deploy(
            host,
            json!({ "modules": { "echo": { "config": { "n": n } } } }),
        )
        .await;
        configs.push(start.elapsed());
    }
    let status = host.status();
    let echo = status["modules"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "echo"))
        .expect("echo in the status");
    assert_eq!(echo["config"], json!({ "n": CONFIGS - 1 }), "{echo}");
    (configs, pings)
}

/// First PUBACK and outbox drained.
struct Times {
    first: Duration,
    drained: Duration,
}

fn options(broker: &Broker) -> MqttUpstreamOptions {
    MqttUpstreamOptions {
        host: "127.0.0.1".into(),
        port: broker.port(),
        tls: true,
        ca_file: Some(broker.ca_pem_path()),
        device: USER.into(),
        client_id: format!("bench-{}", std::process::id()),
        credentials: Some((USER.into(), PASSWORD.into())),
        telemetry_topic: TopicTemplate::telemetry("wedge/{device}/{module}/{output}")
            .expect("topic"),
        config_topic: None,
        reported_topic: None,
    }
}

/// A durable store in a fresh directory, its outbox as a [`Drain`].
fn store() -> (tempfile::TempDir, Store, Drain) {
    let dir = scratch();
    let store = Store::open(dir.path()).expect("store");
    let drain = Drain {
        outbox: store.outbox(OutboxLimits {
            max_bytes: 1 << 30,
            ttl: None,
            when_full: WhenFull::Reject,
        }),
        id_prefix: "bench".into(),
        meta: store.meta(),
    };
    (dir, store, drain)
}

async fn store_messages(drain: &Drain) {
    let record = UpstreamMessage {
        module: "bench".into(),
        output: "out".into(),
        message: Message {
            body: vec![b'x'; BODY],
            ..Message::default()
        },
        enqueued: SystemTime::now(),
    }
    .to_record();
    for _ in 0..STORED / 100 {
        drain
            .outbox
            .append_batch(vec![record.clone(); 100])
            .await
            .expect("append");
    }
}

/// Polls the link until `check` holds; the time since `since`.
async fn until(
    link: &MqttUpstream,
    since: Instant,
    what: &str,
    check: impl Fn(&LinkStatus) -> bool,
) -> Duration {
    loop {
        let status = link.status();
        if check(&status) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "{what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn first_and_drained(link: &MqttUpstream, since: Instant, before: u64) -> Times {
    let first = until(link, since, "first PUBACK", |s| s.acknowledged > before).await;
    let drained = until(link, since, "drained", |s| {
        s.acknowledged >= before + STORED as u64
    })
    .await;
    Times { first, drained }
}

async fn connect_from_cold(broker: &Broker) -> Times {
    let (_dir, _store, drain) = store();
    store_messages(&drain).await;
    let started = Instant::now();
    let (link, _events) = MqttUpstream::start(options(broker), drain).expect("link");
    first_and_drained(&link, started, 0).await
}

async fn after_outage(broker: &mut Broker) -> Times {
    let (_dir, _store, drain) = store();
    let outbox = drain.clone();
    let (link, _events) = MqttUpstream::start(options(broker), drain).expect("link");
    until(&link, Instant::now(), "connected", |s| s.connected).await;
    broker.stop();
    let down = Instant::now();
    until(&link, down, "disconnected", |s| s.retry.is_some()).await;
    store_messages(&outbox).await;
    // The outage itself: the scenario, not a wait for a condition.
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    let before = link.status().acknowledged;
    // `restart` returns within 10 ms of Mosquitto accepting connections.
    broker.restart().expect("restart mosquitto");
    first_and_drained(&link, Instant::now(), before).await
}
