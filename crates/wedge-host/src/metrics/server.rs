//! The HTTP/1 listener of the metrics endpoints (hyper): GET `/metrics`, `/healthz`,
//! `/readyz`. A scraper on the network is not trusted more than any other client: connections
//! are capped, a request has a few seconds to arrive and a bounded header, its body is never
//! read, and every connection is closed after one answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Sources;
use super::collector::Scrape;

/// Most connections served at once; more are closed at once (a scraper retries at its next
/// interval).
const MAX_CONNECTIONS: usize = 16;
/// How long a client has to send its request line and headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection is kept, whatever it does (a slow reader of the answer included).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Buffer for the request head: hyper refuses a longer head (its smallest allowed is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Pause after a failed `accept` (out of file descriptors), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// The `Content-Type` of prometheus-client's text encoding (OpenMetrics 1.0).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Binds the listener.
///
/// # Errors
/// The address cannot be bound (in use, not local, not permitted); the message names it.
pub(crate) async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen for metrics on {address} (`[metrics] listen`)"))
}

/// Serves connections until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, sources: Arc<Sources>) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(sources.clone())));
    let registry = Arc::new(registry);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "metrics listener cannot accept a connection");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let (registry, sources) = (registry.clone(), sources.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(|request: Request<hyper::body::Incoming>| {
                let response = answer(&request, &registry, &sources);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Err(error)) => tracing::debug!(%error, "metrics connection failed"),
                Err(_) => tracing::debug!("metrics connection timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

fn answer<B>(
    request: &Request<B>,
    registry: &Registry,
    sources: &Sources,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => {
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(OPENMETRICS),
                    );
                    response
                }
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the metrics could not be encoded\n".into(),
                ),
            }
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match sources.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reasons) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reasons}\n")),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: this listener serves /metrics, /healthz and /readyz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(TEXT));
    response
}
