//! Counters and health of one module, read by `wedge status` and reported to the hub.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::message::truncate;

/// Longest error text kept as a module's last error.
const MAX_ERROR_LEN: usize = 1024;

/// The health of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleState {
    /// Being instantiated and initialised.
    Starting,
    /// Its last call succeeded.
    Running,
    /// It trapped or failed to start, and has not completed a call since; it is restarted with
    /// backoff.
    Failing,
    /// Removed or shut down.
    Stopped,
}

/// A snapshot of one module for status displays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModuleStatus {
    /// The module's name.
    pub name: String,
    /// Its health.
    pub state: ModuleState,
    /// Messages delivered to `on-message`.
    pub messages_in: u64,
    /// Messages accepted by `telemetry.send`.
    pub messages_out: u64,
    /// Calls that returned an error or trapped, and sends that were refused.
    pub errors: u64,
    /// Times the module was restarted after a trap or failed start.
    pub restarts: u64,
    /// The latest error, if any.
    pub last_error: Option<String>,
    /// The configuration the module runs with (deployment config overlaid with the desired
    /// configuration it accepted).
    pub config: serde_json::Value,
}

#[derive(Default)]
pub(crate) struct ModuleStats {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub send_errors: AtomicU64,
    pub call_errors: AtomicU64,
    pub restarts: AtomicU64,
    health: Mutex<Health>,
}

struct Health {
    state: ModuleState,
    last_error: Option<String>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: ModuleState::Starting,
            last_error: None,
        }
    }
}

impl ModuleStats {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call completed (whatever the module answered): the module is healthy.
    pub(crate) fn call_completed(&self) {
        self.health().state = ModuleState::Running;
    }

    /// The module answered a call with an error; it keeps running.
    pub(crate) fn call_refused(&self, error: &str) {
        self.call_errors.fetch_add(1, Ordering::Relaxed);
        self.health().last_error = Some(truncate(error, MAX_ERROR_LEN).to_string());
    }

    /// The module trapped or could not start: it is failing until a call succeeds.
    pub(crate) fn failed(&self, error: &str) {
        self.call_errors.fetch_add(1, Ordering::Relaxed);
        let mut health = self.health();
        health.state = ModuleState::Failing;
        health.last_error = Some(truncate(error, MAX_ERROR_LEN).to_string());
    }

    pub(crate) fn stopped(&self) {
        self.health().state = ModuleState::Stopped;
    }

    pub(crate) fn snapshot(&self, name: &str, config: serde_json::Value) -> ModuleStatus {
        let health = self.health();
        ModuleStatus {
            name: name.to_string(),
            state: health.state,
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            errors: self.call_errors.load(Ordering::Relaxed)
                + self.send_errors.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_error: health.last_error.clone(),
            config,
        }
    }
}
