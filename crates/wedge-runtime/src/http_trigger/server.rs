//! The listener of one module's HTTP trigger: accepts connections and serves each with
//! hyper's HTTP/1, every request through the [`Handler`]. Connections are tasks of the accept
//! loop's own set, so stopping the server (aborting its task) closes them all.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::request::Handler;

/// Most connections one module keeps open; more are closed at once. Requests in flight are
/// limited apart from this (`http-concurrency`); this bounds idle keep-alive connections.
const MAX_CONNECTIONS: usize = 256;
/// How long a client has to send its request line and headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Buffer for a request head: hyper refuses a longer one.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Pause after a failed `accept` (out of file descriptors), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves connections on `listener` until the task is aborted.
pub(super) async fn serve(listener: TcpListener, handler: Arc<Handler>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if connections.len() < MAX_CONNECTIONS => {
                    connections.spawn(connection(stream, handler.clone()).in_current_span());
                }
                Ok(_) => tracing::debug!("HTTP trigger: too many connections, one closed"),
                Err(error) => {
                    tracing::debug!(%error, "HTTP trigger cannot accept a connection");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn connection(stream: TcpStream, handler: Arc<Handler>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(request).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "HTTP trigger connection ended");
    }
}
