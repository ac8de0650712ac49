//! The cloud link against guest-sized input and a host that falls behind, at the library
//! level: the IoT Hub and MQTT upstreams of `wedge-hub` over a real Mosquitto (with the hub
//! emulator for IoT Hub), draining a real store. Nothing one reporter sends, and nothing the
//! host fails to read, may stop telemetry: each test ends by requiring the broker to
//! acknowledge telemetry appended after the abuse.

mod support;

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use support::iothub::{Cloud, DEVICE, HUB};
use support::mqtt::{MqttSetup, PASSWORD};
use wedge_core::{MAX_REPORTED_BYTES, Message, TopicTemplate, Upstream, UpstreamMessage};
use wedge_hub::iothub::connection_string::ConnectionString;
use wedge_hub::iothub::session::{IotHub, IotHubOptions};
use wedge_hub::mqtt::{MqttUpstream, MqttUpstreamOptions};
use wedge_hub::{Cloud as _, Drain, HubEvents, LinkStatus};
use wedge_hub_emulator::MqttObserver;
use wedge_store::{Outbox, OutboxLimits, Store, WhenFull};

const TIMEOUT: Duration = Duration::from_secs(20);
/// Cloud-to-device messages outstanding at once: IoT Hub's most for one device.
const C2D: usize = wedge_hub::IOT_HUB_C2D_QUEUE;
/// Reported values of this size: under the runtime's per-call limit (8 KiB), so any module
/// may report them.
const VALUE_BYTES: usize = 8000;
/// Enough such reports to compose into more than one MQTT packet may carry (320 KiB).
const REPORTS: usize = 42;

fn drain(store: &Store) -> Drain {
    Drain {
        outbox: store.outbox(OutboxLimits {
            max_bytes: 1 << 26,
            ttl: None,
            when_full: WhenFull::Reject,
        }),
        id_prefix: "test".into(),
        meta: store.meta(),
    }
}

fn iothub_options(cloud: &Cloud) -> IotHubOptions {
    let connection = ConnectionString::parse(&format!(
        "HostName={HUB};DeviceId={DEVICE};GatewayHostName=127.0.0.1;SharedAccessSignature={}",
        cloud.token
    ))
    .unwrap();
    let mut options = IotHubOptions::new(connection);
    options.port = cloud.broker.port();
    options.ca_file = Some(cloud.broker.ca_pem_path());
    options
}

fn mqtt_options(setup: &MqttSetup) -> MqttUpstreamOptions {
    MqttUpstreamOptions {
        host: "127.0.0.1".into(),
        port: setup.broker.port(),
        tls: true,
        ca_file: Some(setup.broker.ca_pem_path()),
        device: "dev1".into(),
        client_id: "wedge-dev1".into(),
        credentials: Some(("dev1".into(), PASSWORD.into())),
        telemetry_topic: TopicTemplate::telemetry("wedge/{device}/{module}/{output}").unwrap(),
        config_topic: Some("wedge/dev1/config".into()),
        reported_topic: Some("wedge/dev1/reported".into()),
    }
}

/// Polls `status` until `check` holds, or panics with the last status.
async fn wait_status(
    what: &str,
    status: impl Fn() -> LinkStatus,
    check: impl Fn(&LinkStatus) -> bool,
) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let current = status();
        if check(&current) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends `n` telemetry records and waits until the broker acknowledged all of them (and
/// whatever was acknowledged before).
async fn telemetry_flows(outbox: &Outbox, n: u64, status: impl Fn() -> LinkStatus) {
    let before = status().acknowledged;
    for seq in 0..n {
        let message = UpstreamMessage {
            module: "m".into(),
            output: "out".into(),
            message: Message {
                body: json!({ "seq": seq }).to_string().into_bytes(),
                ..Message::default()
            },
            enqueued: SystemTime::now(),
        };
        outbox.append(message.to_record()).await.unwrap();
    }
    wait_status("telemetry acknowledged", status, |s| {
        s.acknowledged >= before + n
    })
    .await;
}

/// Reports `REPORTS` patches of `VALUE_BYTES` with distinct keys through `upstream`, as fast as
/// they are taken; returns the keys accepted. A refusal must say why.
async fn report_many(upstream: &dyn Upstream) -> Vec<String> {
    let mut accepted = Vec::new();
    for n in 0..REPORTS {
        let key = format!("k{n}");
        match upstream
            .report("m", json!({ &key: "x".repeat(VALUE_BYTES) }))
            .await
        {
            Ok(()) => accepted.push(key),
            Err(e) => assert!(
                e.contains("waiting") || e.contains("at most"),
                "refused without a reason: {e}"
            ),
        }
    }
    accepted
}

#[tokio::test(flavor = "multi_thread")]
async fn iothub_reports_composed_while_one_is_in_flight_stay_sendable() {
    let cloud = Cloud::start().await;
    let store = Store::open_in_memory().unwrap();
    let drain = drain(&store);
    let outbox = drain.outbox.clone();
    let (hub, _events) = IotHub::start(iothub_options(&cloud), drain).unwrap();
    wait_status("connected", || hub.status(), |s| s.connected).await;

    // While the first is in flight, the others are composed into what is sent next.
    let accepted = report_many(&hub).await;
    assert!(
        accepted.len() > REPORTS / 2,
        "most reports fit: {accepted:?}"
    );
    telemetry_flows(&outbox, 20, || hub.status()).await;
    let properties = |r: &Value| r["wedge"]["modules"]["m"]["properties"].clone();
    cloud
        .hub
        .wait_for_reported(
            DEVICE,
            |r| accepted.iter().all(|k| properties(r)[k].is_string()),
            TIMEOUT,
        )
        .await
        .unwrap();
    // A single patch over IoT Hub's limit is refused to the reporter, not sent.
    let huge = json!({ "huge": "x".repeat(MAX_REPORTED_BYTES) });
    let refused = hub.report("m", huge).await.unwrap_err();
    assert!(refused.contains("at most 32768"), "{refused}");
    assert!(hub.status().dropped.reports >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mqtt_reported_document_stays_within_the_limit() {
    let setup = MqttSetup::start();
    let observer = MqttObserver::start(&setup.broker, "wedge/dev1/reported")
        .await
        .unwrap();
    let store = Store::open_in_memory().unwrap();
    let drain = drain(&store);
    let outbox = drain.outbox.clone();
    let (broker, _events) = MqttUpstream::start(mqtt_options(&setup), drain).unwrap();
    wait_status("connected", || broker.status(), |s| s.connected).await;

    // Each report makes the retained document larger; past 32 KiB they are refused.
    let accepted = report_many(&broker).await;
    assert!(
        (2..REPORTS).contains(&accepted.len()),
        "some fit, the rest are refused: {accepted:?}"
    );
    telemetry_flows(&outbox, 20, || broker.status()).await;
    let last = accepted.last().unwrap().clone();
    let document = observer
        .wait_for("the last accepted report", TIMEOUT, |received| {
            received.iter().rev().find_map(|m| {
                let doc: Value = serde_json::from_slice(&m.payload).ok()?;
                doc["wedge"]["modules"]["m"]["properties"][&last]
                    .is_string()
                    .then_some(m.payload.len())
            })
        })
        .await
        .unwrap();
    assert!(document <= MAX_REPORTED_BYTES, "{document} bytes retained");
}

/// The body of the messages [`c2d_subscribed`] sends.
const PROBE: &str = "probe";

/// Returns once a cloud-to-device message reaches the host. IoT Hub keeps a device's messages
/// from before it subscribed; Mosquitto drops them, and "connected" is the CONNACK, which comes
/// before the SUBACK: so probes are sent until one arrives. (A late one may still come: the
/// callers ignore [`PROBE`] bodies.)
async fn c2d_subscribed(cloud: &Cloud, events: &mut HubEvents) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        cloud.hub.send_c2d(DEVICE, PROBE, &[]).await.unwrap();
        let wait =
            Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now()));
        if let Ok(Some(c2d)) = tokio::time::timeout(wait, events.c2d.recv()).await {
            c2d.accepted();
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no cloud-to-device message arrived"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_does_not_read_its_events_cannot_stall_telemetry() {
    let cloud = std::sync::Arc::new(Cloud::start().await);
    let store = Store::open_in_memory().unwrap();
    let drain = drain(&store);
    let outbox = drain.outbox.clone();
    // The host's end of the events is held and never read: a host stuck elsewhere.
    let (hub, mut events) = IotHub::start(iothub_options(&cloud), drain).unwrap();
    wait_status("connected", || hub.status(), |s| s.connected).await;
    c2d_subscribed(&cloud, &mut events).await;

    // As many as IoT Hub holds for one device.
    for n in 0..C2D {
        cloud
            .hub
            .send_c2d(DEVICE, format!("c2d {n}"), &[])
            .await
            .unwrap();
    }
    // Methods nobody will answer: the first ones wait (the emulator gives up on them), those
    // past the bound are answered 503 at once.
    let calls: Vec<_> = (0..24)
        .map(|_| {
            let cloud = cloud.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let answer = cloud
                    .hub
                    .invoke(DEVICE, "m.slow", json!({}), Duration::from_secs(5))
                    .await;
                (answer.ok().map(|(status, _)| status), started.elapsed())
            })
        })
        .collect();
    telemetry_flows(&outbox, 20, || hub.status()).await;
    let mut refused = 0;
    for call in calls {
        if let (Some(503), elapsed) = call.await.unwrap() {
            assert!(elapsed < Duration::from_secs(3), "503 took {elapsed:?}");
            refused += 1;
        }
    }
    assert_eq!(refused, 24 - 16, "{:?}", hub.status());
    // C2D is acknowledged only once the host took it, so the hub holds the rest back (the
    // broker sends no more than its window of unacknowledged messages): none was dropped.
    assert_eq!(hub.status().dropped.c2d, 0, "{:?}", hub.status());
    let waiting = events.c2d.len();
    assert!(
        (1..=64).contains(&waiting),
        "{waiting} waiting for the host"
    );
    // Once the host reads and accepts them, every one arrives.
    let mut received = std::collections::BTreeSet::new();
    let deadline = Instant::now() + TIMEOUT;
    while received.len() < C2D {
        let left = deadline.saturating_duration_since(Instant::now());
        let c2d = tokio::time::timeout(left, events.c2d.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {C2D} C2D messages arrived; {:?}\nbroker log:\n{}",
                    received.len(),
                    hub.status(),
                    cloud.broker.log()
                )
            })
            .expect("the link is up");
        let body = String::from_utf8(c2d.message.body.clone()).unwrap();
        if body != PROBE {
            received.insert(body);
        }
        c2d.accepted();
    }
    assert_eq!(received, (0..C2D).map(|n| format!("c2d {n}")).collect());
}
