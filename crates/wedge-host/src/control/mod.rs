//! The control endpoint: a Unix socket in the data directory, owned by the running host,
//! through which `wedge status`, `wedge twin`, `wedge logs` and `wedge deploy` talk to it. One JSON request per line,
//! one JSON response per line.

pub(crate) mod server;

use serde::{Deserialize, Serialize};

/// File name of the socket in the data directory.
pub const SOCKET: &str = "wedge.sock";
/// Longest request line the server reads.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request to the running host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Modules and their counters.
    Status,
    /// The twin document.
    TwinGet,
    /// Merge `patch` into the desired `config` of `module` and apply it.
    TwinSet {
        /// The module.
        module: String,
        /// A JSON merge patch.
        patch: serde_json::Value,
    },
    /// Merge `deployment` (a desired deployment, `null` removes) into the local twin's
    /// desired deployment and apply it; the answer says whether it was.
    Deploy {
        /// A JSON merge patch of `desired.wedge`.
        deployment: serde_json::Value,
    },
    /// A module's recent log records.
    Logs {
        /// The module.
        module: String,
        /// Which records.
        #[serde(default)]
        query: wedge_runtime::LogQuery,
    },
    /// Invoke a direct method on a module.
    Call {
        /// The module.
        module: String,
        /// The method name.
        method: String,
        /// JSON payload.
        payload: String,
    },
}

/// The answer: `result` on success, `error` otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Response {
    /// Success.
    Ok(serde_json::Value),
    /// Failure, with a message for the user.
    Error(String),
}
