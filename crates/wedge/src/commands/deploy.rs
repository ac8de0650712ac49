//! `wedge deploy`: apply a deployment document to the running host's local hub.

use std::path::{Path, PathBuf};

use anyhow::Context;
use wedge_host::control::Request;

use crate::client;

/// Arguments of `wedge deploy`.
#[derive(clap::Args)]
pub struct Args {
    /// A JSON deployment document: the shape of the twin's `desired.wedge` (`{"modules": …,
    /// "routes": …}`), merged into the current one (`null` removes a module or route).
    file: PathBuf,
}

/// Sends the document, waits until the host has applied it, and prints its answer. Exits
/// non-zero with the host's reason when the deployment is refused (nothing changed then).
pub async fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let deployment: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not JSON", args.file.display()))?;
    let answer = client::call(data_dir, &Request::Deploy { deployment })
        .await
        .context("deployment refused")?;
    out!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
