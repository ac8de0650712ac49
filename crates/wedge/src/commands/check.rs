//! `wedge check`: validate a deployment without running it.

use std::path::PathBuf;

use wedge_host::config::Deployment;
use wedge_runtime::EngineCtx;

/// Arguments of `wedge check`.
#[derive(clap::Args)]
pub struct Args {
    /// The deployment file (`wedge.toml`).
    deployment: PathBuf,
}

/// Loads the deployment and compiles every module; prints one line per module.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let deployment = Deployment::load(&args.deployment)?;
    let engine = EngineCtx::new()?;
    for (name, module) in &deployment.modules {
        let engine = engine.clone();
        let path = module.path.clone();
        tokio::task::spawn_blocking(move || engine.compile_file(&path))
            .await?
            .map_err(|e| anyhow::anyhow!("module `{name}`: {e}"))?;
        out!("ok  {name}  {}", module.path.display());
    }
    out!(
        "{}: {} modules, {} routes",
        args.deployment.display(),
        deployment.modules.len(),
        deployment.routes.len()
    );
    Ok(())
}
