//! How a module runs and how messages are routed: the settings the runtime is given for each
//! module ([`ModuleSpec`], its outbound HTTP allow-list) and the routes between module outputs,
//! module inputs and the hub. Where they come from (a `wedge.toml`, a desired deployment) is
//! the host's business.

mod allowed_hosts;

pub use allowed_hosts::{AllowedHost, AllowedHosts};
pub use wedge_core::doc::{ModuleKind, UPSTREAM, WhenFull, is_valid_module_name};
pub use wedge_core::{DesiredStatus, RestartPolicy};

/// Default memory limit of one module instance.
pub const DEFAULT_MEMORY_MB: u64 = 64;
/// Default CPU budget of one call into a module.
pub const DEFAULT_CPU_MS_PER_CALL: u64 = 1_000;
/// Default time a module gets to answer a direct method before the caller gets 504.
pub const DEFAULT_METHOD_TIMEOUT_MS: u64 = 30_000;
/// Default quota of one module's durable state (keys plus values).
pub const DEFAULT_STATE_KB: u64 = 1024;
pub use crate::module::DEFAULT_LOG_KB;
/// Default capacity of each module's inbox (messages routed to it and not yet delivered).
pub const DEFAULT_INBOX: usize = 1_024;

/// How one module runs: its configuration, grants, limits and policies.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSpec {
    /// What the component is: a wedge module or an operator the host drives.
    pub kind: ModuleKind,
    /// Configuration passed to `init`, a JSON object.
    pub config: serde_json::Value,
    /// Outbound HTTP destinations the module may reach through `wasi:http`.
    pub allowed_hosts: AllowedHosts,
    /// Interval of `on-tick` calls; `None` means the module is never ticked.
    pub tick_ms: Option<u64>,
    /// Whether the module gets a private directory, mounted at `/data`.
    pub data_dir: bool,
    /// Linear memory limit in MiB.
    pub memory_mb: u64,
    /// CPU time one call may use before it is interrupted (a trap).
    pub cpu_ms_per_call: u64,
    /// Capacity of the module's inbox.
    pub inbox: usize,
    /// Time the module gets to answer a direct method (waiting for its turn included) before
    /// the caller gets 504.
    pub method_timeout_ms: u64,
    /// Quota of the module's durable state (keys plus values).
    pub state_quota_bytes: usize,
    /// Size of the ring of its recent log records (`wedge logs`).
    pub log_bytes: usize,
    /// Whether a module that failed, or exited, is started again.
    pub restart_policy: RestartPolicy,
    /// Whether it should run at all.
    pub status: DesiredStatus,
}

/// A route from one module output to a module input or the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Module whose output the route takes.
    pub from_module: String,
    /// Name of that output.
    pub from_output: String,
    /// Where messages go.
    pub to: Target,
    /// Messages to a module input are kept on disk until the module has handled them (instead
    /// of in its in-memory inbox), so a crash or power cut loses none.
    pub durable: bool,
    /// What a full inbox of the destination does with this route's messages.
    pub when_full: WhenFull,
}

/// The destination of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An input of a module.
    Module {
        /// The module.
        module: String,
        /// The input name passed to `on-message`.
        input: String,
    },
    /// The hub (`$upstream`).
    Upstream,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Module { module, input } => write!(f, "{module}/{input}"),
            Target::Upstream => f.write_str(UPSTREAM),
        }
    }
}

/// The hub's output: cloud-to-device messages.
pub const C2D_OUTPUT: &str = "c2d";

/// `n` KiB in bytes (saturating: a limit too large for memory is no limit).
pub fn kib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1024)).unwrap_or(usize::MAX)
}
