//! The client side of the control endpoint, used by the CLI.

use std::path::Path;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use wedge_host::control::{Request, Response, SOCKET};

/// Sends `request` to the host running on `data_dir` and returns its result.
///
/// # Errors
/// No host is running there, the connection failed, or the host answered with an error.
pub async fn call(data_dir: &Path, request: &Request) -> anyhow::Result<serde_json::Value> {
    let path = data_dir.join(SOCKET);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "no wedge is running with data dir {} (cannot connect to {})",
            data_dir.display(),
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    match serde_json::from_str(&answer).context("malformed answer from the running wedge")? {
        Response::Ok(value) => Ok(value),
        Response::Error(message) => bail!(message),
    }
}
