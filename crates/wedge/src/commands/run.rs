//! `wedge run`: the host process.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use wedge_hub::iothub::connection_string::ConnectionString;
use wedge_hub::iothub::session::{IotHub, IotHubOptions};
use wedge_hub::local::LocalHub;
use wedge_runtime::deployment::UpstreamSpec;
use wedge_runtime::{Deployment, EngineCtx, Runtime};

use crate::cloud;
use crate::control::server::{self, Host};

/// Arguments of `wedge run`.
#[derive(clap::Args)]
pub struct Args {
    /// The deployment file (`wedge.toml`).
    deployment: PathBuf,
}

/// Runs the deployment on the local hub until SIGINT or SIGTERM.
pub async fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("WEDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let deployment = Deployment::load(&args.deployment)?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let (listener, socket) = server::bind(data_dir).await?;
    let engine = EngineCtx::new()?;
    let host = match &deployment.upstream {
        UpstreamSpec::Local => {
            let local = Arc::new(LocalHub::open(data_dir)?);
            let runtime = Arc::new(Runtime::new(engine, local.clone(), data_dir.to_path_buf()));
            runtime.start(&deployment, &local.desired_modules()).await?;
            Host {
                runtime,
                local: Some(local),
                iothub: None,
            }
        }
        UpstreamSpec::IotHub {
            connection_string,
            ca_file,
            port,
        } => {
            let text = connection_string
                .read()
                .map_err(|e| anyhow::anyhow!("upstream connection string: {e}"))?;
            let connection =
                ConnectionString::parse(&text).context("upstream connection string")?;
            let mut options = IotHubOptions::new(connection);
            options.ca_file = ca_file.clone();
            options.port = port.unwrap_or(options.port);
            let (hub, events) = IotHub::start(options)?;
            let hub = Arc::new(hub);
            let runtime = Arc::new(Runtime::new(engine, hub.clone(), data_dir.to_path_buf()));
            runtime.start(&deployment, &BTreeMap::new()).await?;
            tokio::spawn(cloud::serve(events, runtime.clone(), hub.clone()));
            Host {
                runtime,
                local: None,
                iothub: Some(hub),
            }
        }
    };
    let runtime = host.runtime.clone();
    tracing::info!(
        deployment = %args.deployment.display(),
        data_dir = %data_dir.display(),
        modules = deployment.modules.len(),
        upstream = if host.iothub.is_some() { "iothub" } else { "local" },
        "wedge is running"
    );

    let control = tokio::spawn(server::serve(listener, Arc::new(host)));
    shutdown_signal().await?;
    tracing::info!("shutting down");
    control.abort();
    runtime.shutdown().await;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
