//! `wedge run`: the host process.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use wedge_host::Host;

use crate::systemd;

/// Arguments of `wedge run`.
#[derive(clap::Args)]
pub struct Args {
    /// The deployment file (`wedge.toml`). SIGHUP reads it again and applies the change.
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

/// Runs the deployment until SIGINT or SIGTERM; SIGHUP reloads the deployment file. Under a
/// service manager: `READY=1` once the modules run and the control socket answers, the
/// watchdog fed while the host is healthy, `RELOADING=1` … `READY=1` around a reload.
pub async fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    init_logs(args.log_format);
    raise_open_file_limit();
    // Every handler before the start: a manager stopping or reloading wedge while it starts
    // gets a clean shutdown or a reload once the modules are up, not the default action (for
    // SIGHUP, death).
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let host = Host::start(&args.deployment, data_dir).await?;
    tokio::select! {
        _ = host.ready() => systemd::ready(host.status()["modules"].as_array().map_or(0, Vec::len)),
        _ = int.recv() => return stop(&host).await,
        _ = term.recv() => return stop(&host).await,
    }
    let watchdog = systemd::watchdog(host.clone());
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => reload(&host, &args.deployment).await,
        }
    }
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    stop(&host).await
}

/// Raises the soft limit of open files to the hard one. systemd starts services with 1024 (and
/// a hard limit of 524288): enough for wedge itself, not for modules that serve hundreds of
/// connections. What one module can hold is bounded anyway, by wasmtime's 100 000 handles per
/// store.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current >= limit.maximum {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = ?limit.current, to = ?limit.maximum, "open-file limit raised")
        }
        Err(e) => tracing::warn!(
            "cannot raise the open-file limit from {:?}: {e}",
            limit.current
        ),
    }
}

async fn stop(host: &Host) -> anyhow::Result<()> {
    systemd::stopping();
    host.shutdown().await;
    Ok(())
}

/// Reads the deployment file again and applies it as a diff; a file that cannot be applied is
/// refused with an error in the log, and what runs stays.
async fn reload(host: &Host, deployment: &Path) {
    tracing::info!(deployment = %deployment.display(), "SIGHUP: reloading the deployment file");
    systemd::reloading();
    match host.reload(deployment).await {
        Ok(()) => tracing::info!("deployment file reloaded"),
        Err(e) => {
            tracing::error!("deployment file not reloaded, the running deployment stays: {e}")
        }
    }
    systemd::ready(host.status()["modules"].as_array().map_or(0, Vec::len));
}

/// Log records to stderr: for people (colours on a terminal), as JSON, or for the journal when
/// stderr is the journal's stream (see [`systemd::journal`]).
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("WEDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text if systemd::journal::stderr_is_journal() => logs
            .event_format(systemd::journal::JournalFormat::new())
            .init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
