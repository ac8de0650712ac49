//! Row 4: footprint of whole `wedge run` processes of the release binary (`$WEDGE_BIN`, else
//! `target/release/wedge`) on the local hub. RSS is read from `/proc/PID/status` as soon as
//! `wedge status` says every module runs. Modules start from the compile cache (each data dir
//! is run once before, untimed) unless the row says cold compile.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wedge_bench::proc::{Rss, rss};
use wedge_bench::{Rows, Samples, rounds, scratch, variant};
use wedge_test_artifacts::{BIG, LOADGEN, SENSOR};

const MESSAGES: u64 = 1_000_000;

fn main() {
    let wedge = wedge_bench::wedge_bin();
    let rounds = rounds(3);
    let mut rows = Rows::new("footprint", "4 footprint");
    let work = scratch();
    let sensors = |n: usize| Deployment::sensors(work.path(), n, false);

    let empty = Deployment::new(work.path(), "empty", String::new(), 0);
    let one = sensors(1);
    let ten = sensors(10);
    let hundred = sensors(100);
    let distinct = Deployment::sensors(work.path(), 10, true);
    let mut idle: Vec<(&Deployment, Samples)> = [&one, &ten, &hundred, &distinct]
        .map(|d| (d, Samples::default()))
        .into();
    let (mut arenas, mut workers) = (Samples::default(), Samples::default());
    for _ in 0..rounds {
        let base = empty.idle(&wedge, &[]).total_mb();
        for (deployment, samples) in &mut idle {
            samples.push(deployment.idle(&wedge, &[]).total_mb(), base);
        }
        let default = ten.idle(&wedge, &[]).total_mb();
        arenas.push(
            ten.idle(&wedge, &[("MALLOC_ARENA_MAX", "2")]).total_mb(),
            default,
        );
        workers.push(
            ten.idle(&wedge, &[("TOKIO_WORKER_THREADS", "1")])
                .total_mb(),
            default,
        );
    }
    let mut per_module = Vec::new();
    for (deployment, samples) in &idle {
        let row = rows.paired(
            &format!("RSS idle, {}", deployment.label),
            "MB",
            samples,
            "host with no modules",
            "VmRSS once all run; the file-backed part (the executable's code, shared, clean) is in report.json's note",
        );
        match deployment.modules {
            10 => {
                let met = row.value.median <= 12.0;
                row.target("≤ 12 MB", met);
            }
            100 if !deployment.distinct => {
                let met = row.value.median <= 30.0;
                row.target("≤ 30 MB", met);
            }
            _ => {}
        }
        if deployment.modules == 100 || deployment.distinct {
            let n = (deployment.modules - 1) as f64;
            let increments: Vec<f64> = samples
                .value
                .iter()
                .zip(&idle[0].1.value)
                .map(|(many, one)| (many - one) * 1000.0 / n)
                .collect();
            per_module.push((deployment.distinct, increments));
        }
    }
    for (distinct, increments) in per_module {
        let what = match distinct {
            false => (
                "per-module increment, one binary (1 → 100 sensors)",
                "(RSS(100) − RSS(1)) / 99",
            ),
            true => (
                "per-module increment, distinct binaries (1 → 10 sensors)",
                "(RSS(10 distinct) − RSS(1)) / 9",
            ),
        };
        rows.single(what.0, "KB", &increments, what.1);
    }
    rows.paired(
        "RSS idle, 10 sensors, MALLOC_ARENA_MAX=2",
        "MB",
        &arenas,
        "the same, glibc's default arenas",
        "lever: fewer malloc arenas",
    );
    rows.paired(
        "RSS idle, 10 sensors, TOKIO_WORKER_THREADS=1",
        "MB",
        &workers,
        "the same, one worker per core",
        "lever: tokio worker threads",
    );
    let split = ten.idle(&wedge, &[]);
    rows.single(
        "RSS idle, 10 sensors: file-backed part",
        "MB",
        &[split.file as f64 * 1024.0 / 1e6],
        &format!(
            "of {:.1} MB; anonymous {:.1} MB",
            split.total_mb(),
            split.anon as f64 * 1024.0 / 1e6
        ),
    );

    // 1 M messages: loadgen → route → loadgen, RSS at 100 k (the baseline) and at 1 M.
    let flood = Deployment::new(
        work.path(),
        "flood",
        format!(
            "[modules.sender]\npath = {LOADGEN:?}\ntick-ms = 1\n\
             config = {{ limit = {MESSAGES}, batch = 100, size = 256, per-tick = 10000 }}\n\
             [modules.receiver]\npath = {LOADGEN:?}\nconfig = {{ limit = 1 }}\n\
             [routes]\nr = {{ from = \"sender/out\", to = \"receiver/in\" }}\n"
        ),
        2,
    );
    let mut flat = Samples::default();
    for _ in 0..rounds.min(2) {
        flood.warm(&wedge);
        let mut host = flood.spawn(&wedge, &[]);
        flood.until(&host, |s| received(s) >= MESSAGES / 10);
        let early = rss(&host.id().to_string()).total_mb();
        flood.until(&host, |s| received(s) >= MESSAGES);
        let late = rss(&host.id().to_string()).total_mb();
        stop(&mut host);
        flat.push(late, early);
    }
    let row = rows.paired(
        "RSS after 1 M messages (module → route → module)",
        "MB",
        &flat,
        "RSS after the first 100 k",
        "send-batch 100 of 256 B; flat = ratio ≈ 1.0",
    );
    let met = row.ratio.is_some_and(|r| r.median <= 1.1);
    row.target("flat (≤ 1.1×)", met);

    // Cold compile of the largest component, against the same host started from the cache.
    let big_wasm = std::fs::metadata(BIG).expect("big.wasm").len();
    let big = Deployment::new(
        work.path(),
        "big",
        format!("[modules.big]\npath = {BIG:?}\n"),
        1,
    );
    let (mut cold, mut cold_arenas, mut peaks) =
        (Samples::default(), Samples::default(), Vec::new());
    for _ in 0..rounds.min(2) {
        let (after, steady) = big.cold_then_cached(&wedge, &[]);
        cold.push(after.total_mb(), steady.total_mb());
        peaks.push(after.peak as f64 * 1024.0 / 1e6);
        let (after, steady) = big.cold_then_cached(&wedge, &[("MALLOC_ARENA_MAX", "2")]);
        cold_arenas.push(after.total_mb(), steady.total_mb());
    }
    let note = format!(
        "modules/test-guests/big ({:.1} MB, generated code; stands in for a Python component, which wedge cannot build yet); peak during the compile {:.0} MB",
        big_wasm as f64 / 1e6,
        wedge_bench::Stats::of(&peaks).median
    );
    let row = rows.paired(
        "RSS right after a cold compile of a large component",
        "MB",
        &cold,
        "the same host started from the cache",
        &note,
    );
    let met = row.ratio.is_some_and(|r| r.median <= 2.0);
    row.target("≤ 2×", met);
    rows.paired(
        "the same, MALLOC_ARENA_MAX=2",
        "MB",
        &cold_arenas,
        "the same host started from the cache",
        "lever: fewer malloc arenas for Cranelift's threads",
    );

    // The shipped binary.
    let stripped = work.path().join("wedge-stripped");
    let status = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&wedge)
        .status()
        .expect("strip");
    assert!(status.success(), "strip failed");
    let size = |p: &Path| std::fs::metadata(p).expect("binary").len() as f64 / 1e6;
    let row = rows.single(
        "binary, stripped",
        "MB",
        &[size(&stripped)],
        &format!(
            "unstripped {:.0} MB; by crate: {}",
            size(&wedge),
            by_crate(&wedge)
        ),
    );
    let met = row.value.median <= 15.0;
    row.target("≤ 15 MB", met);
    rows.write();
}

/// A `wedge.toml` in a data dir of its own.
struct Deployment {
    label: String,
    dir: PathBuf,
    modules: usize,
    distinct: bool,
}

impl Deployment {
    fn new(work: &Path, name: &str, toml: String, modules: usize) -> Deployment {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).expect("deployment dir");
        std::fs::write(dir.join("wedge.toml"), toml).expect("wedge.toml");
        Deployment {
            label: name.into(),
            dir,
            modules,
            distinct: false,
        }
    }

    /// `n` sensors ticking once a second; with `distinct`, each its own binary.
    fn sensors(work: &Path, n: usize, distinct: bool) -> Deployment {
        let name = format!(
            "{n} sensors{}",
            if distinct { ", distinct binaries" } else { "" }
        );
        let sensor = std::fs::read(SENSOR).expect("sensor.wasm");
        let mut toml = String::new();
        for i in 0..n {
            let path = match distinct {
                false => PathBuf::from(SENSOR),
                true => {
                    let path = work.join(format!("sensor-{i}.wasm"));
                    std::fs::write(&path, variant(&sensor, i)).expect("variant");
                    path
                }
            };
            toml.push_str(&format!(
                "[modules.s{i}]\npath = {path:?}\ntick-ms = 1000\n"
            ));
        }
        // Short: the control socket's path must fit in 108 bytes.
        let dir = format!("s{n}{}", if distinct { "x" } else { "" });
        let mut deployment = Deployment::new(work, &dir, toml, n);
        deployment.label = name;
        deployment.distinct = distinct;
        deployment
    }

    fn spawn(&self, wedge: &Path, env: &[(&str, &str)]) -> Child {
        Command::new(wedge)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("run")
            .arg(self.dir.join("wedge.toml"))
            .envs(env.iter().copied())
            .env("WEDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wedge")
    }

    /// Polls `wedge status --json` until `check` holds.
    fn until(&self, host: &Child, check: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let pid = host.id();
        loop {
            assert!(
                Path::new(&format!("/proc/{pid}")).exists(),
                "{}: wedge exited",
                self.label
            );
            if self.status().is_some_and(|status| check(&status)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not there in time: {:?}",
                self.label,
                self.status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status(&self) -> Option<Value> {
        let wedge = WEDGE.get().expect("set in idle");
        let out = Command::new(wedge)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["status", "--json"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Runs once so that the modules are in the compile cache.
    fn warm(&self, wedge: &Path) {
        let _ = WEDGE.set(wedge.to_path_buf());
        if !self.dir.join("data/compiled").exists() {
            let mut host = self.spawn(wedge, &[]);
            self.until(&host, |s| running(s) >= self.modules);
            stop(&mut host);
        }
    }

    /// RSS once every module runs (from the cache).
    fn idle(&self, wedge: &Path, env: &[(&str, &str)]) -> Rss {
        self.warm(wedge);
        let mut host = self.spawn(wedge, env);
        self.until(&host, |s| running(s) >= self.modules);
        let rss = rss(&host.id().to_string());
        stop(&mut host);
        rss
    }

    /// RSS right after a cold compile (empty cache), and of the next start from the cache.
    fn cold_then_cached(&self, wedge: &Path, env: &[(&str, &str)]) -> (Rss, Rss) {
        let _ = WEDGE.set(wedge.to_path_buf());
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        let mut host = self.spawn(wedge, env);
        self.until(&host, |s| running(s) >= self.modules);
        let cold = rss(&host.id().to_string());
        stop(&mut host);
        (cold, self.idle(wedge, env))
    }
}

static WEDGE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn modules(status: &Value) -> impl Iterator<Item = &Value> {
    status["modules"].as_array().into_iter().flatten()
}

fn running(status: &Value) -> usize {
    modules(status).filter(|m| m["state"] == "running").count()
}

fn received(status: &Value) -> u64 {
    modules(status)
        .filter(|m| m["name"] == "receiver")
        .filter_map(|m| m["messages-in"].as_u64())
        .sum()
}

/// SIGTERM, as a service manager stops it, then waits.
fn stop(host: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status();
    let _ = host.wait();
}

/// The largest crates in the executable's code and data, by symbol size (`nm`), as text.
fn by_crate(binary: &Path) -> String {
    let out = Command::new("nm")
        .args(["--size-sort", "-S", "-C"])
        .arg(binary)
        .output()
        .expect("nm");
    let mut sizes: std::collections::BTreeMap<String, u64> = Default::default();
    let mut total = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.splitn(4, ' ');
        let (Some(_), Some(size), Some(_kind), Some(name)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(size) = u64::from_str_radix(size, 16) else {
            continue;
        };
        total += size;
        sizes
            .entry(crate_of(name))
            .and_modify(|s| *s += size)
            .or_insert(size);
    }
    let mut sizes: Vec<_> = sizes.into_iter().collect();
    sizes.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    let top: Vec<String> = sizes
        .iter()
        .take(12)
        .map(|(name, size)| format!("{name} {:.1}", *size as f64 / 1e6))
        .collect();
    format!(
        "{} MB of symbols: {} (MB)",
        total as f64 / 1e6,
        top.join(", ")
    )
}

/// The crate a demangled symbol belongs to: its first path segment (`<wasmtime::X as
/// core::fmt::Debug>::fmt` is wasmtime's), or `C` for symbols without one (SQLite, ring's C).
fn crate_of(symbol: &str) -> String {
    let s = symbol
        .trim_start_matches(['<', '&', '*', '('])
        .trim_start_matches("dyn ")
        .trim_start_matches("mut ");
    match s.split_once("::") {
        Some((first, _)) if first.chars().all(|c| c.is_alphanumeric() || c == '_') => {
            first.to_string()
        }
        _ => "C and other".into(),
    }
}
