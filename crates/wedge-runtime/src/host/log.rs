//! `wedge:edge/log`: module log records become `tracing` events in the module's span, at the
//! module's rate (see [`crate::module::ModuleCtx::log_record`]).

use crate::bindings::wedge::edge::log::{Host, Level};
use crate::module::Source;

use super::HostState;

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.module.log_record(level, Source::Log, &message);
        Ok(())
    }
}
