//! `wedge:edge/log`: module log records become `tracing` events in the module's span.

use crate::bindings::wedge::edge::log::{Host, Level};
use wedge_core::truncate;

use super::HostState;

/// Longest log record kept; the rest is cut.
pub const MAX_LOG_BYTES: usize = 4 * 1024;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let message = truncate(&message, MAX_LOG_BYTES);
        match level {
            Level::Trace => tracing::trace!(target: "wedge::module", "{message}"),
            Level::Debug => tracing::debug!(target: "wedge::module", "{message}"),
            Level::Info => tracing::info!(target: "wedge::module", "{message}"),
            Level::Warn => tracing::warn!(target: "wedge::module", "{message}"),
            Level::Error => tracing::error!(target: "wedge::module", "{message}"),
        }
        Ok(())
    }
}
