//! Azure IoT Operations data-flow operators (`wasm-graph:processor@1.1.0`) run as wedge
//! modules: a deployment names the operator interface to drive (`kind = "aio-map"`, …), routes
//! feed it like any module, and the host turns each wedge message into the operator's
//! `data-model` message and its results back into messages on the operator's outputs.

mod bindings;
mod buffer;
mod convert;
mod host;
mod instance;

pub(crate) use bindings::AioOperators;
pub(crate) use instance::{EXPORTS_TEXT, Exports, OperatorInstance};
