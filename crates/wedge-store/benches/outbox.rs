//! Outbox throughput, durable (a store in a temporary directory: WAL, `synchronous = FULL`)
//! against the same code in memory, in one run:
//!
//! - `append x1`: one task appending sequentially (one commit, one fsync per record);
//! - `append x64`: 64 tasks appending concurrently (group commit);
//! - `batch 128`: one task calling `append_batch` with 128 records;
//! - `drain`: `read_after` 100 + `acknowledge` over a pre-filled outbox.
//!
//! `cargo bench -p wedge-store --bench outbox`. `WEDGE_BENCH_DIR` chooses the file system of
//! the durable store (default: the system's temporary directory).

use std::time::{Duration, Instant};

use wedge_store::{Outbox, OutboxLimits, Store, WhenFull};

/// Each workload runs this long per store.
const RUN: Duration = Duration::from_millis(1500);
/// A typical telemetry message serialised.
const RECORD: usize = 256;
/// Records pre-filled for the drain.
const DRAIN_RECORDS: usize = 60_000;

const LIMITS: OutboxLimits = OutboxLimits {
    max_bytes: 1 << 32,
    ttl: None,
    when_full: WhenFull::Reject,
};

struct Result {
    msgs: u64,
    elapsed: Duration,
    commits: u64,
}

impl Result {
    fn rate(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64()
    }
}

async fn sequential(outbox: &Outbox) -> u64 {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < RUN {
        outbox.append(vec![7; RECORD]).await.unwrap();
        n += 1;
    }
    n
}

async fn concurrent(outbox: &Outbox, tasks: usize) -> u64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while start.elapsed() < RUN {
                    outbox.append(vec![7; RECORD]).await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle.await.unwrap();
    }
    total
}

async fn batches(outbox: &Outbox, size: usize) -> u64 {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < RUN {
        outbox
            .append_batch(vec![vec![7; RECORD]; size])
            .await
            .unwrap();
        n += size as u64;
    }
    n
}

/// Pre-fills (not timed), then drains until empty or out of time.
async fn drain(store: &Store, outbox: &Outbox) -> (u64, Duration) {
    for _ in 0..DRAIN_RECORDS / 1000 {
        outbox
            .append_batch(vec![vec![7; RECORD]; 1000])
            .await
            .unwrap();
    }
    let start = Instant::now();
    let mut after = 0;
    let mut n = 0;
    while start.elapsed() < RUN {
        let records = outbox.read_after(after, 100).unwrap();
        let Some(&(last, _)) = records.last() else {
            break;
        };
        let ids: Vec<u64> = records.iter().map(|(id, _)| *id).collect();
        outbox.acknowledge(&ids);
        after = last;
        n += ids.len() as u64;
    }
    // Acknowledgements are committed in the background: count them in.
    store.flush().await.unwrap();
    (n, start.elapsed())
}

async fn run(store: &Store, workload: &str) -> Result {
    let outbox = store.outbox(LIMITS);
    let commits = outbox.stats().commits;
    let start = Instant::now();
    let (msgs, elapsed) = match workload {
        "append x1" => (sequential(&outbox).await, start.elapsed()),
        "append x64" => (concurrent(&outbox, 64).await, start.elapsed()),
        "batch 128" => (batches(&outbox, 128).await, start.elapsed()),
        _ => drain(store, &outbox).await,
    };
    // Leave the next workload an empty outbox.
    let ids: Vec<u64> = outbox
        .read_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    outbox.acknowledge(&ids);
    store.flush().await.unwrap();
    Result {
        msgs,
        elapsed,
        commits: outbox.stats().commits - commits,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let base = std::env::var_os("WEDGE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    rt.block_on(async {
        let durable = Store::open(dir.path()).unwrap();
        let memory = Store::open_in_memory().unwrap();
        println!(
            "outbox, {RECORD}-byte records, {} ms per workload; durable store in {}",
            RUN.as_millis(),
            dir.path().display()
        );
        println!(
            "{:<12} {:>12} {:>14} {:>12} {:>14}",
            "workload", "durable/s", "msgs/commit", "memory/s", "durable/memory"
        );
        for workload in ["append x1", "append x64", "batch 128", "drain"] {
            let d = run(&durable, workload).await;
            let m = run(&memory, workload).await;
            println!(
                "{workload:<12} {:>12.0} {:>14.1} {:>12.0} {:>13.1}%",
                d.rate(),
                d.msgs as f64 / d.commits.max(1) as f64,
                m.rate(),
                100.0 * d.rate() / m.rate(),
            );
        }
    });
}
