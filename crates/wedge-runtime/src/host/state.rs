//! `wedge:edge/state`: a small key-value store per module, on disk in the host's store
//! (`wedge-store`), so it outlives module restarts and host restarts. The quota and key limits
//! are the store's ([`wedge_store::ModuleState`]); their error texts are what the guest sees.

use crate::bindings::wedge::edge::state::Host;

use super::HostState;

impl Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        match self.module.state.get(&key) {
            Ok(value) => Ok(value),
            // The interface has no error for `get`; an unreadable store must not look like an
            // absent key (the module would start over), so the call traps and the module is
            // restarted with backoff until the store reads again.
            Err(e) => Err(wasmtime::Error::msg(format!("state store: {e}"))),
        }
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .module
            .state
            .set(&key, value)
            .await
            .map_err(|e| e.to_string()))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.module
            .state
            .delete(&key)
            .await
            .map_err(|e| wasmtime::Error::msg(format!("state store: {e}")))
    }
}
