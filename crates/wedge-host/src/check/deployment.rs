//! The deployment file is valid and every module in it compiles and fits the world wedge
//! offers (what `wedge run` would refuse at start).

use std::path::Path;
use std::time::Duration;

use wedge_runtime::EngineCtx;

use super::{Blocked, Check, blocking, seconds};
use crate::config::Deployment;

/// The longest one module's compilation may take. Compiling is local work that cannot hang on
/// the network, but a large component (CPython is ~18 MB) takes seconds; this only stops a
/// machine that is thrashing from keeping `wedge check` for ever.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(300);

const NAME: &str = "deployment";

/// Reads and validates `path`: the deployment and its line, or no deployment and an error line
/// naming the file, line and field.
pub(super) fn load(path: &Path) -> (Option<Deployment>, Vec<Check>) {
    match Deployment::load(path) {
        Ok(deployment) => {
            let found = format!(
                "{}: valid, {} modules, {} routes, upstream {}",
                path.display(),
                deployment.modules.len(),
                deployment.routes.len(),
                upstream_kind(&deployment.upstream),
            );
            (Some(deployment), vec![Check::ok(NAME, found)])
        }
        Err(e) => (
            None,
            vec![Check::error(
                NAME,
                e.to_string(),
                "fix the deployment file at the place named (upstream and modules are not checked until it loads)",
            )],
        ),
    }
}

/// One line per module: it compiles, or why not.
pub(super) async fn compile(deployment: &Deployment) -> Vec<Check> {
    if deployment.modules.is_empty() {
        return Vec::new();
    }
    let engine = match EngineCtx::new() {
        Ok(engine) => engine,
        Err(e) => {
            return vec![Check::error(
                "modules",
                format!("the WebAssembly engine cannot start: {e}"),
                "report this as a bug, with the output of `wedge --version`",
            )];
        }
    };
    let mut checks = Vec::new();
    for (name, module) in &deployment.modules {
        let check_name = format!("module {name}");
        let engine = engine.clone();
        let path = module.path.clone();
        let (kind, http) = (module.spec.kind, module.spec.http.is_some());
        let outcome = blocking(COMPILE_TIMEOUT, move || {
            let image = engine.compile_file(&path)?;
            Ok::<_, wedge_runtime::EngineError>(
                image
                    .supports(kind, http)
                    .map_err(|e| format!("{}: {e}", path.display())),
            )
        })
        .await;
        checks.push(match outcome {
            Ok(Ok(Ok(()))) => Check::ok(check_name, format!("{} compiles", module.path.display())),
            Ok(Ok(Err(e))) => Check::error(
                check_name,
                e,
                "set `kind` to what the component is (see the error), or use another binary",
            ),
            Ok(Err(e)) => Check::error(
                check_name,
                e.to_string(),
                "build the module for wasm32-wasip2 against wedge's WIT world, or fix its path",
            ),
            Err(Blocked::TimedOut) => Check::error(
                check_name,
                format!(
                    "{} did not compile within {}",
                    module.path.display(),
                    seconds(COMPILE_TIMEOUT)
                ),
                "check that the machine is not out of memory or swapping",
            ),
            Err(Blocked::Failed(e)) => Check::error(
                check_name,
                format!("{}: {e}", module.path.display()),
                "report this as a bug",
            ),
        });
    }
    checks
}

fn upstream_kind(upstream: &crate::config::UpstreamSpec) -> &'static str {
    match upstream {
        crate::config::UpstreamSpec::Local => "local hub",
        crate::config::UpstreamSpec::IotHub { .. } => "iothub",
        crate::config::UpstreamSpec::Mqtt(_) => "mqtt",
    }
}
