//! One running module: its shared context, its instance, and the task that supervises it.

mod call;
mod instance;
mod log_ring;
mod logs;
mod operator_metrics;
mod run;
mod stats;
mod supervisor;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::oneshot;

use wedge_core::Upstream;

use crate::ModuleImage;
use crate::limiter::{Denials, RateLimiter};
use crate::router::Router;
use crate::spec::ModuleSpec;

pub(crate) use crate::inbox::InboxReceiver;
pub(crate) use call::{Outcome, begin_call, new_store, outcome, trapped, trapped_quietly};
pub(crate) use log_ring::LogRing;
pub use log_ring::{DEFAULT_LOG_KB, LogLevel, LogLine, LogPage, LogQuery};
pub(crate) use logs::Source;
pub(crate) use operator_metrics::OperatorMetric;
pub use operator_metrics::OperatorSeries;
pub(crate) use run::ServiceExport;
pub(crate) use stats::ModuleStats;
pub use stats::ModuleStatus;
pub(crate) use supervisor::supervise;

/// What a module's host imports and its supervisor share. Outlives instances: a restarted
/// module keeps its state, counters and active configuration.
pub(crate) struct ModuleCtx {
    pub name: String,
    /// Grants, limits and policies; replaced when the deployment changes them.
    spec: RwLock<Arc<ModuleSpec>>,
    /// Host directory mounted at `/data`, if the deployment grants one.
    pub data_dir: Option<PathBuf>,
    pub router: Arc<Router>,
    pub upstream: Arc<dyn Upstream>,
    /// The configuration the module has accepted (what `twin.desired` returns).
    config: Mutex<serde_json::Value>,
    pub stats: ModuleStats,
    /// The module's durable key-value state.
    pub state: wedge_store::ModuleState,
    /// The rate of its log records (`log.log`, stdout, stderr), across its instances.
    logs: RateLimiter,
    /// Its recent log records, for `wedge logs`.
    pub log_ring: LogRing,
    /// Its refused uses of the network, counted and warned about across its instances.
    pub denials: Arc<Denials>,
}

impl ModuleCtx {
    #[allow(clippy::too_many_arguments)] // one field each; a builder would only rename them
    pub(crate) fn new(
        name: String,
        spec: ModuleSpec,
        config: serde_json::Value,
        data_dir: Option<PathBuf>,
        router: Arc<Router>,
        upstream: Arc<dyn Upstream>,
        state: wedge_store::ModuleState,
        stats: ModuleStats,
    ) -> Self {
        let spec_log_bytes = spec.log_bytes;
        let denials = Arc::new(Denials::new(&name, stats.network_denied.clone()));
        ModuleCtx {
            name,
            spec: RwLock::new(Arc::new(spec)),
            data_dir,
            router,
            upstream,
            config: Mutex::new(config),
            stats,
            state,
            logs: RateLimiter::for_logs(),
            log_ring: LogRing::new(spec_log_bytes),
            denials,
        }
    }

    /// The module's current grants, limits and policies.
    pub(crate) fn spec(&self) -> Arc<ModuleSpec> {
        self.spec.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_spec(&self, spec: ModuleSpec) {
        self.log_ring.resize(spec.log_bytes);
        *self.spec.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(spec);
    }

    /// The active configuration.
    pub(crate) fn config(&self) -> serde_json::Value {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the active configuration, returning the previous one.
    pub(crate) fn set_config(&self, config: serde_json::Value) -> serde_json::Value {
        std::mem::replace(
            &mut *self.config.lock().unwrap_or_else(|e| e.into_inner()),
            config,
        )
    }
}

/// The answer of a module to a direct method.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MethodResult {
    /// HTTP-style status.
    pub status: u16,
    /// JSON payload.
    pub payload: String,
}

/// Requests to a module's supervisor, served between message deliveries.
pub(crate) enum Control {
    /// Apply a new configuration through `on-config`; the reply is the module's verdict.
    Configure {
        config: serde_json::Value,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Call `on-method`.
    Method {
        name: String,
        payload: String,
        reply: oneshot::Sender<MethodResult>,
    },
    /// Drop the instance and start a fresh one (state, counters and config are kept).
    Restart { reply: oneshot::Sender<()> },
    /// Replace the module's settings and, with `image`, its binary, then start a fresh
    /// instance with `config`. The inbox, state and counters stay: no message is lost, the one
    /// being handled is finished first.
    Update(Box<Update>),
}

/// What [`Control::Update`] carries.
pub(crate) struct Update {
    pub spec: ModuleSpec,
    pub image: Option<ModuleImage>,
    pub config: serde_json::Value,
    pub reply: oneshot::Sender<()>,
}
