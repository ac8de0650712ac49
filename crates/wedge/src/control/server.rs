//! The server side of the control endpoint, run by `wedge run`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use wedge_hub::Cloud;
use wedge_hub::local::LocalHub;
use wedge_runtime::{Runtime, RuntimeError};
use wedge_store::Outbox;

use super::{MAX_REQUEST, Request, Response, SOCKET};
use crate::status;

/// How long a module gets to accept a configuration.
const MODULE_DEADLINE: Duration = Duration::from_secs(10);

/// What requests act on.
pub struct Host {
    /// The running modules.
    pub runtime: Arc<Runtime>,
    /// The `$upstream` outbox, for its counters.
    pub outbox: Outbox,
    /// The local hub (twin and telemetry), when it is the upstream.
    pub local: Option<Arc<LocalHub>>,
    /// The cloud connection (IoT Hub, MQTT), when it is the upstream.
    pub cloud: Option<Arc<dyn Cloud>>,
}

/// The answer for twin requests when the desired configuration lives in the cloud.
const TWIN_IN_CLOUD: &str = "the desired configuration lives in the cloud with this deployment: change it there (IoT Hub: `az iot hub device-twin update`; MQTT: the config topic)";

/// Binds the socket in `data_dir`. A socket left by a host that died is replaced; one that a
/// running host answers on is an error, so two hosts never share a data dir.
///
/// # Errors
/// Another host is running, or the socket cannot be bound.
pub async fn bind(data_dir: &Path) -> anyhow::Result<(UnixListener, PathBuf)> {
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

/// Serves connections until the task is dropped.
pub async fn serve(listener: UnixListener, host: Arc<Host>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let host = host.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, &host).await {
                        tracing::debug!(error = %e, "control connection failed");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "control endpoint accept failed"),
        }
    }
}

async fn connection(stream: UnixStream, host: &Host) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST as u64))
        .read_line(&mut line)
        .await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(request) => handle(request, host).await,
        Err(e) => Response::Error(format!("malformed request: {e}")),
    };
    let mut out = serde_json::to_vec(&response)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

async fn handle(request: Request, host: &Host) -> Response {
    match request {
        Request::Status => Response::Ok(status::document(
            &host.runtime,
            &host.outbox,
            host.cloud.as_deref(),
        )),
        Request::TwinGet => match &host.local {
            Some(local) => Response::Ok(local.twin_document()),
            None => Response::Error(TWIN_IN_CLOUD.into()),
        },
        Request::TwinSet { module, patch } => match &host.local {
            Some(local) => twin_set(&host.runtime, local, &module, &patch).await,
            None => Response::Error(TWIN_IN_CLOUD.into()),
        },
        Request::Call {
            module,
            method,
            payload,
        } => match host.runtime.invoke(&module, &method, &payload).await {
            Ok(result) => Response::Ok(json!(result)),
            Err(e) => Response::Error(e.to_string()),
        },
    }
}

/// Stores the desired patch and applies it. The local twin is changed only if the module
/// accepts the configuration: a rejected change is rolled back so that the next start does not
/// run with a configuration the module refused.
async fn twin_set(
    runtime: &Runtime,
    local: &LocalHub,
    module: &str,
    patch: &serde_json::Value,
) -> Response {
    if runtime.config(module).is_none() {
        return Response::Error(RuntimeError::UnknownModule(module.to_string()).to_string());
    }
    let (overlay, previous) = match local.patch_desired(module, patch) {
        Ok(change) => change,
        Err(e) => return Response::Error(e.to_string()),
    };
    match runtime.configure(module, &overlay, MODULE_DEADLINE).await {
        Ok(config) => Response::Ok(json!({ "module": module, "config": config })),
        Err(e) => {
            if let Err(restore) = local.restore_desired(module, previous) {
                tracing::error!(error = %restore, "cannot roll back the desired properties");
            }
            Response::Error(e.to_string())
        }
    }
}
