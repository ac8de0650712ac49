//! How a module runs and how messages are routed: the settings the runtime is given for each
//! module ([`ModuleSpec`], its outbound HTTP allow-list) and the routes between module outputs,
//! module inputs and the hub. Where they come from (a `wedge.toml`, a desired deployment) is
//! the host's business.

mod allowed_hosts;
mod listen;
mod socket_grants;

pub use allowed_hosts::{AllowedHost, AllowedHosts};
pub use listen::{ListenError, check_listens};
pub use socket_grants::{GrantHost, Protocol, SocketGrant, SocketGrants};
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
/// Default CPU time a long-running module (one exporting `run`) may use per second of wall
/// time.
pub const DEFAULT_CPU_MS_PER_SECOND: u64 = 250;
/// Default number of sockets a module may hold open at once.
pub const DEFAULT_SOCKETS: u64 = 1024;
/// Default largest request body of an HTTP trigger.
pub const DEFAULT_HTTP_BODY_KB: u64 = 1024;
/// Default time a module gets to answer one HTTP request.
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 30_000;
/// Default number of HTTP requests a module handles at once.
pub const DEFAULT_HTTP_CONCURRENCY: u64 = 16;
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
    /// Where the module may connect and listen through `wasi:sockets`.
    pub sockets: SocketGrants,
    /// Sockets it may hold open at once; one more is refused with `new-socket-limit`.
    pub max_sockets: usize,
    /// The HTTP trigger: where the host serves the module's `wasi:http/incoming-handler`.
    pub http: Option<HttpTrigger>,
    /// Interval of `on-tick` calls; `None` means the module is never ticked.
    pub tick_ms: Option<u64>,
    /// Whether the module gets a private directory, mounted at `/data`.
    pub data_dir: bool,
    /// Linear memory limit in MiB.
    pub memory_mb: u64,
    /// CPU time one call may use before it is interrupted (a trap).
    pub cpu_ms_per_call: u64,
    /// CPU time a long-running module's `run` may use per second of wall time.
    pub cpu_ms_per_second: u64,
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

/// Where and how the host serves a module's `wasi:http/incoming-handler`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// The address the host listens on (`http-listen`).
    pub listen: std::net::SocketAddr,
    /// Largest request body accepted; a larger one gets 413.
    pub body_bytes: usize,
    /// Time the module gets to answer one request; then the caller gets 504.
    pub timeout_ms: u64,
    /// Requests handled at once; more get 503.
    pub concurrency: usize,
}

impl HttpTrigger {
    /// Parses an `http-listen` address: `ip:port`, IPv6 in brackets, port not 0.
    ///
    /// # Errors
    /// A message naming what is wrong with `text`.
    pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) if addr.port() != 0 => Ok(addr),
            Ok(_) => Err(format!("`{text}`: port 0 is not a fixed address")),
            Err(_) => Err(format!(
                "`{text}` is not an address: write `ip:port`, e.g. `127.0.0.1:8081` or `[::1]:8081`"
            )),
        }
    }

    /// Its listen address as a TCP listen grant, to check it against other modules'.
    pub fn as_grant(&self) -> SocketGrant {
        SocketGrant {
            protocol: Protocol::Tcp,
            host: GrantHost::Net(self.listen.ip().into()),
            ports: self.listen.port()..=self.listen.port(),
        }
    }
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
