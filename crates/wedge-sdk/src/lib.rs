//! Write wedge edge modules in Rust.
//!
//! A module is a type implementing [`Module`] plus one [`export!`] invocation; the crate is
//! built as a `cdylib` for `wasm32-wasip2`, which yields a WebAssembly component the wedge host
//! runs. Everything a module can ask of the host is in [`telemetry`], [`twin`], [`log`] and
//! [`state`]. A module that serves (a TCP server, a loop of its own) also implements
//! [`Service`] and is exported with `export!(MyModule, service)`.
//!
//! ```no_run
//! use serde::Deserialize;
//! use wedge_sdk::{Config, Message, Module};
//!
//! #[derive(Deserialize)]
//! struct Settings {
//!     prefix: String,
//! }
//!
//! struct Tagger {
//!     settings: Settings,
//! }
//!
//! impl Module for Tagger {
//!     fn init(config: Config) -> Result<Self, String> {
//!         Ok(Tagger { settings: config.parse()? })
//!     }
//!
//!     fn on_message(&mut self, input: &str, msg: Message) -> Result<(), String> {
//!         let msg = msg.with_property("tagged-by", format!("{}/{input}", self.settings.prefix));
//!         wedge_sdk::telemetry::send("out", &msg).map_err(|e| e.to_string())
//!     }
//! }
//!
//! wedge_sdk::export!(Tagger);
//! # fn main() {}
//! ```
//!
//! Off `wasm32` the crate still compiles (so workspaces can build and test it natively), but
//! every call into the host panics there: only [`Config`] and [`Message`] helpers are usable.

#[doc(hidden)]
pub mod __private;
#[doc(hidden)]
pub mod bindings;
mod config;
mod export;
pub mod log;
mod message;
mod module;
mod service;
pub mod state;
pub mod telemetry;
pub mod twin;

pub use bindings::exports::wedge::edge::module::MethodResponse;
pub use bindings::wedge::edge::types::{Message, SendError};
pub use config::Config;
pub use module::Module;
pub use service::Service;
