//! Host bindings for the `wedge:edge` WIT package (the one `bindgen!` of the crate).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "edge-module",
    imports: {
        // These await the router, the upstream or the disk; the rest answer from memory (or,
        // for `state.get`, one indexed read).
        "wedge:edge/telemetry.send": async | trappable,
        "wedge:edge/telemetry.send-batch": async | trappable,
        "wedge:edge/twin.report": async | trappable,
        "wedge:edge/state.set": async | trappable,
        "wedge:edge/state.delete": async | trappable,
        default: trappable,
    },
    exports: { default: async },
});

pub use wedge::edge::types::{Message as WitMessage, SendError as WitSendError};
