//! Test guest for benchmarks: a deliberately large component (see `build.rs`), standing in for
//! an interpreter-sized module (wedge cannot build Python components yet). The `eval` method
//! runs the generated function chosen by its payload (a number), so all of them are reachable.

use wedge_sdk::{Config, MethodResponse, Module};

include!(concat!(env!("OUT_DIR"), "/generated.rs"));

struct Big;

impl Module for Big {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Big)
    }

    fn on_method(&mut self, name: &str, payload: &str) -> Result<MethodResponse, String> {
        if name != "eval" {
            return Err(format!("method `{name}` is not implemented"));
        }
        let n: u64 = payload.trim().parse().map_err(|e| format!("payload: {e}"))?;
        let f = FUNCTIONS[(n as usize) % FUNCTIONS.len()];
        Ok(MethodResponse {
            status: 200,
            payload: f(n).to_string(),
        })
    }
}

wedge_sdk::export!(Big);
