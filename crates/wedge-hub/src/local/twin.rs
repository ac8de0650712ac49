//! The local twin document: desired and reported properties, with `$version`s like IoT Hub's.
//!
//! Shape (the part under `modules` mirrors what the IoT Hub upstream reads from
//! `desired.wedge.modules`):
//! ```json
//! { "desired":  { "$version": 3, "modules": { "filter": { "threshold": 25 } } },
//!   "reported": { "$version": 7, "modules": { "filter": { "threshold": 25 } } } }
//! ```

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use wedge_runtime::json::merge_patch;

/// The twin document. Pure data: persistence is the hub's business.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinDocument(Value);

impl Default for TwinDocument {
    fn default() -> Self {
        TwinDocument(json!({
            "desired": { "$version": 0, "modules": {} },
            "reported": { "$version": 0, "modules": {} },
        }))
    }
}

impl TwinDocument {
    /// Reads a document, checking its shape.
    ///
    /// # Errors
    /// A message naming what is missing or of the wrong type.
    pub fn from_value(value: Value) -> Result<Self, String> {
        for side in ["desired", "reported"] {
            let section = value.get(side).ok_or_else(|| format!("missing `{side}`"))?;
            if !section.get("modules").is_some_and(Value::is_object) {
                return Err(format!("`{side}.modules` must be an object"));
            }
            if !section.get("$version").is_some_and(Value::is_u64) {
                return Err(format!("`{side}.$version` must be a number"));
            }
        }
        Ok(TwinDocument(value))
    }

    /// The whole document.
    pub fn value(&self) -> &Value {
        &self.0
    }

    fn modules(&self, side: &str) -> &Map<String, Value> {
        self.0[side]["modules"]
            .as_object()
            .expect("checked in from_value")
    }

    /// The desired overlay of every module.
    pub fn desired_modules(&self) -> BTreeMap<String, Value> {
        self.modules("desired")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The desired overlay of `module` (`{}` if none).
    pub fn desired(&self, module: &str) -> Value {
        self.modules("desired")
            .get(module)
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    /// Replaces the desired overlay of `module` and bumps the desired `$version`.
    pub fn set_desired(&mut self, module: &str, overlay: Value) {
        self.0["desired"]["modules"][module] = overlay;
        bump(&mut self.0["desired"]["$version"]);
    }

    /// Merges `patch` into `module`'s reported properties and bumps the reported `$version`.
    pub fn report(&mut self, module: &str, patch: &Value) {
        merge_patch(&mut self.0["reported"]["modules"][module], patch);
        bump(&mut self.0["reported"]["$version"]);
    }
}

fn bump(version: &mut Value) {
    *version = json!(version.as_u64().unwrap_or(0) + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_and_reported_keep_versions() {
        let mut twin = TwinDocument::default();
        let mut overlay = twin.desired("filter");
        merge_patch(&mut overlay, &json!({"threshold": 25}));
        twin.set_desired("filter", overlay);
        twin.report("filter", &json!({"threshold": 25, "x": 1}));
        twin.report("filter", &json!({"x": null}));
        assert_eq!(twin.desired("filter"), json!({"threshold": 25}));
        assert_eq!(twin.value()["desired"]["$version"], 1);
        assert_eq!(twin.value()["reported"]["$version"], 2);
        assert_eq!(
            twin.value()["reported"]["modules"]["filter"],
            json!({"threshold": 25})
        );
        assert_eq!(TwinDocument::from_value(twin.value().clone()), Ok(twin));
    }

    #[test]
    fn malformed_documents_are_named() {
        let err = TwinDocument::from_value(json!({"desired": {"$version": 1, "modules": []}}))
            .unwrap_err();
        assert!(err.contains("desired.modules"), "{err}");
    }
}
