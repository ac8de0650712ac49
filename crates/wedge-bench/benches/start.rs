//! Row 3: module start. Each start is of another binary (the `echo` guest with a custom
//! section naming it), so nothing is shared with the previous start:
//! - from the compile cache: load the cached machine code (`DATA_DIR/compiled`), add the
//!   module to a running runtime and wait for its answer to a first `ping` (so `init` has
//!   returned); with wasmtime's on-demand allocator against a `ping` of a module already
//!   running, and with the pooling allocator against the on-demand start of the same round;
//! - cold compile: Cranelift compiling the component (no cache) and checking it against the
//!   world, against loading the same from the cache.

use std::path::Path;
use std::time::{Duration, Instant};

use wedge_bench::{Rows, Samples, rounds, scratch, variant};
use wedge_runtime::spec::ModuleSpec;
use wedge_runtime::{Allocation, EngineCtx, Runtime};
use wedge_test_artifacts::ECHO;

/// Starts per round and allocator; the round's figure is their median.
const STARTS: usize = 20;

#[tokio::main]
async fn main() {
    let echo = std::fs::read(ECHO).expect("echo.wasm");
    let spec = spec();
    let mut rows = Rows::new("start", "3 module start");
    let (mut whole, mut on_demand, mut pooling, mut pooling_whole, mut compile) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    for round in 0..rounds(3) {
        let binaries: Vec<Vec<u8>> = (0..STARTS)
            .map(|i| variant(&echo, round * 1000 + i))
            .collect();
        let cache = scratch();
        // Cold compiles (into the cache), then loads of the same from the cache.
        let cold_engine = EngineCtx::new()
            .expect("engine")
            .with_cache(cache.path().into());
        let cold: Vec<Duration> = binaries
            .iter()
            .map(|b| timed(|| drop(cold_engine.compile(b, "echo").expect("compile"))))
            .collect();
        let loaded: Vec<Duration> = binaries
            .iter()
            .map(|b| timed(|| drop(cold_engine.compile(b, "echo").expect("load"))))
            .collect();
        compile.push(median_ms(cold), median_ms(loaded));

        let plain = starts(Allocation::OnDemand, cache.path(), &binaries, &spec).await;
        let pooled = starts(
            Allocation::Pooling { instances: 64 },
            cache.path(),
            &binaries,
            &spec,
        )
        .await;
        whole.push(
            median_us(plain.whole.clone()),
            median_us(plain.pings.clone()),
        );
        on_demand.push(median_us(plain.instance.clone()), median_us(plain.pings));
        pooling.push(median_us(pooled.instance), median_us(plain.instance));
        pooling_whole.push(median_us(pooled.whole), median_us(plain.whole));
    }
    let per_round = format!("median of {STARTS} starts of distinct `echo` binaries per round");
    rows.paired(
        "from cache, on-demand: load code + instantiate + init + first ping",
        "µs",
        &whole,
        "ping of a running module",
        &per_round,
    );
    rows.paired(
        "from cache, pooling: the same",
        "µs",
        &pooling_whole,
        "the same with on-demand",
        "pool of 64 instances, 64 MiB memories",
    );
    rows.paired(
        "instantiate + init + first ping (code loaded), on-demand",
        "µs",
        &on_demand,
        "ping of a running module",
        &per_round,
    );
    rows.paired(
        "instantiate + init + first ping (code loaded), pooling",
        "µs",
        &pooling,
        "the same with on-demand",
        "pool of 64 instances, 64 MiB memories",
    );
    rows.paired(
        "cold compile (Cranelift) + checks",
        "ms",
        &compile,
        "load from the compile cache",
        &format!(
            "`echo` ({} KiB), median of {STARTS} per round",
            echo.len() / 1024
        ),
    );
    rows.write();
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn median_ms(samples: Vec<Duration>) -> f64 {
    median(samples).as_secs_f64() * 1e3
}

fn median_us(samples: Vec<Duration>) -> f64 {
    median(samples).as_secs_f64() * 1e6
}

/// The settings of `echo` as `wedge.toml` gives them by default.
fn spec() -> ModuleSpec {
    let dir = scratch();
    let toml = format!("[modules.echo]\npath = {ECHO:?}\n");
    let deployment =
        wedge_host::config::Deployment::parse(&dir.path().join("wedge.toml"), &toml).expect("toml");
    deployment.modules["echo"].spec.clone()
}

/// The times of [`starts`].
struct Starts {
    /// From reading the cache to the first ping answered.
    whole: Vec<Duration>,
    /// From the loaded image to the first ping answered.
    instance: Vec<Duration>,
    /// Pings of a module already running.
    pings: Vec<Duration>,
}

/// Starts of each binary (cached in `cache`) on a runtime with allocator `allocation`, each
/// until its first `ping` is answered; and as many pings of a module already running.
async fn starts(
    allocation: Allocation,
    cache: &Path,
    binaries: &[Vec<u8>],
    spec: &ModuleSpec,
) -> Starts {
    let engine = EngineCtx::with_allocation(allocation)
        .expect("engine")
        .with_cache(cache.into());
    let dir = scratch();
    let runtime = wedge_bench::local_runtime(&engine, dir.path());
    let image = engine.compile(&binaries[0], "echo").expect("load");
    runtime
        .add_module("running", spec.clone(), image, spec.config.clone())
        .expect("add");
    ping(&runtime, "running").await;
    let mut times = Starts {
        whole: Vec::new(),
        instance: Vec::new(),
        pings: Vec::new(),
    };
    for (i, binary) in binaries.iter().enumerate().skip(1) {
        times.pings.push(ping(&runtime, "running").await);
        let name = format!("m{i}");
        let start = Instant::now();
        let image = engine.compile(binary, "echo").expect("load");
        let loaded = Instant::now();
        runtime
            .add_module(&name, spec.clone(), image, spec.config.clone())
            .expect("add");
        ping(&runtime, &name).await;
        times.whole.push(start.elapsed());
        times.instance.push(loaded.elapsed());
        runtime.remove_module(&name).await.expect("remove");
    }
    runtime.shutdown().await;
    times
}

/// One `ping`, answered 200; how long it took.
async fn ping(runtime: &Runtime, module: &str) -> Duration {
    let start = Instant::now();
    let answer = runtime.invoke(module, "ping", "{}").await.expect("ping");
    assert_eq!(answer.status, 200, "{module}: {}", answer.payload);
    start.elapsed()
}
