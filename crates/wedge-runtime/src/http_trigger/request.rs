//! One request: the host's limits in front (concurrency, body size, deadline), then a fresh
//! instance of the module's component, with the module's usual store (its imports, memory
//! limit and CPU budget per call), and its `handle`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;
use tracing::Instrument;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::host::{HostState, MemoryLimits};
use crate::limiter::RateLimiter;
use crate::module::{ModuleCtx, Outcome, begin_call, new_store, trapped_quietly};
use crate::spec::HttpTrigger;

use super::body::{self, BodyError};
use super::stats::Ending;

/// The host's warnings about a module's failed requests (traps, timeouts): a burst of
/// `WARN_BURST`, then `WARN_PER_MINUTE`. They come as fast as clients send requests.
const WARN_BURST: u32 = 5;
const WARN_PER_MINUTE: u32 = 6;

/// What the guest's (or the host's own) answer carries.
pub(super) type Body = HyperOutgoingBody;

/// Serves the requests of one module's trigger.
pub(super) struct Handler {
    ctx: Arc<ModuleCtx>,
    pre: ProxyPre<HostState>,
    trigger: HttpTrigger,
    /// One permit per request in flight (`http-concurrency`).
    slots: Arc<Semaphore>,
    warnings: Arc<RateLimiter>,
}

impl Handler {
    pub(super) fn new(ctx: Arc<ModuleCtx>, pre: ProxyPre<HostState>, trigger: HttpTrigger) -> Self {
        Handler {
            slots: Arc::new(Semaphore::new(trigger.concurrency)),
            warnings: Arc::new(RateLimiter::new(
                WARN_BURST,
                WARN_PER_MINUTE,
                Duration::from_secs(60),
            )),
            ctx,
            pre,
            trigger,
        }
    }

    /// The answer to `request`: the guest's, or the host's when a limit refused it or the
    /// guest failed to answer.
    pub(super) async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let stats = &self.ctx.stats.http;
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            stats.count(Ending::Busy);
            let n = self.trigger.concurrency;
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{n} requests in flight (`http-concurrency`): try again later"),
            );
        };
        let slot = Slot::new(self.ctx.clone(), permit);
        let timeout = Duration::from_millis(self.trigger.timeout_ms);
        let deadline = Instant::now() + timeout;
        let limit = self.trigger.body_bytes;
        let (parts, bytes) =
            match tokio::time::timeout_at(deadline, body::collect(request, limit)).await {
                Ok(Ok(request)) => request,
                Ok(Err(BodyError::TooLarge)) => {
                    stats.count(Ending::TooLarge);
                    return closing(plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the body is larger than {limit} bytes (`http-body-kb`)"),
                    ));
                }
                Ok(Err(BodyError::Read(e))) => {
                    return closing(plain(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the body: {e}"),
                    ));
                }
                Err(_) => {
                    stats.count(Ending::TimedOut);
                    return closing(plain(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("the body did not arrive within {timeout:?} (`http-timeout-ms`)"),
                    ));
                }
            };
        let body = Full::new(bytes)
            .map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} });
        self.call(Request::from_parts(parts, body), deadline, timeout, slot)
            .await
    }

    /// Calls `handle` of a fresh instance with `request`; the instance is dropped at
    /// `deadline` whatever it does (a response streaming its body is cut off then).
    async fn call<B>(
        &self,
        request: Request<B>,
        deadline: Instant,
        timeout: Duration,
        slot: Slot,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let ctx = &self.ctx;
        let mut store = match new_store(self.pre.engine(), ctx.clone()) {
            Ok(store) => store,
            Err(e) => return self.failed(e),
        };
        // Instances run side by side: the module's memory gauge stays its main instance's.
        store.data_mut().limits = MemoryLimits::new(ctx.spec().memory_mb, Arc::default());
        let (tx, rx) = oneshot::channel();
        let mut http = store.data_mut().http();
        let resources = http
            .new_incoming_request(Scheme::Http, request)
            .and_then(|request| Ok((request, http.new_response_outparam(tx)?)));
        let (request, out) = match resources {
            Ok(resources) => resources,
            Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{e:#}")),
        };
        let pre = self.pre.clone();
        let warnings = self.warnings.clone();
        let span = tracing::info_span!("module", module = %ctx.name);
        let task = tokio::spawn(
            async move {
                let _slot = slot;
                let run = async {
                    let proxy = pre.instantiate_async(&mut store).await?;
                    begin_call(&mut store);
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, request, out)
                        .await
                };
                match tokio::time::timeout_at(deadline, run).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => {
                        // The whole story (wasm backtrace) for the log; one line for status.
                        warn(&warnings, || tracing::warn!("HTTP request trapped: {e:?}"));
                        Some(match trapped_quietly::<()>(&e, store.data()) {
                            Outcome::Trapped(e) | Outcome::Refused(e) => e,
                            Outcome::Exited | Outcome::Done(()) => "the handler exited".into(),
                        })
                    }
                    Err(_) => None, // answered 504 already, or its body is cut off
                }
            }
            .instrument(span),
        );
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(response))) => {
                ctx.stats
                    .http
                    .count(Ending::Answered(response.status().as_u16()));
                response
            }
            Ok(Ok(Err(code))) => self.failed(format!("the handler answered an error: {code:?}")),
            Ok(Err(_)) => {
                // The outparam was dropped unset: the instance is gone; its task says why.
                let why = match task.await {
                    Ok(Some(error)) => error,
                    Ok(None) => "the handler returned without setting a response".into(),
                    Err(e) => e.to_string(),
                };
                self.failed(why)
            }
            Err(_) => {
                task.abort();
                ctx.stats.http.count(Ending::TimedOut);
                let error = format!("no answer within {timeout:?} (`http-timeout-ms`)");
                warn(&self.warnings, || tracing::warn!("HTTP request: {error}"));
                ctx.stats.call_refused(&format!("HTTP request: {error}"));
                plain(StatusCode::GATEWAY_TIMEOUT, error)
            }
        }
    }

    /// A 500 for a request the guest failed, counted as the module's error.
    fn failed(&self, error: String) -> Response<Body> {
        self.ctx.stats.http.count(Ending::Failed);
        self.ctx
            .stats
            .call_refused(&format!("HTTP request: {error}"));
        plain(StatusCode::INTERNAL_SERVER_ERROR, error)
    }
}

/// Logs with `log` unless the module's failures are being logged too often.
fn warn(warnings: &RateLimiter, log: impl FnOnce()) {
    warnings.gate(
        |n| tracing::warn!("{n} more failed HTTP requests were not logged"),
        log,
    );
}

/// A request in flight: its concurrency permit, and its place in the module's count. Moves
/// with the instance, so a response still streaming its body holds its slot.
struct Slot {
    ctx: Arc<ModuleCtx>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    fn new(ctx: Arc<ModuleCtx>, permit: OwnedSemaphorePermit) -> Self {
        ctx.stats.http.enter();
        Slot {
            ctx,
            _permit: permit,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.ctx.stats.http.leave();
    }
}

/// The host's own answer: `status` and one line of text.
fn plain(status: StatusCode, text: String) -> Response<Body> {
    let body = Full::new(Bytes::from(text + "\n"))
        .map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} })
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `response`, closing the connection after it: the request's body was not read to its end.
fn closing(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
