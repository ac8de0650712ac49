//! Row 16: the HTTP trigger. The `webhook` module behind `http-listen`, its events routed to
//! a second module's inbox (a `loadgen` that takes them in `on-message`); `CONNECTIONS`
//! keep-alive clients POST a small JSON body each, one request after another, `COUNT` in
//! all; requests per second from the first request to the last answer (every answer must be
//! 202). The baseline does the same work natively in the same run: a hyper server that
//! checks the body is JSON, builds the same message, pushes it into a bounded tokio channel
//! as deep as the inbox (another task takes it) and answers 202, for the same clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use wedge_bench::{Rows, Samples, rounds, scratch};
use wedge_core::Message;
use wedge_host::config::Deployment;
use wedge_runtime::EngineCtx;
use wedge_test_artifacts::{LOADGEN, WEBHOOK};

const COUNT: usize = 20_000;
/// Clients at once: under the default `http-concurrency` (16), so none is refused.
const CONNECTIONS: usize = 8;
const BODY: &str = r#"{"door":"open","sensor":"front","seq":12345}"#;
const INBOX: usize = wedge_runtime::spec::DEFAULT_INBOX;

#[tokio::main]
async fn main() {
    let engine = wedge_bench::engine();
    // The pooling allocator keeps instance slots mapped: an instance per request is where it
    // should pay (docs/benchmarks.md measured it for module start).
    let pooling = wedge_runtime::EngineCtx::with_allocation(wedge_runtime::Allocation::Pooling {
        instances: 64,
    })
    .expect("pooling engine");
    let (mut on_demand, mut pooled) = (Samples::default(), Samples::default());
    for _ in 0..rounds(3) {
        let native = native().await;
        on_demand.push(webhook(&engine).await, native);
        pooled.push(webhook(&pooling).await, native);
    }
    let mut rows = Rows::new("http", "16 HTTP trigger");
    let note = format!(
        "{COUNT} POSTs of {} B over {CONNECTIONS} keep-alive connections; a fresh instance per \
         request; all answered 202",
        BODY.len()
    );
    let baseline = "native: hyper, JSON check, bounded tokio channel";
    rows.paired(
        "webhook: POST JSON → telemetry.send → module",
        "req/s",
        &on_demand,
        baseline,
        &note,
    );
    rows.paired(
        "the same, pooling allocator (64 slots)",
        "req/s",
        &pooled,
        baseline,
        &note,
    );
    rows.write();
}

/// Requests per second of `COUNT` POSTs to `addr` over `CONNECTIONS` connections.
async fn load(addr: SocketAddr) -> f64 {
    let start = Instant::now();
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| tokio::spawn(client(addr, COUNT / CONNECTIONS)))
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    (COUNT / CONNECTIONS * CONNECTIONS) as f64 / start.elapsed().as_secs_f64()
}

/// One keep-alive connection sending `count` POSTs, one after another.
async fn client(addr: SocketAddr, count: usize) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    for _ in 0..count {
        sender.ready().await.expect("connection ready");
        let request = Request::post("/doors")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
            .expect("request");
        let response = sender.send_request(request).await.expect("answer");
        let status = response.status();
        let body = response.into_body().collect().await.expect("body");
        assert_eq!(status, StatusCode::ACCEPTED, "{:?}", body.to_bytes());
    }
}

async fn native() -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(INBOX);
    let taker = tokio::spawn(async move {
        let mut taken = 0;
        while let Some(message) = rx.recv().await {
            std::hint::black_box(message);
            taken += 1;
        }
        taken
    });
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let tx = tx.clone();
                async move { Ok::<_, Infallible>(answer(request, &tx).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    let rate = load(addr).await;
    server.abort();
    let _ = server.await;
    // The server's senders are gone with it: the taker sees the channel close.
    let taken = tokio::time::timeout(Duration::from_secs(10), taker)
        .await
        .expect("taker ends")
        .expect("taker");
    assert_eq!(taken, COUNT / CONNECTIONS * CONNECTIONS);
    rate
}

/// What the webhook does, natively.
async fn answer(
    request: Request<Incoming>,
    tx: &tokio::sync::mpsc::Sender<Message>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let status = match serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        Err(_) => StatusCode::BAD_REQUEST,
        Ok(_) => {
            let message = Message {
                body: body.to_vec(),
                properties: vec![("path".into(), path)],
                content_type: Some("application/json".into()),
                content_encoding: Some("utf-8".into()),
            };
            match tx.try_send(message) {
                Ok(()) => StatusCode::ACCEPTED,
                Err(_) => StatusCode::SERVICE_UNAVAILABLE,
            }
        }
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"accepted\n")));
    *response.status_mut() = status;
    response
}

async fn webhook(engine: &EngineCtx) -> f64 {
    let dir = scratch();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let toml = format!(
        "[modules.webhook]\npath = {WEBHOOK:?}\nhttp-listen = \"127.0.0.1:{port}\"\n\
         [modules.receiver]\npath = {LOADGEN:?}\nconfig = {{ limit = 1 }}\n\
         [routes]\nr = {{ from = \"webhook/events\", to = \"receiver/in\" }}\n"
    );
    let deployment = Deployment::parse(&dir.path().join("wedge.toml"), &toml).expect("toml");
    let runtime = wedge_bench::local_runtime(engine, dir.path());
    for name in ["receiver", "webhook"] {
        let module = &deployment.modules[name];
        let image = engine.compile_file(&module.path).expect("compile");
        runtime
            .add_module(name, module.spec.clone(), image, module.spec.config.clone())
            .expect("add");
    }
    runtime
        .set_routes(&deployment.routes, deployment.outbox)
        .expect("routes");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let rate = load(addr).await;
    let expected = (COUNT / CONNECTIONS * CONNECTIONS) as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while runtime
        .status()
        .iter()
        .find(|m| m.name == "receiver")
        .map_or(0, |m| m.messages_in)
        < expected
    {
        assert!(Instant::now() < deadline, "the receiver took them all");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    runtime.shutdown().await;
    rate
}
