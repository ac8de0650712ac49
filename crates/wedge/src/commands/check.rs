//! `wedge check`: whether wedge can run here as configured, as `iotedge check` tells for IoT
//! Edge (the checks are `wedge_host::check`).

use std::path::{Path, PathBuf};

use wedge_host::check::{CheckOptions, Level, run as run_checks};

/// Arguments of `wedge check`.
#[derive(clap::Args)]
pub struct Args {
    /// The deployment file (`wedge.toml`).
    #[arg(default_value = "wedge.toml")]
    deployment: PathBuf,
    /// Print the report as JSON (`{"checks": [{"name", "level", "found", "remedy"}], "summary"}`).
    #[arg(long)]
    json: bool,
}

/// Prints one line per check and a summary; an error if any check is one (warnings are not).
pub async fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let report = run_checks(&CheckOptions::new(&args.deployment, data_dir)).await;
    let summary = report.summary();
    if args.json {
        let json = serde_json::json!({"checks": report.checks, "summary": summary});
        out!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for check in &report.checks {
            out!("{check}");
        }
        out!("{summary}");
    }
    if report.has_errors() {
        // On stderr too, for scripts that keep only that: which checks failed, and why.
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter(|c| c.level == Level::Error)
            .map(|c| format!("{}: {}", c.name, c.found))
            .collect();
        anyhow::bail!(
            "{} of {} checks failed: {}",
            summary.errors,
            report.checks.len(),
            failed.join("; ")
        );
    }
    Ok(())
}
