//! The module's view of the device twin.

use crate::Config;
use crate::bindings::wedge::edge::twin;

/// The module's current configuration, the same object `on-config` last received.
///
/// The host always sends a JSON object; if it ever did not, this logs the problem and returns
/// an empty configuration rather than fail every caller.
pub fn desired() -> Config {
    Config::from_json(&twin::desired()).unwrap_or_else(|e| {
        crate::log::error(&format!("twin desired properties: {e}"));
        Config::from(serde_json::Value::Object(Default::default()))
    })
}

/// Merges `patch` (a JSON object, RFC 7396 merge patch: `null` removes a key) into the module's
/// reported properties. Fails if `patch` is not an object or is larger than 8 KiB.
pub fn report(patch: &serde_json::Value) -> Result<(), String> {
    twin::report(&patch.to_string())
}
