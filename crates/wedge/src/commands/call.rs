//! `wedge call`: a direct method on a module of the running host.

use std::path::Path;

use wedge_host::control::Request;

use crate::client;

/// Arguments of `wedge call`.
#[derive(clap::Args)]
pub struct Args {
    /// The module.
    module: String,
    /// The method name.
    method: String,
    /// JSON payload.
    #[arg(default_value = "null")]
    payload: String,
}

/// Prints the module's answer: `{"status": …, "payload": …}`.
pub async fn run(args: Args, data_dir: &Path) -> anyhow::Result<()> {
    let request = Request::Call {
        module: args.module,
        method: args.method,
        payload: args.payload,
    };
    let answer = client::call(data_dir, &request).await?;
    out!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}
