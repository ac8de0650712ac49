//! The host: a store, a runtime, an upstream and the control socket, started together on one
//! data dir and stopped together.

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use wedge_core::Upstream;
use wedge_hub::local::LocalHub;
use wedge_hub::{Cloud, Drain};
use wedge_runtime::{EngineCtx, MethodResult, Runtime, RuntimeError};

use crate::config::{Deployment, SourcesSpec};
use wedge_source::{FetchOptions, RegistryAuth};
use wedge_store::{Outbox, Store};

use crate::base::base_document;
use crate::cloud;
use crate::control::server;
use crate::data_version::DataVersion;
use crate::metrics;
use crate::reconcile::{Applied, Binaries, Reconciler, Reporter, report_modules};
use crate::status;
use crate::upstreams;

/// The answer for twin requests when the desired deployment lives in the cloud.
pub(crate) const TWIN_IN_CLOUD: &str = "the desired deployment lives in the cloud with this upstream: change it there (IoT Hub: `az iot hub device-twin update`; MQTT: the config topic)";

/// A running host.
pub struct Host {
    /// The running modules.
    pub(crate) runtime: Arc<Runtime>,
    /// What applies desired deployments to them.
    pub(crate) reconciler: Arc<Reconciler>,
    /// The `$upstream` outbox, for its counters.
    pub(crate) outbox: Outbox,
    /// The local hub (twin and telemetry), when it is the upstream.
    pub(crate) local: Option<Arc<LocalHub>>,
    /// The cloud connection (IoT Hub, MQTT), when it is the upstream.
    pub(crate) cloud: Option<Arc<dyn Cloud>>,
    /// The store, whose writer thread the health check asks.
    pub(crate) store: Store,
    /// The deployment file as last read (at the start or by [`Host::reload`]).
    pub(crate) deployment: tokio::sync::Mutex<Deployment>,
    /// The host's own tasks, named for the health check: each runs until shutdown.
    tasks: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
    socket: PathBuf,
}

impl Host {
    /// Starts the deployment at `deployment` on `data_dir`: modules run with the configuration
    /// last applied (kept in the store, so this works offline), the upstream connects in the
    /// background, and the control socket `DATA_DIR/wedge.sock` answers.
    ///
    /// # Errors
    /// The deployment is invalid, the data dir is in use or unusable, a module does not
    /// compile, or the upstream cannot be set up.
    pub async fn start(deployment: &Path, data_dir: &Path) -> anyhow::Result<Arc<Host>> {
        let started = Instant::now();
        let deployment = Deployment::load(deployment)?;
        // Before anything touches the data dir: one a newer wedge wrote is left as it is.
        let data_version = DataVersion::check(data_dir)?;
        // The store first: it refuses a data dir another host has open, or one it cannot use,
        // before anything else touches the directory.
        wedge_core::files::private_dir(data_dir)
            .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
        let store = Store::open(data_dir)?;
        let (listener, socket) = server::bind(data_dir).await?;
        // Bound before any module starts, so that a taken address stops the start cleanly.
        let metrics = match &deployment.metrics {
            Some(spec) => Some((metrics::bind(spec.listen).await?, spec.offline_grace)),
            None => None,
        };
        let engine = EngineCtx::new()?.with_cache(data_dir.join("compiled"));
        let outbox = store.outbox(deployment.outbox);
        let drain = Drain {
            outbox: outbox.clone(),
            id_prefix: store_id(&store).await?,
            meta: store.meta(),
        };
        let mut tasks = Vec::new();
        let (local, cloud, upstream): (_, _, Arc<dyn Upstream>) =
            match upstreams::start_cloud(&deployment.upstream, drain.clone(), data_dir)? {
                None => {
                    let local = Arc::new(LocalHub::open(data_dir)?);
                    tasks.push((
                        "the local hub's telemetry writer",
                        local.clone().forward(drain),
                    ));
                    (Some(local.clone()), None, local)
                }
                Some((cloud, events)) => (None, Some((cloud.clone(), events)), cloud),
            };
        let runtime = Arc::new(Runtime::new(
            engine.clone(),
            upstream,
            store.clone(),
            outbox.clone(),
            data_dir.to_path_buf(),
        ));
        let report: Reporter = match (&local, &cloud) {
            (Some(local), _) => {
                let local = local.clone();
                Arc::new(move |patch| {
                    if let Err(e) = local.report_raw(&patch) {
                        tracing::error!(error = %e, "cannot write reported properties");
                    }
                })
            }
            (None, Some((cloud, _))) => {
                let cloud = cloud.clone();
                Arc::new(move |patch| cloud.report_raw(patch))
            }
            (None, None) => unreachable!("an upstream is local or a cloud"),
        };
        let binaries = Binaries {
            engine,
            blobs: store.blobs(),
            fetch: fetch_options(&deployment.sources)?,
        };
        let reconciler = Arc::new(Reconciler::new(
            runtime.clone(),
            base_document(&deployment),
            deployment.outbox,
            binaries,
            Applied::load(store.meta())?,
            report.clone(),
        ));
        // What runs first: the local twin's desired deployment, or what was last applied from
        // the cloud (so this works offline); the cloud's desired deployment follows when it is
        // reachable. If that cannot be applied (a binary gone from the store), the file alone.
        let (version, desired) = match &local {
            Some(local) => {
                let (applied, applied_desired) = reconciler.applied().desired();
                let (version, desired) =
                    local.continue_after(applied.unwrap_or(0), &applied_desired)?;
                (Some(version), desired)
            }
            None => reconciler.applied().desired(),
        };
        let status = reconciler.apply(version, &desired).await;
        if status.code != 200 {
            if desired == json!({}) {
                bail!("{}", status.description);
            }
            tracing::error!(
                "the last deployment cannot be applied ({}); starting the deployment file's modules",
                status.description
            );
            let fallback = reconciler.apply(None, &json!({})).await;
            if fallback.code != 200 {
                bail!("{}", fallback.description);
            }
            // What the cloud sees is the refusal of what it asked for, not the fallback.
            report(json!({ "wedge": { "lastDesiredStatus": status } }));
        }
        tasks.push((
            "the module status reporter",
            tokio::spawn(report_modules(runtime.clone(), report.clone())),
        ));
        let cloud = match cloud {
            None => None,
            Some((cloud, events)) => {
                tasks.push((
                    "the cloud's event handler",
                    tokio::spawn(cloud::serve(
                        events,
                        runtime.clone(),
                        reconciler.clone(),
                        cloud.clone(),
                        outbox.clone(),
                    )),
                ));
                Some(cloud)
            }
        };
        if runtime.status().is_empty() {
            let until = match &cloud {
                Some(_) => "the cloud sends a deployment",
                None => "one is deployed (`wedge deploy`, `wedge twin set`)",
            };
            tracing::warn!("no modules run: the deployment has none; nothing runs until {until}");
        }
        // Everything started: only now is the data dir this wedge's (a failed start after an
        // upgrade leaves it to the wedge that wrote it).
        data_version.commit().with_context(|| {
            format!(
                "cannot record the data dir's version in {}",
                data_dir.display()
            )
        })?;
        tracing::info!(
            deployment = %deployment.source.display(),
            data_dir = %data_dir.display(),
            modules = runtime.status().len(),
            upstream = cloud.as_ref().map_or("local", |c| c.kind()),
            "wedge is running"
        );
        let host = Arc::new(Host {
            runtime,
            reconciler,
            outbox,
            local,
            cloud,
            store,
            deployment: tokio::sync::Mutex::new(deployment),
            tasks: Mutex::new(tasks),
            socket,
        });
        // The server holds the host until `shutdown` aborts it.
        let server = tokio::spawn(server::serve(listener, host.clone()));
        host.tasks().push(("the control socket's server", server));
        if let Some((listener, offline_grace)) = metrics {
            let sources = metrics::Sources {
                runtime: host.runtime.clone(),
                outbox: host.outbox.clone(),
                cloud: host.cloud.clone(),
                started,
                offline_grace,
            };
            tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
            let server = tokio::spawn(metrics::serve(listener, Arc::new(sources)));
            host.tasks().push(("the metrics server", server));
        }
        Ok(host)
    }

    /// The status document: modules, upstream link, outbox (what `wedge status` shows).
    pub fn status(&self) -> Value {
        status::document(&self.runtime, &self.outbox, self.cloud.as_deref())
    }

    /// Calls `on-method` of `module`; a module that does not answer in its
    /// `method-timeout-ms` gets 504.
    ///
    /// # Errors
    /// No such module.
    pub async fn invoke(
        &self,
        module: &str,
        method: &str,
        payload: &str,
    ) -> Result<MethodResult, RuntimeError> {
        self.runtime.invoke(module, method, payload).await
    }

    /// Merges `patch` into the local twin's desired deployment and applies it; the answer
    /// carries the desired version and its status. The twin keeps the change only if it was
    /// applied: a refused one is rolled back, so that the next start never runs what was
    /// refused.
    ///
    /// # Errors
    /// Why it was refused (nothing changed then), or that the upstream is a cloud, whose
    /// twin is changed there.
    pub async fn deploy(&self, patch: &Value) -> Result<Value, String> {
        let Some(local) = &self.local else {
            return Err(TWIN_IN_CLOUD.into());
        };
        if !patch.is_object() {
            return Err("a deployment is a JSON object (`{\"modules\": …, \"routes\": …}`)".into());
        }
        let (desired, version, previous) = local.patch_desired(patch).map_err(|e| e.to_string())?;
        let status = self.reconciler.apply(Some(version), &desired).await;
        if status.code == 200 {
            return Ok(json!({ "version": version, "status": status }));
        }
        if let Err(restore) = local.restore_desired(previous) {
            tracing::error!(error = %restore, "cannot roll back the desired deployment");
        }
        Err(status.description)
    }

    pub(crate) fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, JoinHandle<()>)>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops serving, stops every module and waits for them; removes the control socket.
    pub async fn shutdown(&self) {
        tracing::info!("shutting down");
        for (_, task) in std::mem::take(&mut *self.tasks()) {
            task.abort();
        }
        self.runtime.shutdown().await;
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// How binaries are fetched: the deployment file's limits and registry credentials (read
/// here; never logged, never seen by modules).
fn fetch_options(sources: &SourcesSpec) -> anyhow::Result<FetchOptions> {
    use crate::config::SecretSource;
    let registry_auth = match &sources.registry_auth {
        None => RegistryAuth::anonymous(),
        Some(SecretSource::File(path)) => RegistryAuth::from_docker_config_file(path)?,
        Some(SecretSource::Env(var)) => RegistryAuth::from_env(var)?,
        Some(SecretSource::Inline(_)) => unreachable!("the file names a file or a variable"),
    };
    Ok(FetchOptions {
        max_bytes: sources.max_bytes,
        timeout: sources.timeout,
        registry_auth,
        ..FetchOptions::default()
    })
}

/// The data dir's identity, the prefix of message ids: made once, kept in the store.
async fn store_id(store: &Store) -> anyhow::Result<String> {
    const NAME: &str = "store-id";
    let meta = store.meta();
    if let Some(id) = meta.get(NAME)? {
        return String::from_utf8(id).context("the store id is not text");
    }
    let id = format!("{:016x}", RandomState::new().hash_one(SystemTime::now()));
    meta.set(NAME, id.clone().into_bytes()).await?;
    Ok(id)
}
