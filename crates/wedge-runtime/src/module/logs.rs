//! A module's log records, from `log.log` and from its stdout and stderr, rate-limited per
//! module: a module cannot fill the device's disk or drown the other modules' records.

use std::sync::atomic::Ordering;

use tracing::Level;
use wedge_core::truncate;

use super::ModuleCtx;
use super::log_ring::LogLevel;

/// Longest log record kept; the rest is cut.
pub(crate) const MAX_RECORD: usize = 4 * 1024;

/// Where a module's record came from (the `stream` field of the event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Log,
    Stdout,
    Stderr,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Log => "log",
            Source::Stdout => "stdout",
            Source::Stderr => "stderr",
        }
    }
}

/// Expands `$body` once per level with `$level` a constant, because `tracing`'s macros need
/// their level at compile time.
macro_rules! at_level {
    ($value:expr, $level:ident => $body:expr) => {
        match $value {
            Level::TRACE => {
                const $level: Level = Level::TRACE;
                $body
            }
            Level::DEBUG => {
                const $level: Level = Level::DEBUG;
                $body
            }
            Level::INFO => {
                const $level: Level = Level::INFO;
                $body
            }
            Level::WARN => {
                const $level: Level = Level::WARN;
                $body
            }
            Level::ERROR => {
                const $level: Level = Level::ERROR;
                $body
            }
        }
    };
}

impl ModuleCtx {
    /// Logs one record of the module (cut to [`MAX_RECORD`] bytes) in the current span and
    /// keeps it in the module's ring ([`super::LogRing`], for `wedge logs`), unless the module
    /// is over its rate ([`crate::limiter::LOG_PER_SECOND`] after a burst): then it is counted
    /// in the module's stats, and the next record that passes is preceded by one saying how
    /// many were suppressed.
    pub(crate) fn log_record(&self, level: Level, source: Source, text: &str) {
        let stream = source.name();
        let text = truncate(text, MAX_RECORD);
        let passed = self.logs.gate(
            |n| {
                let note = format!(
                    "suppressed {n} log lines of this module (more than {} per second)",
                    crate::limiter::LOG_PER_SECOND
                );
                self.log_ring.push(LogLevel::Warn, "host", &note);
                tracing::warn!(target: "wedge::module", stream, "{note}")
            },
            || {
                self.log_ring.push(level.into(), stream, text);
                let enabled = at_level!(level, L => tracing::enabled!(target: "wedge::module", L));
                if enabled {
                    at_level!(level, L => tracing::event!(target: "wedge::module", L, stream, "{text}"))
                }
            },
        );
        if !passed {
            self.stats.logs_suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
