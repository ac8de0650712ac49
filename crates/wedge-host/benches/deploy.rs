//! Deployment latency of a whole host on the embedded local hub (no network), each figure
//! against a baseline measured in the same run on the same host (the ratio is what matters on
//! a noisy machine):
//! - config: `Host::deploy` of a new `config` for a running `echo` until its `on-config`
//!   returned (twin, reconciler, control channel, guest), against a direct method `ping` on
//!   the same module (the same control channel and supervisor, without the document);
//! - add from cache: `Host::deploy` of a new module whose binary is already compiled in
//!   `DATA_DIR/compiled` until its first `ping` is answered (so `init` has returned), against
//!   a `ping` of a module already running;
//! - binary swap pause: with `counter` (tick 1 ms) → `echo` → `$upstream` running, `Host::deploy`
//!   of another binary of `echo` (both compiled in the cache) until the new instance answers
//!   a `ping`, against the same pause for a restart with new settings and the same binary.
//!
//! p50 and p99 in µs per round, and the median of the rounds at the end.
//! Run with `cargo xtask bench`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wedge_host::Host;
use wedge_test_artifacts::{COUNTER, ECHO};

/// Rounds, each on a fresh host and data dir; the medians are printed (this machine is noisy).
const ROUNDS: usize = 5;
/// Configurations delivered per round.
const CONFIGS: usize = 300;
/// Modules added (and removed again, untimed) per round.
const ADDS: usize = 50;
/// Binary swaps per round, alternating two versions; as many restarts.
const SWAPS: usize = 30;

/// Targets for the p50s, in µs.
const CONFIG_TARGET: f64 = 10_000.0;
const ADD_TARGET: f64 = 50_000.0;

#[tokio::main]
async fn main() {
    let binaries = tempfile::tempdir().unwrap();
    let versions = two_versions(binaries.path());
    println!(
        "deployments on the local hub, {ROUNDS} rounds of {CONFIGS} configs, {ADDS} adds, \
         {SWAPS} swaps and {SWAPS} restarts; p50/p99 in µs"
    );
    let (mut config, mut add, mut swap) = (Figures::new(), Figures::new(), Figures::new());
    for round in 1..=ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let host = start(dir.path()).await;
        deploy(&host, json!({ "modules": { "echo": { "source": ECHO } } })).await;
        let (configs, pings) = configs(&host).await;
        let (adds, add_deploys, pings_while_adding) = adds(&host).await;
        host.shutdown().await;
        drop(host);

        let dir = tempfile::tempdir().unwrap();
        let host = start(dir.path()).await;
        let (swaps, swap_deploys, restarts) = swaps(&host, &versions).await;
        host.shutdown().await;
        drop(host);

        println!("round {round}:");
        config.push("config", &configs, &pings, "ping");
        add.push("add from cache", &adds, &pings_while_adding, "ping");
        println!(
            "    (of which `deploy` returned after p50 {:.0} µs)",
            p(&add_deploys, 0.5)
        );
        swap.push("binary swap pause", &swaps, &restarts, "restart");
        println!(
            "    (of which `deploy` returned after p50 {:.0} µs)",
            p(&swap_deploys, 0.5)
        );
    }
    println!("summary, median of {ROUNDS} rounds:");
    config.summary("config", Some(CONFIG_TARGET), "ping");
    add.summary("add from cache", Some(ADD_TARGET), "ping");
    swap.summary("binary swap pause", None, "restart");
}

/// A host with no modules on `dir`.
async fn start(dir: &Path) -> Arc<Host> {
    let file = dir.join("wedge.toml");
    std::fs::write(&file, "[upstream]\nkind = \"local\"\n").unwrap();
    Host::start(&file, &dir.join("data")).await.unwrap()
}

async fn deploy(host: &Host, patch: Value) {
    if let Err(e) = host.deploy(&patch).await {
        panic!("deploy {patch}: {e}");
    }
}

/// One `ping` of `module`, answered 200; how long it took.
async fn ping(host: &Host, module: &str) -> Duration {
    let start = Instant::now();
    let answer = host.invoke(module, "ping", "{}").await.unwrap();
    assert_eq!(answer.status, 200, "{module}: {}", answer.payload);
    start.elapsed()
}

/// Configurations of `echo`, each after a `ping` (the baseline).
async fn configs(host: &Host) -> (Vec<Duration>, Vec<Duration>) {
    let (mut configs, mut pings) = (Vec::new(), Vec::new());
    for n in 0..CONFIGS {
        pings.push(ping(host, "echo").await);
        let start = Instant::now();
        deploy(
            host,
            json!({ "modules": { "echo": { "config": { "n": n } } } }),
        )
        .await;
        configs.push(start.elapsed());
    }
    assert_eq!(
        module_status(host, "echo")["config"],
        json!({ "n": CONFIGS - 1 })
    );
    (configs, pings)
}

/// Modules `m<i>` added from the cached `echo` binary until their first answer (and how long
/// `deploy` alone took), each after a `ping` of `echo` (the baseline); removed again.
async fn adds(host: &Host) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let (mut adds, mut deploys, mut pings) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ADDS {
        pings.push(ping(host, "echo").await);
        let name = format!("m{i}");
        let start = Instant::now();
        deploy(host, json!({ "modules": { &name: { "source": ECHO } } })).await;
        deploys.push(start.elapsed());
        ping(host, &name).await;
        adds.push(start.elapsed());
        deploy(host, json!({ "modules": { &name: null } })).await;
    }
    (adds, deploys, pings)
}

/// Binary swaps of `echo` between `versions` under traffic until the new instance answers
/// (and how long `deploy` alone took), each followed by a restart with a new setting (the
/// baseline), timed the same way.
async fn swaps(
    host: &Host,
    versions: &[PathBuf; 2],
) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    deploy(
        host,
        json!({
            "modules": {
                "counter": { "source": COUNTER, "tick-ms": 1 },
                "echo": { "source": versions[0] },
            },
            "routes": {
                "counts": { "from": "counter/counts", "to": "echo/in" },
                "up": { "from": "echo/out", "to": "$upstream" },
            },
        }),
    )
    .await;
    // Both versions compiled into the cache, and their sha256 as the host sees them.
    let mut shas = Vec::new();
    for version in [&versions[1], &versions[0]] {
        deploy(
            host,
            json!({ "modules": { "echo": { "source": version } } }),
        )
        .await;
        ping(host, "echo").await;
        shas.push(module_status(host, "echo")["sha256"].clone());
    }
    shas.reverse();
    assert_ne!(shas[0], shas[1], "the two versions have the same sha256");

    let (mut swaps, mut deploys, mut restarts) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..SWAPS {
        let to = (i + 1) % 2;
        let start = Instant::now();
        deploy(
            host,
            json!({ "modules": { "echo": { "source": versions[to] } } }),
        )
        .await;
        deploys.push(start.elapsed());
        ping(host, "echo").await;
        swaps.push(start.elapsed());
        assert_eq!(module_status(host, "echo")["sha256"], shas[to]);

        let start = Instant::now();
        let limits = json!({ "cpu-ms-per-call": 1000 + i });
        deploy(host, json!({ "modules": { "echo": { "limits": limits } } })).await;
        ping(host, "echo").await;
        restarts.push(start.elapsed());
    }
    let counter = module_status(host, "counter");
    assert_eq!(counter["state"], "running", "{counter}");
    (swaps, deploys, restarts)
}

/// `module`'s entry in the host's status.
fn module_status(host: &Host, module: &str) -> Value {
    let status = host.status();
    status["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == module)
        .unwrap_or_else(|| panic!("no {module} in {status}"))
        .clone()
}

/// Two binaries of the echo module that differ only in a custom section, in `dir`.
fn two_versions(dir: &Path) -> [PathBuf; 2] {
    let echo = std::fs::read(ECHO).unwrap();
    ["a", "b"].map(|version| {
        let name = b"wedge-bench";
        let mut section = vec![name.len() as u8];
        section.extend_from_slice(name);
        section.extend_from_slice(version.as_bytes());
        let mut bytes = echo.clone();
        // Custom section id 0, then its size (one LEB128 byte: it is short).
        bytes.extend_from_slice(&[0, section.len() as u8]);
        bytes.extend_from_slice(&section);
        let path = dir.join(format!("echo-{version}.wasm"));
        std::fs::write(&path, bytes).unwrap();
        path
    })
}

/// The `q` quantile of `samples`, nearest rank, in µs.
fn p(samples: &[Duration], q: f64) -> f64 {
    let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    let rank = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len());
    us[rank - 1]
}

fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One measurement's p50 and p99 per round, with its baseline's.
struct Figures {
    p50: Vec<f64>,
    p99: Vec<f64>,
    base_p50: Vec<f64>,
    base_p99: Vec<f64>,
}

impl Figures {
    fn new() -> Self {
        Figures {
            p50: Vec::new(),
            p99: Vec::new(),
            base_p50: Vec::new(),
            base_p99: Vec::new(),
        }
    }

    /// Records and prints a round.
    fn push(&mut self, what: &str, samples: &[Duration], baseline: &[Duration], base: &str) {
        let (p50, p99) = (p(samples, 0.5), p(samples, 0.99));
        let (base_p50, base_p99) = (p(baseline, 0.5), p(baseline, 0.99));
        println!(
            "  {what:<18} p50 {p50:>8.0} p99 {p99:>8.0} | {base:<7} p50 {base_p50:>8.0} p99 {base_p99:>8.0} | ratio p50 {:>6.1}x p99 {:>6.1}x",
            p50 / base_p50,
            p99 / base_p99,
        );
        self.p50.push(p50);
        self.p99.push(p99);
        self.base_p50.push(base_p50);
        self.base_p99.push(base_p99);
    }

    fn summary(&self, what: &str, target: Option<f64>, base: &str) {
        let p50 = median(&self.p50);
        let verdict = match target {
            Some(target) if p50 < target => format!(" (target p50 < {target:.0}: met)"),
            Some(target) => format!(
                " (target p50 < {target:.0}: MISSED by {:.0} µs)",
                p50 - target
            ),
            None => String::new(),
        };
        println!(
            "  {what:<18} p50 {p50:>8.0} p99 {:>8.0} | {base:<7} p50 {:>8.0} p99 {:>8.0} | ratio p50 {:>6.1}x p99 {:>6.1}x{verdict}",
            median(&self.p99),
            median(&self.base_p50),
            median(&self.base_p99),
            median(&ratios(&self.p50, &self.base_p50)),
            median(&ratios(&self.p99, &self.base_p99)),
        );
    }
}
