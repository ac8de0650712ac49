//! The server side of the control endpoint: the socket, its framing and its limits. What a
//! request means is the [`Handler`]'s business (the host's, in `requests.rs`).

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use wedge_core::files;

use super::{MAX_REQUEST, Request, Response, SOCKET};

/// Answers requests.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The answer to `request`.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// Most connections served at once; more are answered "busy" and closed.
const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send its request: a local client sends it at once, so an idle
/// connection only holds a slot.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pauses after a failed `accept` (out of file descriptors): doubled up to the cap, so that a
/// connection left in the backlog does not make the loop spin.
const ACCEPT_BACKOFF_START: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_CAP: Duration = Duration::from_secs(1);
/// At most one log line about failing accepts per this period.
const ACCEPT_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Binds the socket in `data_dir`, readable and writable by the owner only (whatever the
/// umask). A socket left by a host that died is replaced; one that a running host answers on
/// is an error, so two hosts never share a data dir.
///
/// # Errors
/// Another host is running, or the socket cannot be bound.
pub(crate) async fn bind(data_dir: &Path) -> anyhow::Result<(UnixListener, PathBuf)> {
    let path = data_dir.join(SOCKET);
    if UnixStream::connect(&path).await.is_ok() {
        bail!(
            "another wedge is already running with data dir {}",
            data_dir.display()
        );
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    // The data dir is private already, so nobody can connect before this.
    std::fs::set_permissions(&path, Permissions::from_mode(files::PRIVATE_FILE))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok((listener, path))
}

/// Serves connections until the task is aborted.
pub(crate) async fn serve(listener: UnixListener, host: Arc<impl Handler>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = ACCEPT_BACKOFF_START;
    let mut failures = Failures::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                failures.log(&e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_CAP);
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF_START;
        let slot = slots.clone().try_acquire_owned();
        let host = host.clone();
        tokio::spawn(async move {
            let result = match slot {
                Ok(_slot) => connection(stream, host.as_ref()).await,
                Err(_) => {
                    let busy = format!("busy: {MAX_CONNECTIONS} control connections are open");
                    answer(stream.into_split().1, &Response::Error(busy)).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "control connection failed");
            }
        });
    }
}

/// Failing accepts, logged at most once a period with how many there were.
#[derive(Default)]
struct Failures {
    logged: Option<Instant>,
    unlogged: u64,
}

impl Failures {
    fn log(&mut self, error: &std::io::Error) {
        if self
            .logged
            .is_some_and(|at| at.elapsed() < ACCEPT_LOG_PERIOD)
        {
            self.unlogged += 1;
            return;
        }
        let suppressed = std::mem::take(&mut self.unlogged);
        tracing::warn!(%error, suppressed, "control endpoint cannot accept connections");
        self.logged = Some(Instant::now());
    }
}

async fn connection(stream: UnixStream, host: &impl Handler) -> anyhow::Result<()> {
    let (read, write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64 + 1));
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line)).await;
    let response = match read {
        Err(_) => Response::Error(format!(
            "no request within {REQUEST_TIMEOUT:?}: send one JSON line"
        )),
        Ok(read) => {
            read?;
            match parse(&line) {
                Ok(request) => host.handle(request).await,
                Err(refusal) => Response::Error(refusal),
            }
        }
    };
    answer(write, &response).await
}

/// The request in `line`, or why it is refused.
fn parse(line: &[u8]) -> Result<Request, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {} KiB", MAX_REQUEST / 1024));
    }
    let text = std::str::from_utf8(line)
        .map_err(|e| format!("request is not UTF-8 (at byte {})", e.valid_up_to()))?;
    serde_json::from_str(text).map_err(|e| format!("malformed request: {e}"))
}

async fn answer(mut write: OwnedWriteHalf, response: &Response) -> anyhow::Result<()> {
    let mut out = serde_json::to_vec(response)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_problem() {
        let long = vec![b' '; MAX_REQUEST + 1];
        assert_eq!(parse(&long).unwrap_err(), "request longer than 64 KiB");
        assert!(
            parse(b"{\"op\": \"st\xffatus\"}\n")
                .unwrap_err()
                .contains("not UTF-8 (at byte 10)")
        );
        assert!(
            parse(b"{\"op\": \"status\"")
                .unwrap_err()
                .starts_with("malformed request")
        );
        assert_eq!(parse(b"{\"op\": \"status\"}\n"), Ok(Request::Status));
    }
}
