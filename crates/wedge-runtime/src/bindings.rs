//! Host bindings for the `wedge:edge` WIT package (the one `bindgen!` of the crate).
//!
//! The world is `edge-module-wasi`: `edge-module` plus the standard `wasi:config` and
//! `wasi:keyvalue` imports, so one linker serves modules written against either. A component
//! needs to import only what it uses.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "edge-module-wasi",
    imports: {
        // These await the router, the upstream or the disk; the rest answer from memory (or,
        // for `state.get`, one indexed read).
        "wedge:edge/telemetry.send": async | trappable,
        "wedge:edge/telemetry.send-batch": async | trappable,
        "wedge:edge/twin.report": async | trappable,
        "wedge:edge/state.set": async | trappable,
        "wedge:edge/state.delete": async | trappable,
        "wasi:keyvalue/store.[method]bucket.set": async | trappable,
        "wasi:keyvalue/store.[method]bucket.delete": async | trappable,
        "wasi:keyvalue/atomics.increment": async | trappable,
        "wasi:keyvalue/batch.set-many": async | trappable,
        "wasi:keyvalue/batch.delete-many": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "wasi:keyvalue/store.bucket": crate::host::keyvalue::Bucket,
    },
});

/// The world's bindings under the names the rest of the crate uses: every module is an
/// `edge-module`; the WASI imports are extras it may use.
pub use EdgeModuleWasi as EdgeModule;
pub use EdgeModuleWasiPre as EdgeModulePre;
pub use wedge::edge::types::{Message as WitMessage, SendError as WitSendError};
