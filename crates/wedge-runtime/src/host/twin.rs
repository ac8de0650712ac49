//! `wedge:edge/twin`: a module reads its configuration and reports properties.

use crate::bindings::wedge::edge::twin::Host;

use super::HostState;

/// Largest reported-properties patch one call may send (IoT Hub allows 32 KiB for a whole
/// reported document shared by all modules, so one module gets a fraction).
pub const MAX_REPORT_BYTES: usize = 8 * 1024;

impl Host for HostState {
    fn desired(&mut self) -> wasmtime::Result<String> {
        Ok(self.module.config().to_string())
    }

    async fn report(&mut self, patch: String) -> wasmtime::Result<Result<(), String>> {
        if patch.len() > MAX_REPORT_BYTES {
            return Ok(Err(format!(
                "reported patch is {} bytes, at most {MAX_REPORT_BYTES} allowed",
                patch.len()
            )));
        }
        let value: serde_json::Value = match serde_json::from_str(&patch) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => return Ok(Err("reported patch must be a JSON object".into())),
            Err(e) => return Ok(Err(format!("reported patch is not JSON: {e}"))),
        };
        let module = self.module.clone();
        Ok(module.upstream.report(&module.name, value).await)
    }
}
