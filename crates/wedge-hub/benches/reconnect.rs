//! Back online after an outage: the MQTT link (over TLS to a real Mosquitto, draining a durable
//! outbox on disk) with 10 000 messages stored while the broker was down. Measured from the
//! moment the broker accepts connections again: the first PUBACK and the last (outbox drained).
//! The baseline, measured in the same run on the same broker: a link started with the same
//! 10 000 messages already stored and the broker up (connect from cold, then drain), so the
//! ratio shows what the outage costs beyond a fresh connect.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p wedge-hub --bench reconnect`).

use std::time::{Duration, Instant, SystemTime};

use wedge_core::{Message, TopicTemplate, UpstreamMessage};
use wedge_hub::mqtt::{MqttUpstream, MqttUpstreamOptions};
use wedge_hub::{Cloud, Drain, LinkStatus};
use wedge_hub_emulator::{Broker, BrokerOptions};
use wedge_store::{OutboxLimits, Store, WhenFull};

const STORED: usize = 10_000;
const BODY: usize = 256;
const OUTAGES: [u64; 2] = [5, 30];
/// Rounds of each measurement; the medians are printed (when the probe falls within its
/// 0.6-1.0 s period varies from round to round).
const ROUNDS: usize = 3;
const USER: &str = "dev1";
const PASSWORD: &str = "bench-password";

/// First PUBACK and drained, each since `since`.
struct Times {
    first: Duration,
    drained: Duration,
}

#[tokio::main]
async fn main() {
    let mut broker = Broker::start(BrokerOptions {
        mqtt_users: vec![(USER.into(), PASSWORD.into())],
        quiet: true,
        ..BrokerOptions::default()
    })
    .expect("mosquitto");
    println!(
        "back online: MQTT over TLS, QoS 1, {STORED} stored messages of {BODY} B, median of {ROUNDS}"
    );
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        rounds.push(baseline(&broker).await);
    }
    let baseline = median(rounds);
    println!(
        "baseline (broker up, link started with {STORED} stored): first PUBACK {:>7.1} ms, drained {:>7.1} ms",
        ms(baseline.first),
        ms(baseline.drained)
    );
    for seconds in OUTAGES {
        let mut rounds = Vec::new();
        for _ in 0..ROUNDS {
            rounds.push(after_outage(&mut broker, Duration::from_secs(seconds)).await);
        }
        let after = median(rounds);
        println!(
            "outage {seconds:>3} s → first PUBACK {:>7.1} ms ({:.2}x), drained {:>7.1} ms ({:.2}x)",
            ms(after.first),
            after.first.as_secs_f64() / baseline.first.as_secs_f64(),
            ms(after.drained),
            after.drained.as_secs_f64() / baseline.drained.as_secs_f64(),
        );
    }
}

/// The median of each time on its own.
fn median(mut rounds: Vec<Times>) -> Times {
    let middle = rounds.len() / 2;
    rounds.sort_by_key(|t| t.first);
    let first = rounds[middle].first;
    rounds.sort_by_key(|t| t.drained);
    Times {
        first,
        drained: rounds[middle].drained,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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
        telemetry_topic: TopicTemplate::telemetry("wedge/{device}/{module}/{output}").unwrap(),
        config_topic: None,
        reported_topic: None,
    }
}

/// A durable store in a fresh directory, its outbox as a [`Drain`].
fn store() -> (tempfile::TempDir, Store, Drain) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
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
            .unwrap();
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

async fn baseline(broker: &Broker) -> Times {
    let (_dir, _store, drain) = store();
    store_messages(&drain).await;
    let started = Instant::now();
    let (link, _events) = MqttUpstream::start(options(broker), drain).unwrap();
    first_and_drained(&link, started, 0).await
}

async fn after_outage(broker: &mut Broker, outage: Duration) -> Times {
    let (_dir, _store, drain) = store();
    let outbox = drain.clone();
    let (link, _events) = MqttUpstream::start(options(broker), drain).unwrap();
    until(&link, Instant::now(), "connected", |s| s.connected).await;
    broker.stop();
    let down = Instant::now();
    until(&link, down, "disconnected", |s| s.retry.is_some()).await;
    store_messages(&outbox).await;
    // The outage itself: the scenario, not a wait for a condition.
    tokio::time::sleep(outage.saturating_sub(down.elapsed())).await;
    let before = link.status().acknowledged;
    // `restart` returns within 10 ms of Mosquitto accepting connections.
    broker.restart().unwrap();
    first_and_drained(&link, Instant::now(), before).await
}
