//! Host bindings for Azure IoT Operations operators (`wasm-graph:processor@1.1.0`, the
//! `aio-operators` world of `wit/wedge.wit`): the imports an operator links against, and one
//! `Guest` per operator interface, of which a component exports any subset.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "aio-operators",
    imports: {
        // These write the module's durable state; the rest answer from memory.
        "wasm-graph:processor/state-store.set": async | trappable,
        "wasm-graph:processor/state-store.del": async | trappable,
        "wasm-graph:processor/state-store.vdel": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "wasm-graph:processor/types.buffer": super::buffer::Buffer,
    },
});

pub(crate) use exports::wasm_graph::processor::{accumulate, branch, delay, filter, map};
pub(crate) use wasm_graph::processor::hybrid_logical_clock::{HybridLogicalClock, Timespec};
pub(crate) use wasm_graph::processor::types::{
    BufferOrBytes, BufferOrString, DataModel, Error as OperatorError, Message as AioMessage,
    MessageProperties, ModuleConfiguration, Timestamp,
};
