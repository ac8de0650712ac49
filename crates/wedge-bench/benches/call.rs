//! Row 2: the host call. A `loadgen` module sends `COUNT` messages of 256 B, one
//! `telemetry.send` each, through a route to a second `loadgen` module's inbox, which takes
//! them in `on-message`; nanoseconds per message from the first send until the receiver has
//! taken the last. The baseline does the same work natively in the same run: a task pushes
//! `COUNT` clones of the same message into a bounded tokio channel as deep as the inbox, and
//! another task takes them.

use std::time::{Duration, Instant};

use wedge_bench::{Rows, Samples, rounds, scratch};
use wedge_core::Message;
use wedge_host::config::Deployment;
use wedge_runtime::EngineCtx;
use wedge_test_artifacts::LOADGEN;

const COUNT: usize = 200_000;
const BODY: usize = 256;
const INBOX: usize = wedge_runtime::spec::DEFAULT_INBOX;

#[tokio::main]
async fn main() {
    let engine = wedge_bench::engine();
    let mut samples = Samples::default();
    for _ in 0..rounds(5) {
        let native = native().await;
        let wedge = module_to_module(&engine).await;
        samples.push(wedge, native);
    }
    let mut rows = Rows::new("call", "2 host call");
    rows.paired(
        "telemetry.send module → route → module",
        "ns/msg",
        &samples,
        "native: bounded tokio channel push + take",
        &format!(
            "{COUNT} messages of {BODY} B, one send per message; until the receiver's on-message took the last"
        ),
    );
    rows.write();
}

async fn native() -> f64 {
    let message = Message {
        body: vec![b'x'; BODY],
        content_type: Some("text/plain".into()),
        ..Message::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(INBOX);
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..COUNT {
            tx.send(message.clone()).await.expect("receiver alive");
        }
    });
    let mut taken = 0;
    while let Some(message) = rx.recv().await {
        std::hint::black_box(message);
        taken += 1;
    }
    sender.await.expect("sender");
    assert_eq!(taken, COUNT);
    start.elapsed().as_nanos() as f64 / COUNT as f64
}

async fn module_to_module(engine: &EngineCtx) -> f64 {
    let dir = scratch();
    let toml = format!(
        "[modules.sender]\npath = {LOADGEN:?}\ntick-ms = 1\n\
         config = {{ limit = {COUNT}, size = {BODY}, per-tick = 100000 }}\n\
         [modules.receiver]\npath = {LOADGEN:?}\nconfig = {{ limit = 1 }}\n\
         [routes]\nr = {{ from = \"sender/out\", to = \"receiver/in\" }}\n"
    );
    let deployment = Deployment::parse(&dir.path().join("wedge.toml"), &toml).expect("toml");
    let runtime = wedge_bench::local_runtime(engine, dir.path());
    let receiver = &deployment.modules["receiver"];
    let image = engine.compile_file(&receiver.path).expect("compile");
    runtime
        .add_module(
            "receiver",
            receiver.spec.clone(),
            image.clone(),
            receiver.spec.config.clone(),
        )
        .expect("receiver");
    runtime
        .set_routes(&deployment.routes, deployment.outbox)
        .expect("routes");
    let sender = &deployment.modules["sender"];
    let start = Instant::now();
    runtime
        .add_module(
            "sender",
            sender.spec.clone(),
            image,
            sender.spec.config.clone(),
        )
        .expect("sender");
    let deadline = start + Duration::from_secs(120);
    loop {
        let taken = runtime
            .status()
            .iter()
            .find(|m| m.name == "receiver")
            .map_or(0, |m| m.messages_in);
        if taken as usize >= COUNT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "receiver took {taken} of {COUNT}"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let ns = start.elapsed().as_nanos() as f64 / COUNT as f64;
    runtime.shutdown().await;
    ns
}
