//! `wedge run`: the host process.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use wedge_hub::local::LocalHub;
use wedge_runtime::{Deployment, EngineCtx, Runtime};

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
    let hub = Arc::new(LocalHub::open(data_dir)?);
    let engine = EngineCtx::new()?;
    let runtime = Arc::new(Runtime::new(engine, hub.clone(), data_dir.to_path_buf()));
    runtime.start(&deployment, &hub.desired_modules()).await?;
    tracing::info!(
        deployment = %args.deployment.display(),
        data_dir = %data_dir.display(),
        modules = deployment.modules.len(),
        "wedge is running on the local hub"
    );

    let control = tokio::spawn(server::serve(
        listener,
        Arc::new(Host {
            runtime: runtime.clone(),
            hub,
        }),
    ));
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
