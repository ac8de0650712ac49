//! Host bindings for the `wedge:edge` WIT package (the one `bindgen!` of the crate).

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "edge-module",
    imports: {
        // These await the router and the upstream; the rest answer from the store's data.
        "wedge:edge/telemetry.send": async | trappable,
        "wedge:edge/twin.report": async | trappable,
        default: trappable,
    },
    exports: { default: async },
});

pub use wedge::edge::types::{Message as WitMessage, SendError as WitSendError};
