//! Builds wedge modules written in languages other than Rust, from source, with the tool each
//! language's component toolchain provides, installed under the workspace's `target/tools/`
//! when missing (so a fresh machine with Rust and Python needs nothing by hand).
//!
//! Used by `cargo xtask build` (the example modules, for the demo and users) and by
//! `wedge-test-artifacts`' build script (the components the tests run): one way to build them.
//!
//! Rust guests are not here: they are one `cargo build --target wasm32-wasip2` of the
//! `modules/` workspace.

#![deny(missing_docs)]

mod python;
mod tool;

pub use python::{COMPONENTIZE_PY_VERSION, Python};
pub use tool::Error;
