//! `wedge run`: the host process.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tracing_subscriber::EnvFilter;
use wedge_host::Host;

/// Arguments of `wedge run`.
#[derive(clap::Args)]
pub struct Args {
    /// The deployment file (`wedge.toml`).
    deployment: PathBuf,
    /// How log records are written to stderr: `text` for people, `json` (one object per
    /// line) for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// See [`Args::log_format`].
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Runs the deployment until SIGINT or SIGTERM.
pub async fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("WEDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }

    let shutdown = shutdown_signal()?;
    let host = Host::start(&args.deployment, data_dir).await?;
    shutdown.await;
    host.shutdown().await;
    Ok(())
}

/// Resolves at the first SIGINT or SIGTERM. The handlers are installed when this is called,
/// not when it is awaited: call it first, so that a service manager stopping wedge while it
/// starts still gets a clean shutdown once the modules are up.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
