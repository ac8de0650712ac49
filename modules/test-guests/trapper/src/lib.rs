//! Test guest: traps in `on-message`, or in `init` when its config says `{"trap-in-init":
//! true}`, to exercise the host's crash handling.

use wedge_sdk::{Config, Message, Module};

struct Trapper;

impl Module for Trapper {
    fn init(config: Config) -> Result<Self, String> {
        if config.value()["trap-in-init"] == true {
            panic!("trapper: trap in init on purpose")
        }
        Ok(Trapper)
    }

    fn on_message(&mut self, _input: &str, _msg: Message) -> Result<(), String> {
        // With `panic = "abort"` a panic is a wasm `unreachable`, i.e. a trap the host sees.
        panic!("trapper: trap on purpose")
    }
}

wedge_sdk::export!(Trapper);
