//! The reconciler: makes the runtime run the desired deployment.
//!
//! A desired deployment (the twin's `desired.wedge`, an MQTT config document's `wedge`, or
//! what `wedge deploy` sent to the local hub) is merged over the base from `wedge.toml` and
//! applied whole or not at all: first everything that can fail without touching the running
//! modules (the document's shape, every setting, every binary fetched, verified and compiled,
//! the routes, durable queues opened), then configuration changes (a module may refuse its
//! configuration: then those already changed are put back), and only then modules are added,
//! swapped (inbox and state kept) and removed. The outcome is reported as edgeAgent does
//! (`lastDesiredVersion`, `lastDesiredStatus`) and the applied deployment is kept in the store,
//! with the binaries, so that a restart without network runs it again.

mod applied;
mod report;
mod resolve;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use wedge_core::doc::{DeploymentDoc, DesiredStatusReport};
use wedge_hub::iothub::twin::config_ack_patch;
use wedge_runtime::spec::check_listens;
use wedge_runtime::{ModuleImage, Runtime, RuntimeError};
use wedge_store::OutboxLimits;

pub(crate) use applied::Applied;
pub(crate) use report::{Reporter, report_modules};
pub(crate) use resolve::Binaries;

/// How long a module gets to take a new configuration or binary.
const MODULE_DEADLINE: Duration = Duration::from_secs(10);

/// What is running, as the reconciler last left it.
struct Running {
    /// The deployment file's modules and routes, in the document's shape: what desired
    /// deployments are merged over. Changed only by [`Reconciler::rebase`].
    base: Value,
    doc: DeploymentDoc,
    /// Each module's source and the sha256 of the binary it resolved to.
    shas: BTreeMap<String, (String, String)>,
}

/// Applies desired deployments to the runtime, one at a time.
pub(crate) struct Reconciler {
    runtime: Arc<Runtime>,
    /// Limits of durable routes' queues.
    queue_limits: OutboxLimits,
    binaries: Binaries,
    applied: Applied,
    report: Reporter,
    running: tokio::sync::Mutex<Running>,
}

impl Reconciler {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        base: Value,
        queue_limits: OutboxLimits,
        binaries: Binaries,
        applied: Applied,
        report: Reporter,
    ) -> Self {
        Reconciler {
            runtime,
            queue_limits,
            binaries,
            applied,
            report,
            running: tokio::sync::Mutex::new(Running {
                base,
                doc: DeploymentDoc::default(),
                shas: BTreeMap::new(),
            }),
        }
    }

    /// What was last applied: its version and desired section (for a restart).
    pub(crate) fn applied(&self) -> &Applied {
        &self.applied
    }

    /// Applies `desired` (a desired deployment, `{}` for the base alone) at `version`, whole or
    /// not at all, and reports how it went. Waits for an apply in progress first.
    pub(crate) async fn apply(&self, version: Option<u64>, desired: &Value) -> DesiredStatusReport {
        let mut running = self.running.lock().await;
        let base = running.base.clone();
        let outcome = self.try_apply(&mut running, &base, version, desired).await;
        self.conclude(&running, outcome, version, desired).await
    }

    /// Makes `base` (a deployment file read again) what desired deployments are merged over,
    /// and applies the desired deployment last applied over it: the same diff as any other
    /// deployment, so modules whose effective entry did not change keep running untouched.
    /// Refused, the old base stays, and so does everything that runs; nothing is reported
    /// then, since what the upstream asked for still runs as it was.
    pub(crate) async fn rebase(&self, base: Value) -> DesiredStatusReport {
        let mut running = self.running.lock().await;
        let (version, desired) = self.applied.desired();
        match self.try_apply(&mut running, &base, version, &desired).await {
            Ok(()) => {
                running.base = base;
                self.conclude(&running, Ok(()), version, &desired).await
            }
            Err(Refusal { code, description }) => DesiredStatusReport { code, description },
        }
    }

    /// Logs, keeps and reports the outcome of an apply.
    async fn conclude(
        &self,
        running: &Running,
        outcome: Result<(), Refusal>,
        version: Option<u64>,
        desired: &Value,
    ) -> DesiredStatusReport {
        let status = match &outcome {
            Ok(()) => DesiredStatusReport::ok(),
            Err(Refusal { code, description }) => DesiredStatusReport {
                code: *code,
                description: description.clone(),
            },
        };
        match &outcome {
            Ok(()) => {
                tracing::info!(
                    ?version,
                    modules = running.doc.modules.len(),
                    "deployment applied"
                );
                self.applied
                    .save(version, desired, &running.shas, &self.binaries.blobs)
                    .await;
            }
            Err(refusal) => {
                tracing::warn!(
                    ?version,
                    code = refusal.code,
                    "deployment refused: {}",
                    refusal.description
                );
            }
        }
        let mut patch = json!({ "wedge": { "lastDesiredStatus": status } });
        if let Some(version) = version {
            patch["wedge"]["lastDesiredVersion"] = json!(version);
        }
        (self.report)(patch);
        status
    }

    async fn try_apply(
        &self,
        running: &mut Running,
        base: &Value,
        version: Option<u64>,
        desired: &Value,
    ) -> Result<(), Refusal> {
        let want = DeploymentDoc::effective(base, desired).map_err(Refusal::invalid)?;
        let diff = want.diff(&running.doc);

        // 1. Everything that can fail, with nothing changed yet.
        let mut specs = BTreeMap::new();
        for (name, module) in &want.modules {
            specs.insert(
                name.clone(),
                resolve::module_spec(name, module).map_err(Refusal::bad)?,
            );
        }
        check_listens(specs.iter().map(|(name, spec)| (name.as_str(), spec)))
            .map_err(|e| Refusal::bad(e.to_string()))?;
        let mut images: BTreeMap<String, ModuleImage> = BTreeMap::new();
        for name in diff.added.iter().chain(&diff.binary_changed) {
            let known = self.applied.sha256(&want.modules[name].source);
            let image = self
                .binaries
                .image(name, &want.modules[name], known.as_deref())
                .await
                .map_err(Refusal::bad)?;
            images.insert(name.clone(), image);
        }
        let routes = resolve::routes(&want);

        // 2. Configuration of modules that keep their instance; refused: put back.
        let restarted: BTreeSet<&String> = diff
            .binary_changed
            .iter()
            .chain(&diff.settings_changed)
            .collect();
        let mut configured = Vec::new();
        for name in diff
            .config_changed
            .iter()
            .filter(|n| !restarted.contains(n))
        {
            let config = &want.modules[name].config;
            match self.runtime.configure(name, config, MODULE_DEADLINE).await {
                Ok(_) => configured.push(name),
                Err(e) => {
                    self.put_back(&configured, &running.doc).await;
                    let code = match e {
                        RuntimeError::Rejected { .. } => 400,
                        _ => 500,
                    };
                    self.ack_config(name, version, desired, code, Some(&e.to_string()));
                    return Err(Refusal {
                        code,
                        description: format!("modules.{name}.config: {e}"),
                    });
                }
            }
        }

        // 3. The routes (opening new durable queues may fail: then put the configuration back).
        if let Err(e) = self.runtime.set_routes(&routes, self.queue_limits) {
            self.put_back(&configured, &running.doc).await;
            return Err(Refusal {
                code: 500,
                description: e.to_string(),
            });
        }

        // 4. Modules: nothing below can be refused.
        for name in &diff.removed {
            if let Err(e) = self.runtime.remove_module(name).await {
                tracing::warn!(module = %name, "cannot remove: {e}");
            }
            running.shas.remove(name);
        }
        for name in &diff.added {
            let image = images.remove(name).expect("resolved above");
            let source = want.modules[name].source.clone();
            let resolved = (source, image.sha256().to_string());
            running.shas.insert(name.clone(), resolved);
            let config = want.modules[name].config.clone();
            if let Err(e) = self
                .runtime
                .add_module(name, specs[name].clone(), image, config)
            {
                tracing::error!(module = %name, "cannot add: {e}");
            }
        }
        for name in restarted {
            let image = images.remove(name);
            if let Some(image) = &image {
                let source = want.modules[name].source.clone();
                let resolved = (source, image.sha256().to_string());
                running.shas.insert(name.clone(), resolved);
            }
            let config = want.modules[name].config.clone();
            let spec = specs[name].clone();
            if let Err(e) = self
                .runtime
                .update_module(name, spec, image, config, MODULE_DEADLINE)
                .await
            {
                tracing::error!(module = %name, "cannot update: {e}");
            }
        }
        // Durable routes to modules added or swapped feed their new inboxes.
        if let Err(e) = self.runtime.set_routes(&routes, self.queue_limits) {
            tracing::error!("cannot attach durable routes: {e}");
        }
        for name in diff.config_changed.iter().chain(&diff.added) {
            self.ack_config(name, version, desired, 200, None);
        }
        running.doc = want;
        Ok(())
    }

    /// Gives `modules` back the configuration they ran with in `running`.
    async fn put_back(&self, modules: &[&String], running: &DeploymentDoc) {
        for name in modules {
            let previous = &running.modules[*name].config;
            if let Err(e) = self
                .runtime
                .configure(name, previous, MODULE_DEADLINE)
                .await
            {
                tracing::error!(module = %name, "cannot put the configuration back: {e}");
            }
        }
    }

    /// Acknowledges a module's desired `config`, where the desired section has one, in the IoT
    /// Plug and Play style at `reported.wedge.modules.<name>.config`.
    fn ack_config(
        &self,
        name: &str,
        version: Option<u64>,
        desired: &Value,
        code: u16,
        description: Option<&str>,
    ) {
        let Some(config) = desired["modules"][name].get("config") else {
            return;
        };
        let ack = config_ack_patch(
            name,
            config.clone(),
            code,
            version.unwrap_or(0),
            description,
        );
        (self.report)(ack);
    }
}

/// Why a deployment was not applied.
struct Refusal {
    code: u16,
    description: String,
}

impl Refusal {
    fn invalid(e: wedge_core::doc::DocError) -> Self {
        Refusal {
            code: 400,
            description: e.to_string(),
        }
    }

    fn bad(description: String) -> Self {
        Refusal {
            code: 400,
            description,
        }
    }
}
