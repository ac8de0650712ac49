//! Durability end to end: real `wedge run` processes, a real Mosquitto that goes away and comes
//! back, SIGKILL at arbitrary points, damaged data dirs. What a module's `send` accepted for
//! `$upstream` must reach the hub, in order, whatever happens to the broker or the host.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::iothub::{Cloud, DEVICE, demo_pipeline, message_id, temperature};
use support::{Deployment, Host, WEDGE, module, spawn, wait_for};
use wedge_hub_emulator::HubEmulator;
use wedge_test_artifacts::COUNTER;

const TIMEOUT: Duration = Duration::from_secs(30);
/// wedge's reconnect backoff doubles from 250 ms with jitter and may have grown while the
/// broker was away on a loaded machine.
const RECONNECT: Duration = Duration::from_secs(90);

/// The `counter` guest with `settings`, its output routed to the hub.
fn counter_deployment(cloud: &Cloud, settings: &str) -> String {
    let modules = format!(
        "{}\n[routes]\ncounts = {{ from = \"counter/counts\", to = \"$upstream\" }}\n",
        module("counter", COUNTER, settings)
    );
    cloud.deployment(&cloud.token, &modules)
}

fn status(host: &Host) -> Value {
    host.request(&json!({"op": "status"})).unwrap()
}

/// The counter's next number to send (its progress: every number below was accepted).
fn counter_next(host: &Host) -> u64 {
    let call = json!({"op": "call", "module": "counter", "method": "next", "payload": "null"});
    let answer = host.request(&call).unwrap();
    assert_eq!(answer["status"], 200, "{answer}");
    let payload: Value = serde_json::from_str(answer["payload"].as_str().unwrap()).unwrap();
    payload["next"].as_u64().unwrap()
}

/// One message per `$.mid`, in the order of first arrival.
struct Received {
    /// `(record id, body)` of each distinct message.
    unique: Vec<(u64, Value)>,
    /// Arrivals of a message id already seen (at-least-once delivery).
    duplicates: usize,
}

/// The hub's telemetry de-duplicated by `$.mid`. Checks on the way that all of it comes from one
/// data dir and that a message id always carries the same body (ids are never reused).
fn received(hub: &HubEmulator) -> Received {
    let telemetry = hub.telemetry();
    let mut bodies: HashMap<u64, &[u8]> = HashMap::new();
    let mut stores = BTreeSet::new();
    let mut unique = Vec::new();
    for message in &telemetry {
        let (store, id) = message_id(message);
        stores.insert(store);
        match bodies.get(&id) {
            Some(body) => assert_eq!(
                *body,
                message.body.as_slice(),
                "message id {id} arrived with two different bodies"
            ),
            None => {
                bodies.insert(id, &message.body);
                unique.push((id, serde_json::from_slice(&message.body).unwrap()));
            }
        }
    }
    assert!(
        stores.len() <= 1,
        "message ids of several stores: {stores:?}"
    );
    Received {
        duplicates: telemetry.len() - unique.len(),
        unique,
    }
}

impl Received {
    /// The `seq` of each distinct message, in the order of first arrival.
    fn seqs(&self) -> Vec<u64> {
        self.unique
            .iter()
            .map(|(_, body)| body["seq"].as_u64().unwrap())
            .collect()
    }

    /// Whether every number in `1..=n` arrived.
    fn has_seqs_up_to(&self, n: u64) -> bool {
        let seqs: BTreeSet<u64> = self.seqs().into_iter().collect();
        (1..=n).all(|s| seqs.contains(&s))
    }

    /// Asserts that the record ids are exactly `1..=max`: none lost.
    fn assert_ids_complete(&self) -> u64 {
        let ids: BTreeSet<u64> = self.unique.iter().map(|(id, _)| *id).collect();
        let max = ids.last().copied().unwrap_or(0);
        let missing: Vec<u64> = (1..=max).filter(|id| !ids.contains(id)).collect();
        assert!(missing.is_empty(), "record ids missing: {missing:?}");
        max
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_loses_nothing_and_keeps_order() {
    let started = Instant::now();
    let mut cloud = Cloud::start().await;
    let host = Host::start(&counter_deployment(&cloud, "tick-ms = 10"));
    cloud.hub.wait_for_telemetry(10, TIMEOUT).await.unwrap();

    cloud.broker.stop();
    // More than the link's window of 100 unacknowledged messages.
    let offline = wait_for("disconnected, with 250 messages stored", TIMEOUT, || {
        let status = status(&host);
        let depth = status["outbox"]["depth"].as_u64().unwrap();
        (status["upstream"]["link"]["connected"] == false && depth >= 250).then_some(depth)
    });
    cloud.broker.restart().unwrap();
    // Everything below `next` was accepted by `send`, so it must all arrive.
    let n = counter_next(&host) - 1;
    wait_for("the counter's progress at the hub", RECONNECT, || {
        received(&cloud.hub).has_seqs_up_to(n).then_some(())
    });

    let received = received(&cloud.hub);
    let max = received.assert_ids_complete();
    let seqs = received.seqs();
    let first_out_of_order = seqs.windows(2).position(|w| w[0] >= w[1]);
    assert_eq!(first_out_of_order, None, "seqs out of order: {seqs:?}");
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), seqs.len(), "a number was sent twice");
    assert!(max >= n, "{max} records for {n} numbers");
    eprintln!(
        "broker outage: {offline} stored offline, {n} numbers acknowledged, {max} records, \
         {} duplicates, {:?}",
        received.duplicates,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_twenty_times_loses_nothing_acknowledged() {
    const BATCH: u64 = 5;
    const KILLS: usize = 20;
    let started = Instant::now();
    let cloud = Cloud::start().await;
    let settings = format!("tick-ms = 5\nconfig = {{ batch = {BATCH} }}");
    let mut host = Host::start(&counter_deployment(&cloud, &settings));

    let mut at_hub = 0;
    for kill in 0..KILLS {
        // Anywhere from right after the reconnect to well into the stream.
        let batches = 1 + RandomState::new().hash_one(kill) % 10;
        let target = at_hub + (batches * BATCH) as usize;
        at_hub = wait_for(&format!("messages before kill {kill}"), RECONNECT, || {
            let n = received(&cloud.hub).unique.len();
            (n >= target).then_some(n)
        });
        // Land the kill anywhere in the counter's tick (5 ms), not right after a delivery.
        let jitter = RandomState::new().hash_one(kill) % 8;
        std::thread::sleep(Duration::from_millis(jitter));
        host.kill();
        host.restart();
    }

    // The progress the counter recovered and made since, asked through the cloud.
    wait_for("the link after the last restart", RECONNECT, || {
        (status(&host)["upstream"]["link"]["connected"] == true).then_some(())
    });
    let deadline = Instant::now() + TIMEOUT;
    let next = loop {
        match cloud
            .hub
            .invoke(DEVICE, "counter.next", json!(null), Duration::from_secs(2))
            .await
        {
            Ok((200, payload)) => break payload["next"].as_u64().unwrap(),
            other => assert!(Instant::now() < deadline, "counter.next: {other:?}"),
        }
    };
    wait_for("every accepted number at the hub", RECONNECT, || {
        received(&cloud.hub).has_seqs_up_to(next - 1).then_some(())
    });

    let received = received(&cloud.hub);
    let max = received.assert_ids_complete();
    // In record id order the numbers go up by one, except where a kill came between the append
    // of a batch and the counter storing its progress: then that batch is sent again. Anything
    // else means the counter lost its state or the outbox lost or reordered records.
    let mut by_id: Vec<(u64, u64)> = received
        .unique
        .iter()
        .map(|(id, body)| (*id, body["seq"].as_u64().unwrap()))
        .collect();
    by_id.sort();
    assert_eq!(by_id.first().map(|(_, seq)| *seq), Some(1));
    let mut resent = 0;
    for pair in by_id.windows(2) {
        let ((id, seq), (next_id, next_seq)) = (pair[0], pair[1]);
        if next_seq != seq + 1 {
            assert!(
                next_seq < seq && seq - next_seq < BATCH,
                "record {id} has seq {seq}, record {next_id} seq {next_seq}: not a resent batch"
            );
            resent += 1;
        }
    }
    assert!(
        resent <= KILLS,
        "{resent} batches sent again after {KILLS} kills"
    );
    let mut copies: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, seq) in &by_id {
        *copies.entry(*seq).or_default() += 1;
    }
    let most = copies.values().max().copied().unwrap_or(0);
    assert!(most <= 3, "a number was sent {most} times: state lost?");
    eprintln!(
        "{KILLS} kills: next = {next}, {max} records, {resent} batches sent again after a kill, \
         {} duplicate deliveries (at-least-once), {:?}",
        received.duplicates,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_start_uses_the_last_applied_config() {
    let started = Instant::now();
    let mut cloud = Cloud::start().await;
    let mut host = Host::start(&cloud.deployment(&cloud.token, &demo_pipeline()));
    // Long enough for the filter's `filter-seen` to be well above where the next run starts.
    cloud.hub.wait_for_telemetry(10, TIMEOUT).await.unwrap();
    let (ack, _) = cloud
        .configure(DEVICE, "filter", json!({"threshold": 24.0}))
        .await;
    assert_eq!(ack["ac"], 200, "{ack}");

    host.kill();
    cloud.broker.stop();
    let before_kill = received(&cloud.hub).unique.len();
    host.restart();

    let filter = |host: &Host| host.module_status("filter");
    let threshold = wait_for("the filter running on the applied config", TIMEOUT, || {
        let filter = filter(&host);
        (filter["state"] == "running").then(|| filter["config"]["threshold"].clone())
    });
    assert_eq!(threshold, 24.0, "{}", filter(&host));
    let status0 = status(&host);
    let out0 = filter(&host)["messages-out"].as_u64().unwrap();
    let depth0 = status0["outbox"]["depth"].as_u64().unwrap();
    let offline = wait_for("the filter sending while offline", TIMEOUT, || {
        let status = status(&host);
        let out = filter(&host)["messages-out"].as_u64().unwrap();
        let depth = status["outbox"]["depth"].as_u64().unwrap();
        let offline = status["upstream"]["link"]["connected"] == false;
        (offline && out >= out0 + 20 && depth >= depth0 + 20).then_some(out)
    });
    assert_eq!(received(&cloud.hub).unique.len(), before_kill);

    cloud.broker.restart().unwrap();
    wait_for("the outbox drained", RECONNECT, || {
        (status(&host)["outbox"]["depth"] == 0).then_some(())
    });
    // The filter counts `filter-seen` from 1 again in the new process: its first message there
    // is the first record of this run, and the `offline` ones follow it.
    let first_of_run = |hub: &HubEmulator| {
        let mut by_id: Vec<(u64, u64)> = hub
            .telemetry()
            .iter()
            .map(|m| {
                let seen = m.property("filter-seen").unwrap().parse().unwrap();
                (message_id(m).1, seen)
            })
            .collect();
        by_id.sort();
        by_id.dedup();
        by_id.windows(2).find(|w| w[1].1 < w[0].1).map(|w| w[1].0)
    };
    let first = wait_for("the messages sent offline at the hub", TIMEOUT, || {
        let first = first_of_run(&cloud.hub)?;
        let ids: BTreeSet<u64> = received(&cloud.hub).unique.iter().map(|u| u.0).collect();
        (first..first + offline)
            .all(|id| ids.contains(&id))
            .then_some(first)
    });
    let received = received(&cloud.hub);
    received.assert_ids_complete();
    let temperatures: Vec<f64> = cloud
        .hub
        .telemetry()
        .iter()
        .filter(|m| (first..first + offline).contains(&message_id(m).1))
        .map(|m| temperature(&m.body))
        .collect();
    assert!(temperatures.iter().all(|t| *t > 24.0), "{temperatures:?}");
    assert!(
        temperatures.iter().any(|t| *t <= 30.0),
        "the deployment's threshold (30) in effect offline: {temperatures:?}"
    );
    eprintln!(
        "offline start: {offline} messages sent offline from record {first}, {} duplicates, {:?}",
        received.duplicates,
        started.elapsed()
    );
}

/// Runs `wedge run` on `data_dir` and returns its exit status and stderr, failing if it is still
/// running after `TIMEOUT`.
fn run_to_exit(data_dir: &std::path::Path, deployment: &Deployment) -> (bool, String) {
    let log = deployment.dir.path().join("refused.log");
    let _ = std::fs::remove_file(&log);
    let mut child = spawn(&deployment.path, data_dir, &log);
    let status = wait_for("wedge run to exit", TIMEOUT, || child.try_wait().unwrap());
    (status.success(), std::fs::read_to_string(&log).unwrap())
}

/// Runs `wedge run` on `data_dir` until its control socket answers, stops it with SIGTERM and
/// returns the path of the store it left, checkpointed (no `-wal` next to it).
fn run_and_stop(data_dir: &std::path::Path, deployment: &Deployment) -> std::path::PathBuf {
    let mut child = spawn(
        &deployment.path,
        data_dir,
        &deployment.dir.path().join("stopped.log"),
    );
    // An answer, not just a connection: the socket is bound before wedge handles SIGTERM.
    let mut status = Command::new(WEDGE);
    status.arg("--data-dir").arg(data_dir).arg("status");
    wait_for("wedge run to answer", TIMEOUT, || {
        assert!(child.try_wait().unwrap().is_none(), "wedge run exited");
        let out = status.stderr(Stdio::null()).output().unwrap();
        out.status.success().then_some(())
    });
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = wait_for("wedge run to stop", TIMEOUT, || child.try_wait().unwrap());
    assert!(status.success(), "wedge run stopped with {status}");
    assert!(!data_dir.join("wedge.db-wal").exists(), "wedge left a -wal");
    data_dir.join("wedge.db")
}

#[test]
fn a_corrupt_data_dir_is_refused_and_left_alone() {
    let toml = module("counter", COUNTER, "tick-ms = 1000");
    let deployment = Deployment::new(&toml);
    let data_dir = deployment.dir.path().join("data");
    let db = data_dir.join("wedge.db");
    std::fs::create_dir_all(&data_dir).unwrap();

    // Not a database at all.
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let started = Instant::now();
    let (success, stderr) = run_to_exit(&data_dir, &deployment);
    assert!(!success, "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused slowly"
    );
    let path = db.display().to_string();
    assert!(stderr.contains(&path), "{stderr}");
    assert!(stderr.contains("is damaged"), "{stderr}");
    assert!(stderr.contains("left untouched"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "the file was changed");
    assert!(!data_dir.join("wedge.db-wal").exists());

    // A real store of this wedge, then claimed by another application (SQLite's header keeps
    // `PRAGMA application_id` big-endian at bytes 68..72).
    std::fs::remove_file(&db).unwrap();
    let ours = tempfile::tempdir().unwrap();
    let their_db = run_and_stop(ours.path(), &deployment);
    // Its store holds something: the counter's progress and the data dir's identity.
    let mut foreign = std::fs::read(&their_db).unwrap();
    assert_eq!(&foreign[68..72], b"WEDG", "wedge's application_id");
    foreign[68..72].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    std::fs::write(&db, &foreign).unwrap();
    let (success, stderr) = run_to_exit(&data_dir, &deployment);
    assert!(!success, "{stderr}");
    assert!(stderr.contains(&path), "{stderr}");
    assert!(stderr.contains("cannot be used by this wedge"), "{stderr}");
    assert!(stderr.contains("0x12345678"), "{stderr}");
    assert!(stderr.contains("left untouched"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), foreign, "the file was changed");
    assert!(!data_dir.join("wedge.db-wal").exists());
}
