//! The HTTP trigger: the host listens on a module's `http-listen` address and serves each
//! request with a fresh instance of the module's component, through its
//! `wasi:http/incoming-handler` export (as `wasmtime serve` and Spin do: an instance from the
//! pre-instantiated component costs microseconds, and no request sees another's memory). Each
//! instance has the module's usual store, so `telemetry.send`, state and logging work from a
//! handler. The host enforces the limits before and around the guest: `http-concurrency`
//! requests in flight (more get 503 at once), `http-body-kb` (413, the guest not called),
//! `http-timeout-ms` (504, the instance dropped); a trap is a 500 and the next request gets a
//! new instance.
//!
//! The server lives beside the module's supervisor, not inside it (`Runtime` starts it with
//! the module and stops or restarts it on stop, update and removal): requests do not wait
//! for the module's one-at-a-time calls, nor stop when its main instance restarts.

mod body;
mod request;
mod server;
mod stats;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tracing::Instrument;
use wedge_core::DesiredStatus;

use crate::ModuleImage;
use crate::module::ModuleCtx;
use crate::spec::HttpTrigger;

pub use stats::HttpCounts;
pub(crate) use stats::HttpStats;

/// Room for connections waiting to be accepted.
const BACKLOG: u32 = 1024;

/// A running HTTP trigger. Stopping it closes the listener and its connections.
pub(crate) struct HttpServer {
    task: JoinHandle<()>,
    /// What it serves: the address and limits, and the binary.
    trigger: HttpTrigger,
    sha256: String,
}

impl HttpServer {
    /// Starts serving `ctx`'s module, running `image`, if its spec has an `http-listen`
    /// address, it is to run and the component serves HTTP (the deployment was refused
    /// otherwise). An address that cannot be bound is the module's error (in its status),
    /// not the host's: `None`, and the next start tries again.
    pub(crate) fn start(ctx: &Arc<ModuleCtx>, image: &ModuleImage) -> Option<HttpServer> {
        let spec = ctx.spec();
        let trigger = spec.http.clone()?;
        let pre = image.exports.http.clone()?;
        if spec.status == DesiredStatus::Stopped {
            ctx.stats.http.set_error(None);
            return None;
        }
        let listen = trigger.listen;
        let listener = match bind(listen) {
            Ok(listener) => listener,
            Err(e) => {
                let error = format!("http-listen {listen}: cannot listen: {}", why(&e));
                tracing::error!(module = %ctx.name, "{error}");
                ctx.stats.http.set_error(Some(error));
                return None;
            }
        };
        ctx.stats.http.set_error(None);
        tracing::info!(module = %ctx.name, %listen, "serving HTTP");
        let handler = Arc::new(request::Handler::new(ctx.clone(), pre, trigger.clone()));
        let span = tracing::info_span!("module", module = %ctx.name);
        Some(HttpServer {
            task: tokio::spawn(server::serve(listener, handler).instrument(span)),
            trigger,
            sha256: image.sha256().to_string(),
        })
    }

    /// Whether it serves what `ctx`'s module, running `image`, is to serve now: then an update
    /// that changed other settings (`memory-mb`, …, which each request reads afresh) keeps
    /// it, and its clients' connections.
    pub(crate) fn serves(&self, ctx: &ModuleCtx, image: &ModuleImage) -> bool {
        let spec = ctx.spec();
        spec.status != DesiredStatus::Stopped
            && spec.http.as_ref() == Some(&self.trigger)
            && image.sha256() == self.sha256
    }

    /// Stops listening and closes its connections; returns once the address is free again.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A listener on `address`. `SO_REUSEADDR`, so that a restarted trigger gets its address back
/// while the last one's closed connections linger in `TIME_WAIT`; on Linux that still refuses
/// an address another socket listens on.
fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// What a person should read for a bind error.
fn why(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            format!("the address is in use (another module or program listens on it): {error}")
        }
        std::io::ErrorKind::PermissionDenied => format!(
            "not permitted (a port below 1024 needs the host to have CAP_NET_BIND_SERVICE): \
             {error}"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            format!("the address is not one of this host's: {error}")
        }
        _ => error.to_string(),
    }
}
