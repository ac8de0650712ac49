//! Test guest: traps in `on-message`, to exercise the host's crash handling.

use wedge_sdk::{Config, Message, Module};

struct Trapper;

impl Module for Trapper {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Trapper)
    }

    fn on_message(&mut self, _input: &str, _msg: Message) -> Result<(), String> {
        // With `panic = "abort"` a panic is a wasm `unreachable`, i.e. a trap the host sees.
        panic!("trapper: trap on purpose")
    }
}

wedge_sdk::export!(Trapper);
