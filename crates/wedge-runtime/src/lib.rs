//! The wedge runtime: runs WebAssembly edge modules (components targeting the `wedge:edge` WIT
//! world) on one wasmtime engine, routes their messages, and applies their configuration.
//!
//! The pieces, from the outside in: the [`Runtime`] starts each module (a compiled
//! [`ModuleImage`] and its [`spec::ModuleSpec`]) under a supervisor task; each module instance has its own store with
//! WASI p2 granting nothing ambient, `wasi:http` limited to its allow-list, and the host imports
//! in `host/`; the router carries messages between module outputs, inputs and the
//! [`wedge_core::Upstream`].
#![deny(missing_docs)]

mod bindings;
mod durable_route;
mod engine;
mod host;
mod http_trigger;
mod inbox;
mod limiter;
mod message;
mod module;
mod operator;
mod outbound_http;
mod router;
mod runtime;
pub mod spec;
mod stdio;

pub use engine::{Allocation, EPOCH_TICK, EngineCtx, EngineError, ModuleImage};
pub use http_trigger::HttpCounts;
pub use module::{
    LogLevel, LogLine, LogPage, LogQuery, MethodResult, ModuleStatus, OperatorSeries,
};
pub use runtime::{Runtime, RuntimeError};
