//! `wedge`: runs WebAssembly edge modules and connects them to a hub.

/// `println!` that returns the error instead of panicking: `wedge status | head` closes the
/// pipe early, and that is not a crash (see `main`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod client;
mod commands;
mod data_dir;
mod systemd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Run WebAssembly edge modules on this device and connect them to a hub.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Where wedge keeps its state: local hub files, module data, the control socket.
    /// Default: $WEDGE_DATA_DIR, else /var/lib/wedge as root, else ~/.local/share/wedge.
    #[arg(long, global = true, env = "WEDGE_DATA_DIR")]
    data_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the modules of a deployment file until interrupted.
    Run(commands::run::Args),
    /// Check that wedge can run here: the deployment and its modules, the data dir, the
    /// upstream's credentials, DNS, TCP, TLS and the clock. Exits non-zero on an error.
    Check(commands::check::Args),
    /// Print telemetry received by the local hub, following new messages.
    Tail(commands::tail::Args),
    /// Read or change the local twin of the running host.
    #[command(subcommand)]
    Twin(commands::twin::Command),
    /// Show the modules of the running host.
    Status(commands::status::Args),
    /// Invoke a direct method on a module of the running host.
    Call(commands::call::Args),
    /// Show a module's recent log records (`--since 10m`, `--tail 50`, `--level warn`,
    /// `--follow`).
    Logs(commands::logs::Args),
    /// Apply a deployment document (JSON, the twin's `desired.wedge` shape) to the running
    /// host's local hub and wait until it is applied or refused.
    Deploy(commands::deploy::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let data_dir = cli.data_dir.unwrap_or_else(data_dir::default_data_dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = runtime.map_err(anyhow::Error::from).and_then(|rt| {
        rt.block_on(async {
            match cli.command {
                Command::Run(args) => commands::run::run(args, &data_dir).await,
                Command::Check(args) => commands::check::run(args, &data_dir).await,
                Command::Tail(args) => commands::tail::run(args, &data_dir).await,
                Command::Twin(command) => commands::twin::run(command, &data_dir).await,
                Command::Status(args) => commands::status::run(args, &data_dir).await,
                Command::Call(args) => commands::call::run(args, &data_dir).await,
                Command::Logs(args) => commands::logs::run(args, &data_dir).await,
                Command::Deploy(args) => commands::deploy::run(args, &data_dir).await,
            }
        })
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`| head`): what it wanted, it got.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
