//! Logging through the host, which tags each record with the module's name.
//!
//! Records longer than 4 KiB are truncated by the host.

use crate::bindings::wedge::edge::log::{Level, log};

/// Logs `msg` at trace level.
pub fn trace(msg: &str) {
    log(Level::Trace, msg);
}

/// Logs `msg` at debug level.
pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

/// Logs `msg` at info level.
pub fn info(msg: &str) {
    log(Level::Info, msg);
}

/// Logs `msg` at warn level.
pub fn warn(msg: &str) {
    log(Level::Warn, msg);
}

/// Logs `msg` at error level.
pub fn error(msg: &str) {
    log(Level::Error, msg);
}
