//! The runtime: starts the modules of a deployment, routes between them, and applies
//! configuration changes to running modules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wedge_store::{Outbox, Store};

use crate::deployment::{C2D_OUTPUT, Deployment, Target, UPSTREAM};
use crate::durable_route;
use crate::engine::{EngineCtx, EngineError};
use crate::json::merged;
use crate::message::{Message, SendError};
use crate::module::{Control, MethodResult, ModuleCtx, ModuleStatus, supervise};
use crate::router::Router;
use crate::upstream::Upstream;

/// Room for configuration and method requests waiting for one module.
const CONTROL_QUEUE: usize = 16;

/// Errors of the runtime's operations.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A module could not be compiled; nothing was started.
    #[error("module `{module}`: {source}")]
    Compile {
        /// The module.
        module: String,
        /// Why.
        source: EngineError,
    },
    /// No module of that name is running.
    #[error("no module named `{0}`")]
    UnknownModule(String),
    /// The module rejected its new configuration; the previous one stays active.
    #[error("module `{module}` rejected the configuration: {reason}")]
    Rejected {
        /// The module.
        module: String,
        /// What the module said.
        reason: String,
    },
    /// The module did not answer in time.
    #[error("module `{0}` did not answer within {1:?}")]
    Timeout(String, Duration),
    /// A durable route's queue cannot be opened; nothing was started.
    #[error("route `{route}`: {source}")]
    Queue {
        /// The route.
        route: String,
        /// Why.
        source: wedge_store::StoreError,
    },
}

/// The running modules of the host.
pub struct Runtime {
    engine: EngineCtx,
    store: Store,
    router: Arc<Router>,
    upstream: Arc<dyn Upstream>,
    data_dir: PathBuf,
    modules: Mutex<BTreeMap<String, ModuleHandle>>,
    /// The forwarders of durable routes.
    forwarders: Mutex<Vec<JoinHandle<()>>>,
}

struct ModuleHandle {
    ctx: Arc<ModuleCtx>,
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
}

impl Runtime {
    /// A runtime with no modules. `$upstream` messages go to `outbox` (which `upstream` drains);
    /// module state lives in `store`; module data dirs are created under `data_dir/modules/`.
    pub fn new(
        engine: EngineCtx,
        upstream: Arc<dyn Upstream>,
        store: Store,
        outbox: Outbox,
        data_dir: PathBuf,
    ) -> Self {
        Runtime {
            router: Arc::new(Router::new(upstream.clone(), outbox)),
            engine,
            store,
            upstream,
            data_dir,
            modules: Mutex::default(),
            forwarders: Mutex::default(),
        }
    }

    fn modules(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ModuleHandle>> {
        self.modules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compiles every module of `deployment`, then starts them all with their configuration
    /// overlaid by `desired` (module name → JSON merge patch) and installs the routes.
    ///
    /// # Errors
    /// [`RuntimeError::Compile`] for the first module that does not compile; then no module
    /// is started.
    pub async fn start(
        &self,
        deployment: &Deployment,
        desired: &BTreeMap<String, Value>,
    ) -> Result<(), RuntimeError> {
        let mut compiled = Vec::new();
        for (name, spec) in &deployment.modules {
            let engine = self.engine.clone();
            let path = spec.path.clone();
            let pre = tokio::task::spawn_blocking(move || engine.compile(&path))
                .await
                .expect("compilation does not panic")
                .map_err(|source| RuntimeError::Compile {
                    module: name.clone(),
                    source,
                })?;
            compiled.push((name, spec, pre));
        }
        // A durable route's queue is a store of its own, `DATA_DIR/routes/<route>/`.
        let mut queues = BTreeMap::new();
        for (name, route) in deployment.routes.iter().filter(|(_, r)| r.durable) {
            let store =
                Store::open(&self.data_dir.join("routes").join(name)).map_err(|source| {
                    RuntimeError::Queue {
                        route: name.clone(),
                        source,
                    }
                })?;
            queues.insert(name.clone(), (route, store.outbox(deployment.outbox)));
        }
        self.router.set_routes(
            deployment
                .routes
                .iter()
                .map(|(name, route)| (route, queues.get(name).map(|(_, q)| q.clone()))),
        );
        for (name, spec, pre) in compiled {
            let config = match desired.get(name) {
                Some(patch) => merged(&spec.config, patch),
                None => spec.config.clone(),
            };
            let data_dir = spec
                .data_dir
                .then(|| self.data_dir.join("modules").join(name));
            let ctx = Arc::new(ModuleCtx::new(
                name.clone(),
                spec.clone(),
                config,
                data_dir,
                self.router.clone(),
                self.upstream.clone(),
                self.store.module_state(name, spec.state_quota_bytes),
            ));
            let (inbox_tx, inbox_rx) = mpsc::channel(spec.inbox);
            let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
            self.router.set_inbox(name, inbox_tx);
            let task = tokio::spawn(supervise(ctx.clone(), pre, inbox_rx, control_rx));
            self.modules().insert(
                name.clone(),
                ModuleHandle {
                    ctx,
                    control: control_tx,
                    task,
                },
            );
        }
        for (name, (route, queue)) in queues {
            let Target::Module { module, input } = &route.to else {
                continue; // only module targets can be durable
            };
            if let Some(inbox) = self.router.inbox(module) {
                let forwarder = durable_route::forward(name, queue, inbox, input.clone());
                self.forwarders().push(tokio::spawn(forwarder));
            }
        }
        Ok(())
    }

    fn forwarders(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.forwarders.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(
        &self,
        module: &str,
    ) -> Result<(Arc<ModuleCtx>, mpsc::Sender<Control>), RuntimeError> {
        self.modules()
            .get(module)
            .map(|h| (h.ctx.clone(), h.control.clone()))
            .ok_or_else(|| RuntimeError::UnknownModule(module.to_string()))
    }

    /// Applies `desired` (a JSON merge patch over the module's deployment config) to a running
    /// module through `on-config`, without restarting it.
    ///
    /// # Errors
    /// Unknown module, the module rejected the configuration (the old one stays active), or it
    /// did not answer within `timeout`.
    pub async fn configure(
        &self,
        module: &str,
        desired: &Value,
        timeout: Duration,
    ) -> Result<Value, RuntimeError> {
        let (ctx, control) = self.handle(module)?;
        let config = merged(&ctx.spec.config, desired);
        let request = |reply| Control::Configure {
            config: config.clone(),
            reply,
        };
        match ask(&control, request, timeout).await {
            Ok(Some(Ok(()))) => Ok(config),
            Ok(Some(Err(reason))) => Err(RuntimeError::Rejected {
                module: module.to_string(),
                reason,
            }),
            Ok(None) => Err(RuntimeError::UnknownModule(module.to_string())),
            Err(_) => Err(RuntimeError::Timeout(module.to_string(), timeout)),
        }
    }

    /// Calls `on-method` of `module`. A module that does not answer within its
    /// `method-timeout-ms` gets 504.
    ///
    /// # Errors
    /// [`RuntimeError::UnknownModule`].
    pub async fn invoke(
        &self,
        module: &str,
        method: &str,
        payload: &str,
    ) -> Result<MethodResult, RuntimeError> {
        let (ctx, control) = self.handle(module)?;
        let timeout = Duration::from_millis(ctx.spec.method_timeout_ms);
        let request = |reply| Control::Method {
            name: method.to_string(),
            payload: payload.to_string(),
            reply,
        };
        match ask(&control, request, timeout).await {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Err(RuntimeError::UnknownModule(module.to_string())),
            Err(_) => Ok(MethodResult {
                status: 504,
                payload: serde_json::json!({ "error": format!("module `{module}` did not answer within {timeout:?}") })
                    .to_string(),
            }),
        }
    }

    /// Restarts `module` with a fresh instance; its state store, counters and configuration
    /// are kept.
    ///
    /// # Errors
    /// Unknown module, or it did not take the request within `timeout`.
    pub async fn restart(&self, module: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let (_, control) = self.handle(module)?;
        match ask(&control, |reply| Control::Restart { reply }, timeout).await {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(RuntimeError::UnknownModule(module.to_string())),
            Err(_) => Err(RuntimeError::Timeout(module.to_string(), timeout)),
        }
    }

    /// Routes a cloud-to-device message along the routes from `$upstream/c2d`.
    ///
    /// # Errors
    /// No route from `$upstream/c2d`, an invalid message, or a full module inbox.
    pub async fn deliver_c2d(&self, message: Message) -> Result<(), SendError> {
        self.router.send(UPSTREAM, C2D_OUTPUT, vec![message]).await
    }

    /// The active configuration of `module`.
    pub fn config(&self, module: &str) -> Option<Value> {
        self.modules().get(module).map(|h| h.ctx.config())
    }

    /// A snapshot of every module.
    pub fn status(&self) -> Vec<ModuleStatus> {
        self.modules()
            .iter()
            .map(|(name, h)| h.ctx.stats.snapshot(name, h.ctx.config()))
            .collect()
    }

    /// Stops every module and waits for their tasks to end. Messages of durable routes not yet
    /// handled stay queued for the next start.
    pub async fn shutdown(&self) {
        for forwarder in std::mem::take(&mut *self.forwarders()) {
            forwarder.abort();
        }
        let handles: Vec<ModuleHandle> =
            std::mem::take(&mut *self.modules()).into_values().collect();
        for handle in handles {
            self.router.remove_inbox(&handle.ctx.name);
            drop(handle.control);
            let _ = handle.task.await;
        }
    }
}

/// Sends a request built around a reply channel to a module's supervisor and waits for the
/// answer: `Err` after `timeout`, `Ok(None)` if the module stopped meanwhile.
async fn ask<T>(
    control: &mpsc::Sender<Control>,
    request: impl FnOnce(oneshot::Sender<T>) -> Control,
    timeout: Duration,
) -> Result<Option<T>, tokio::time::error::Elapsed> {
    let (reply, answer) = oneshot::channel();
    tokio::time::timeout(timeout, async {
        control.send(request(reply)).await.ok()?;
        answer.await.ok()
    })
    .await
}
