//! The runtime: starts the modules of a deployment, routes between them, and applies
//! configuration changes to running modules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use wedge_core::{Message, SendError, Upstream};
use wedge_store::{Outbox, OutboxLimits, Store};

use crate::durable_route::{self, DurableRoute};
use crate::engine::{EngineCtx, ModuleImage};
use crate::http_trigger::HttpServer;
use crate::inbox::{Inbox, inbox};
use crate::module::{
    Control, LogPage, LogQuery, MethodResult, ModuleCtx, ModuleStats, ModuleStatus, Update,
    supervise,
};
use crate::router::Router;
use crate::spec::{C2D_OUTPUT, ModuleSpec, Route, Target, UPSTREAM};

/// Room for configuration and method requests waiting for one module.
const CONTROL_QUEUE: usize = 16;

/// Errors of the runtime's operations.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No module of that name is running.
    #[error("no module named `{0}`")]
    UnknownModule(String),
    /// A module of that name runs already.
    #[error("a module named `{0}` runs already")]
    Exists(String),
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

/// The running modules of the host. Modules and routes can be added, changed and removed while
/// the others run.
pub struct Runtime {
    engine: EngineCtx,
    store: Store,
    router: Arc<Router>,
    upstream: Arc<dyn Upstream>,
    data_dir: PathBuf,
    modules: Mutex<BTreeMap<String, ModuleHandle>>,
    routes: Mutex<BTreeMap<String, RouteHandle>>,
    /// Bumped whenever a module's health changes (see [`Runtime::changes`]).
    changes: watch::Sender<u64>,
}

struct ModuleHandle {
    ctx: Arc<ModuleCtx>,
    inbox: Inbox,
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
    /// The binary it runs, for restarting its HTTP trigger.
    image: ModuleImage,
    /// Its HTTP trigger, while it listens.
    http: Option<HttpServer>,
}

struct RouteHandle {
    route: Route,
    durable: Option<DurableRoute>,
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
            routes: Mutex::default(),
            changes: watch::Sender::new(0),
        }
    }

    fn modules(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ModuleHandle>> {
        self.modules.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RouteHandle>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The engine modules are compiled with.
    pub fn engine(&self) -> &EngineCtx {
        &self.engine
    }

    /// Wakes whenever a module starts, fails, stops or is added or removed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Starts `name` running `image` with `config`. Routes to it deliver from now on.
    ///
    /// # Errors
    /// [`RuntimeError::Exists`] if a module of that name runs.
    pub fn add_module(
        &self,
        name: &str,
        spec: ModuleSpec,
        image: ModuleImage,
        config: Value,
    ) -> Result<(), RuntimeError> {
        let mut modules = self.modules();
        if modules.contains_key(name) {
            return Err(RuntimeError::Exists(name.to_string()));
        }
        let data_dir = spec
            .data_dir
            .then(|| self.data_dir.join("modules").join(name));
        let state = self.store.module_state(name, spec.state_quota_bytes);
        let (inbox_tx, inbox_rx) = inbox(spec.inbox);
        let ctx = Arc::new(ModuleCtx::new(
            name.to_string(),
            spec,
            config,
            data_dir,
            self.router.clone(),
            self.upstream.clone(),
            state,
            ModuleStats::new(image.sha256().to_string(), self.changes.clone()),
        ));
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        self.router.set_inbox(name, inbox_tx.clone());
        let http = HttpServer::start(&ctx, &image);
        let task = tokio::spawn(supervise(ctx.clone(), image.clone(), inbox_rx, control_rx));
        modules.insert(
            name.to_string(),
            ModuleHandle {
                ctx,
                inbox: inbox_tx,
                control: control_tx,
                task,
                image,
                http,
            },
        );
        drop(modules);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Gives `module` new settings and, with `image`, a new binary, and starts a fresh
    /// instance with `config` once the call it is in (if any) returns. Its inbox, durable
    /// state and counters are kept: messages sent meanwhile wait in the inbox (a smaller
    /// `inbox` keeps the messages already waiting).
    ///
    /// # Errors
    /// Unknown module, or it did not take the request within `timeout`.
    pub async fn update_module(
        &self,
        module: &str,
        spec: ModuleSpec,
        image: Option<ModuleImage>,
        config: Value,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let (_, control) = self.handle(module)?;
        let inbox = self
            .modules()
            .get(module)
            .map(|h| (h.inbox.clone(), spec.inbox));
        let new_image = image.clone();
        let request = |reply| {
            Control::Update(Box::new(Update {
                spec,
                image,
                config,
                reply,
            }))
        };
        match ask(&control, request, timeout).await {
            Ok(Some(())) => {
                if let Some((inbox, capacity)) = inbox {
                    inbox.set_capacity(capacity);
                }
                self.restart_http(module, new_image, true).await;
                Ok(())
            }
            Ok(None) => Err(RuntimeError::UnknownModule(module.to_string())),
            Err(_) => Err(RuntimeError::Timeout(module.to_string(), timeout)),
        }
    }

    /// Stops `module` (after the call it is in, if any) and forgets it; messages routed to it
    /// are dropped from now on. Its durable state stays in the store.
    ///
    /// # Errors
    /// [`RuntimeError::UnknownModule`].
    pub async fn remove_module(&self, module: &str) -> Result<(), RuntimeError> {
        let handle = self
            .modules()
            .remove(module)
            .ok_or_else(|| RuntimeError::UnknownModule(module.to_string()))?;
        self.router.remove_inbox(module);
        if let Some(http) = handle.http {
            http.stop().await;
        }
        drop(handle.control);
        let _ = handle.task.await;
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Stops `module`'s HTTP trigger, if it has one, and starts it again as its (new) spec
    /// says, with `image` if the binary changed: new limits or address, a stop, or another try
    /// at an address that was busy. With `keep`, a trigger that serves what it should already
    /// is left as it is.
    async fn restart_http(&self, module: &str, image: Option<ModuleImage>, keep: bool) {
        let old = match self.modules().get_mut(module) {
            Some(handle) => {
                let image = image.as_ref().unwrap_or(&handle.image);
                match &handle.http {
                    Some(http) if keep && http.serves(&handle.ctx, image) => return,
                    _ => handle.http.take(),
                }
            }
            None => return,
        };
        if let Some(old) = old {
            old.stop().await;
        }
        let mut modules = self.modules();
        if let Some(handle) = modules.get_mut(module) {
            if let Some(image) = image {
                handle.image = image;
            }
            if handle.http.is_none() {
                handle.http = HttpServer::start(&handle.ctx, &handle.image);
            }
        }
        drop(modules);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Makes `routes` the routing table. Routes that stay as they are keep running (a durable
    /// route keeps its queue and forwarder); removed ones stop; a durable route's queue
    /// (`DATA_DIR/routes/<route>/`) is opened with `limits` when it first appears. A durable
    /// route whose module is not running waits until it is (the next call).
    ///
    /// # Errors
    /// A new durable route's queue cannot be opened; then nothing changed.
    pub fn set_routes(
        &self,
        routes: &BTreeMap<String, Route>,
        limits: OutboxLimits,
    ) -> Result<(), RuntimeError> {
        let mut table = self.routes();
        // Open every new queue first, so that a failure changes nothing.
        let mut opened = BTreeMap::new();
        for name in routes
            .iter()
            .filter(|(_, r)| r.durable)
            .map(|(name, _)| name)
        {
            let kept = table.get(name).and_then(|h| h.durable.as_ref());
            if kept.is_none() {
                let store =
                    Store::open(&self.data_dir.join("routes").join(name)).map_err(|source| {
                        RuntimeError::Queue {
                            route: name.clone(),
                            source,
                        }
                    })?;
                opened.insert(name.clone(), store.outbox(limits));
            }
        }
        let mut next = BTreeMap::new();
        for (name, route) in routes {
            let previous = table.remove(name);
            let unchanged = previous.as_ref().is_some_and(|p| p.route == *route);
            let previous = previous.and_then(|p| p.durable);
            let durable = match (route.durable, previous) {
                (false, previous) => {
                    if let Some(old) = previous {
                        old.forwarder.abort();
                    }
                    None
                }
                (true, Some(old)) if unchanged && old.feeds(self.target_inbox(route).as_ref()) => {
                    Some(old)
                }
                (true, previous) => {
                    let queue = match previous {
                        Some(old) => {
                            old.forwarder.abort();
                            old.queue
                        }
                        None => opened.remove(name).expect("opened above"),
                    };
                    Some(self.forward(name, route, queue))
                }
            };
            next.insert(
                name.clone(),
                RouteHandle {
                    route: route.clone(),
                    durable,
                },
            );
        }
        // What is left in the old table was removed.
        for (_, removed) in std::mem::take(&mut *table) {
            if let Some(old) = removed.durable {
                old.forwarder.abort();
            }
        }
        self.router.set_routes(
            next.values()
                .map(|h| (&h.route, h.durable.as_ref().map(|d| d.queue.clone()))),
        );
        *table = next;
        Ok(())
    }

    fn target_inbox(&self, route: &Route) -> Option<Inbox> {
        match &route.to {
            Target::Module { module, .. } => self.router.inbox(module),
            Target::Upstream => None,
        }
    }

    /// Starts the task feeding a durable route's module from its queue; with the module not
    /// running there is no task (the next [`Runtime::set_routes`] starts one).
    fn forward(&self, name: &str, route: &Route, queue: Outbox) -> DurableRoute {
        let Target::Module { input, .. } = &route.to else {
            unreachable!("only routes to a module input are durable")
        };
        let inbox = self.target_inbox(route);
        let forwarder = match &inbox {
            Some(inbox) => tokio::spawn(durable_route::forward(
                name.to_string(),
                queue.clone(),
                inbox.clone(),
                input.clone(),
            )),
            None => tokio::spawn(async {}),
        };
        DurableRoute {
            queue,
            forwarder,
            inbox,
        }
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

    /// Gives a running module its new configuration `config` through `on-config`, without
    /// restarting it.
    ///
    /// # Errors
    /// Unknown module, the module rejected the configuration (the old one stays active), or it
    /// did not answer within `timeout`.
    pub async fn configure(
        &self,
        module: &str,
        config: &Value,
        timeout: Duration,
    ) -> Result<Value, RuntimeError> {
        let (_, control) = self.handle(module)?;
        let config = config.clone();
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
        ctx.stats
            .methods
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let timeout = Duration::from_millis(ctx.spec().method_timeout_ms);
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
            Ok(Some(())) => {
                self.restart_http(module, None, false).await;
                Ok(())
            }
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

    /// The recent log records of `module` that `query` selects, oldest first.
    ///
    /// # Errors
    /// [`RuntimeError::UnknownModule`].
    pub fn logs(&self, module: &str, query: &LogQuery) -> Result<LogPage, RuntimeError> {
        self.modules()
            .get(module)
            .map(|h| h.ctx.log_ring.query(query))
            .ok_or_else(|| RuntimeError::UnknownModule(module.to_string()))
    }

    /// The active configuration of `module`.
    pub fn config(&self, module: &str) -> Option<Value> {
        self.modules().get(module).map(|h| h.ctx.config())
    }

    /// A snapshot of every module.
    pub fn status(&self) -> Vec<ModuleStatus> {
        self.modules()
            .iter()
            .map(|(name, h)| {
                let spec = h.ctx.spec();
                let mut status = h
                    .ctx
                    .stats
                    .snapshot(name, spec.status, h.ctx.config(), &h.inbox);
                if spec.http.is_some() {
                    let http = h.ctx.stats.http.counts();
                    // A module that cannot listen does not do what it is deployed for.
                    if let Some(error) = &http.error {
                        status.state = wedge_core::doc::RuntimeStatus::Failed;
                        status.last_error = Some(error.clone());
                    }
                    status.http = Some(http);
                }
                status
            })
            .collect()
    }

    /// Whether every module's first start has come to an end: its instance is up (`init`
    /// returned), or the start failed (it waits to be restarted, or its policy says never), or
    /// it is stopped as desired. A failing module does not hold this back: the host is up, and
    /// says in its status what failed.
    pub fn settled(&self) -> bool {
        self.modules().values().all(|h| h.ctx.stats.settled())
    }

    /// Whether every module's supervisor task still runs. One ends only when the module is
    /// removed or the runtime shuts down (both take it out of the table first), so an ended
    /// task here is one that panicked: its module is neither served nor restarted.
    ///
    /// # Errors
    /// The modules whose supervisor ended.
    pub fn alive(&self) -> Result<(), String> {
        let ended: Vec<String> = self
            .modules()
            .iter()
            .filter(|(_, h)| h.task.is_finished())
            .map(|(name, _)| name.clone())
            .collect();
        match ended.as_slice() {
            [] => Ok(()),
            names => Err(format!(
                "the supervisor of module(s) {} ended",
                names.join(", ")
            )),
        }
    }

    /// Each module's histogram of call durations (`init`, `on-message`, `on-tick`,
    /// `on-config`, `on-method`), in seconds, by module name.
    pub fn call_seconds(&self) -> Vec<(String, Histogram)> {
        self.modules()
            .iter()
            .map(|(name, h)| (name.clone(), h.ctx.stats.call_seconds.clone()))
            .collect()
    }

    /// Stops every module and waits for their tasks to end. Messages of durable routes not yet
    /// handled stay queued for the next start.
    pub async fn shutdown(&self) {
        for (_, route) in std::mem::take(&mut *self.routes()) {
            if let Some(durable) = route.durable {
                durable.forwarder.abort();
            }
        }
        let handles: Vec<ModuleHandle> =
            std::mem::take(&mut *self.modules()).into_values().collect();
        for handle in handles {
            self.router.remove_inbox(&handle.ctx.name);
            if let Some(http) = handle.http {
                http.stop().await;
            }
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
