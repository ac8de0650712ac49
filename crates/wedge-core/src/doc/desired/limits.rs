//! A module's resource limits in a deployment document.

use serde::{Deserialize, Serialize};

/// A module's resource limits; `None` leaves the host's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "kebab-case",
    deny_unknown_fields,
    expecting = "a limits object"
)]
pub struct Limits {
    /// Linear memory, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// CPU time for one call into the module, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms_per_call: Option<u64>,
    /// CPU time a long-running module (one exporting `run`) may use per second, in
    /// milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms_per_second: Option<u64>,
    /// The HTTP trigger's largest request body, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_body_kb: Option<u64>,
    /// The time the module gets to answer one HTTP request, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_timeout_ms: Option<u64>,
    /// HTTP requests the module handles at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_concurrency: Option<u64>,
    /// Messages waiting in the module's inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<u64>,
    /// The module's key-value state, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_kb: Option<u64>,
    /// The module's recent log records kept in memory (`wedge logs`), in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_kb: Option<u64>,
    /// Sockets the module may hold open at once (`wasi:sockets`, accepted ones included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sockets: Option<u64>,
}

impl Limits {
    /// Whether no limit is set.
    pub fn is_unset(&self) -> bool {
        *self == Self::default()
    }
}
