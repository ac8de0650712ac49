//! Builds wedge modules written in languages other than Rust (Python with componentize-py,
//! JavaScript with componentize-js) from source, with each language's component toolchain
//! pinned and installed under the workspace's `target/tools/` when missing (so a machine with
//! Rust, Python and Node.js needs nothing installed by hand).
//!
//! Used by `cargo xtask build` (the example modules, for the demo and users) and by
//! `wedge-test-artifacts`' build script (the components the tests run): one way to build them.
//!
//! Rust guests are not here: they are one `cargo build --target wasm32-wasip2` of the
//! `modules/` workspace.

#![deny(missing_docs)]

mod js;
mod python;
mod tool;

pub use js::{COMPONENTIZE_JS_VERSION, JavaScript};
pub use python::{COMPONENTIZE_PY_VERSION, Python};
pub use tool::Error;

use std::path::Path;

/// The languages modules can be written in besides Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `app.py`, built with componentize-py.
    Python,
    /// `app.js`, built with componentize-js.
    JavaScript,
}

/// Builds the module in `module_dir` of the workspace at `workspace`, written in `language`,
/// into the component `out`, installing the language's tool first when needed.
///
/// # Errors
/// The tool cannot be installed or refuses the module (see [`Python::build`],
/// [`JavaScript::build`]).
pub fn build(
    workspace: &Path,
    language: Language,
    module_dir: &Path,
    out: &Path,
) -> Result<(), Error> {
    match language {
        Language::Python => Python::new(workspace).build(module_dir, out),
        Language::JavaScript => JavaScript::new(workspace).build(module_dir, out),
    }
}
