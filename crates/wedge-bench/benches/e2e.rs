//! Rows 1 and 5: telemetry end to end, module → runtime → durable outbox (SQLite on disk, group
//! commit) → IoT Hub link → Mosquitto over TLS, QoS 1, until every PUBACK; against plain
//! rumqttc publishing as many messages of the same size to the same broker in the same round.
//! The modules are `loadgen` guests (no JSON, no state per message: the host's path is what is
//! measured). The clock starts once the modules are compiled.

use std::sync::Arc;
use std::time::Instant;

use wedge_bench::iothub::{Hub, acknowledged, durable_outbox};
use wedge_bench::{Rows, Samples, proc, rounds, scratch};
use wedge_host::config::Deployment;
use wedge_runtime::{EngineCtx, Runtime};
use wedge_test_artifacts::LOADGEN;

/// One workload: `modules` loadgen modules sending `count` messages in all.
#[derive(Clone, Copy)]
struct Workload {
    modules: usize,
    count: usize,
    size: usize,
    batch: usize,
}

#[tokio::main]
async fn main() {
    let hub = Hub::start();
    let engine = wedge_bench::engine();
    let rounds = rounds(3);
    let mut rows = Rows::new("e2e", "1 e2e telemetry");
    for size in [256, 4096] {
        // Fewer one-per-call messages: each waits for its commit.
        let cases = [
            (
                "(a) 1 module, 1 msg per call",
                Workload {
                    modules: 1,
                    count: 2_000,
                    size,
                    batch: 1,
                },
                None,
            ),
            (
                "(b) 10 modules, 1 msg per call",
                Workload {
                    modules: 10,
                    count: 5_000,
                    size,
                    batch: 1,
                },
                Some(0.9),
            ),
            (
                "(c) 1 module, send-batch 100",
                Workload {
                    modules: 1,
                    count: 20_000,
                    size,
                    batch: 100,
                },
                Some(0.9),
            ),
        ];
        for (name, workload, target) in cases {
            let workload = Workload {
                count: if size > 1024 {
                    workload.count / 2
                } else {
                    workload.count
                },
                ..workload
            };
            let mut samples = Samples::default();
            for _ in 0..rounds {
                let plain = hub.plain_rumqttc(workload.count, size).await;
                let (wedge, _) = run(&hub, &engine, workload).await;
                samples.push(wedge, plain);
            }
            let note = format!(
                "{} messages of {size} B per round; clock from the first send to the last PUBACK",
                workload.count
            );
            let row = rows.paired(
                &format!("{name}, {size} B"),
                "msg/s",
                &samples,
                "plain rumqttc, 100 in flight",
                &note,
            );
            if let Some(target) = target {
                let met = row.ratio.is_some_and(|r| r.median >= target);
                row.target(&format!("≥ {target}×"), met);
            }
        }
    }

    rows.group("5 scale");
    for modules in [1, 10, 50, 100] {
        let workload = Workload {
            modules,
            count: 20_000,
            size: 256,
            batch: 100,
        };
        let (mut samples, mut rss) = (Samples::default(), Vec::new());
        for _ in 0..rounds {
            let plain = hub.plain_rumqttc(workload.count, workload.size).await;
            let (wedge, resident) = run(&hub, &engine, workload).await;
            samples.push(wedge, plain);
            rss.push(resident);
        }
        rows.paired(
            &format!("{modules} modules, send-batch 100, 256 B"),
            "msg/s",
            &samples,
            "plain rumqttc, 100 in flight",
            &format!(
                "20000 messages in all per round, {} per module",
                20_000 / modules
            ),
        );
        rows.single(
            &format!("{modules} modules: RSS of the host process at the end"),
            "MB",
            &rss,
            "this bench's own process (runtime, outbox, link; the baseline's client is gone)",
        );
    }
    rows.write();
}

/// Runs `workload` on a fresh runtime, store and link; messages per second and the RSS (MB)
/// once all were acknowledged.
async fn run(hub: &Hub, engine: &EngineCtx, w: Workload) -> (f64, f64) {
    let dir = scratch();
    let (store, outbox) = durable_outbox(dir.path());
    let link = Arc::new(hub.link(outbox.clone(), store.meta()).await);
    let per_module = w.count / w.modules;
    let mut toml = String::new();
    for m in 0..w.modules {
        toml.push_str(&format!(
            "[modules.m{m}]\npath = {LOADGEN:?}\ntick-ms = 1\n\
             config = {{ limit = {per_module}, batch = {}, size = {}, per-tick = 1000 }}\n",
            w.batch, w.size
        ));
    }
    toml.push_str("[routes]\n");
    for m in 0..w.modules {
        toml.push_str(&format!(
            "r{m} = {{ from = \"m{m}/out\", to = \"$upstream\" }}\n"
        ));
    }
    let deployment = Deployment::parse(&dir.path().join("wedge.toml"), &toml).expect("toml");
    let runtime = Runtime::new(
        engine.clone(),
        link.clone(),
        store,
        outbox,
        dir.path().into(),
    );
    runtime
        .set_routes(&deployment.routes, deployment.outbox)
        .expect("routes");
    let images: Vec<_> = deployment
        .modules
        .iter()
        .map(|(name, module)| {
            (
                name,
                module,
                engine.compile_file(&module.path).expect("compile"),
            )
        })
        .collect();
    let start = Instant::now();
    for (name, module, image) in images {
        runtime
            .add_module(name, module.spec.clone(), image, module.spec.config.clone())
            .expect("add module");
    }
    let rate = acknowledged(&link, per_module * w.modules, start).await;
    let rss = proc::rss("self").total_mb();
    runtime.shutdown().await;
    (rate, rss)
}
