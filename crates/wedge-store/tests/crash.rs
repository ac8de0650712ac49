//! Crash safety: a child process appends as fast as it can and prints every id the store has
//! confirmed; the parent SIGKILLs it mid-stream and reopens the store: every printed id must be
//! there. The child is this test binary again, selected by an environment variable.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wedge_store::{OutboxLimits, Store, StoreError, WhenFull};

/// Set (to the data directory) only in the child.
const CHILD_DIR: &str = "WEDGE_STORE_CRASH_CHILD_DIR";

const LIMITS: OutboxLimits = OutboxLimits {
    max_bytes: 1 << 30,
    ttl: None,
    when_full: WhenFull::Reject,
};

/// The child: appends from several tasks forever (so groups are in flight when it dies) and
/// prints `id N` once each append has returned. Does nothing in a normal test run.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async move {
        let outbox = Store::open(Path::new(&dir)).unwrap().outbox(LIMITS);
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    for i in 0u64.. {
                        let id = outbox
                            .append(format!("task {task} record {i}").into_bytes())
                            .await
                            .unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "id {id}").unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// Runs the child until it has confirmed `wanted` ids, kills it, and returns every id it
/// printed (including what was still in the pipe).
fn run_child_and_kill(dir: &Path, wanted: usize, check_locked: bool) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ids = Vec::new();
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids.len() < wanted {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "child exited early"
        );
        if let Some(id) = line.trim().strip_prefix("id ") {
            ids.push(id.parse().unwrap());
        }
        assert!(Instant::now() < deadline, "child too slow");
    }
    if check_locked {
        // Another process holds the store: a second wedge must not open it.
        let err = Store::open(dir).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no final commit
    child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    ids.extend(
        rest.lines()
            .filter_map(|l| l.strip_prefix("id "))
            .filter_map(|id| id.parse::<u64>().ok()),
    );
    ids
}

#[tokio::test]
async fn confirmed_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut previous_max = 0;
    for round in 0..5 {
        let printed = run_child_and_kill(dir.path(), 100 + 50 * round, round == 0);
        let store = Store::open(dir.path()).unwrap();
        let outbox = store.outbox(LIMITS);
        let stored: BTreeSet<u64> = outbox
            .read_after(0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let missing: Vec<_> = printed.iter().filter(|id| !stored.contains(id)).collect();
        assert!(missing.is_empty(), "round {round}: lost {missing:?}");
        // Ids only grow, also across crashes and after everything was acknowledged.
        assert!(
            printed.iter().all(|&id| id > previous_max),
            "round {round}: an id was reused"
        );
        assert_eq!(outbox.stats().depth, stored.len() as u64);
        previous_max = stored.last().copied().unwrap_or(previous_max);
        let all: Vec<u64> = stored.into_iter().collect();
        outbox.acknowledge(&all);
        store.flush().await.unwrap();
        assert_eq!(outbox.stats().depth, 0);
    }
}
