//! The server side of the control endpoint: the socket, its framing and its limits. What a
//! request means is the [`Handler`]'s business (the host's, in `requests.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{MAX_REQUEST, Request, Response, SOCKET};

/// Answers requests.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The answer to `request`.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// Binds the socket in `data_dir`. A socket left by a host that died is replaced; one that a
/// running host answers on is an error, so two hosts never share a data dir.
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
    Ok((listener, path))
}

/// Serves connections until the task is aborted.
pub(crate) async fn serve(listener: UnixListener, host: Arc<impl Handler>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let host = host.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, host.as_ref()).await {
                        tracing::debug!(error = %e, "control connection failed");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "control endpoint accept failed"),
        }
    }
}

async fn connection(stream: UnixStream, host: &impl Handler) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST as u64))
        .read_line(&mut line)
        .await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => host.handle(request).await,
        Err(e) => Response::Error(format!("malformed request: {e}")),
    };
    let mut out = serde_json::to_vec(&response)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}
