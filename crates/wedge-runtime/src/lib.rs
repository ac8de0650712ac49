//! The wedge runtime: runs WebAssembly edge modules (components targeting the `wedge:edge` WIT
//! world) on one wasmtime engine, routes their messages, and applies their configuration.
//!
//! The pieces, from the outside in: a [`Deployment`] says what runs; the [`Runtime`] compiles
//! and starts each module under a supervisor task; each module instance has its own store with
//! WASI p2 granting nothing ambient, `wasi:http` limited to its allow-list, and the host imports
//! in `host/`; the router carries messages between module outputs, inputs and the [`Upstream`].
#![deny(missing_docs)]

mod bindings;
pub mod deployment;
mod durable_route;
mod engine;
mod host;
pub mod json;
mod message;
mod module;
mod outbound_http;
mod router;
mod runtime;
mod stdio;
mod upstream;

pub use deployment::Deployment;
pub use engine::{EPOCH_TICK, EngineCtx, EngineError};
pub use message::{MAX_BODY_BYTES, Message, SendError, truncate};
pub use module::{MethodResult, ModuleState, ModuleStatus};
pub use runtime::{Runtime, RuntimeError};
pub use upstream::{Upstream, UpstreamMessage};
