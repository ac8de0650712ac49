//! The local twin document: desired and reported properties, with `$version`s like IoT Hub's,
//! and wedge's part of each under `wedge`, in the same shape as on IoT Hub:
//! ```json
//! { "desired":  { "$version": 3, "wedge": { "modules": { "filter": { "source": "…",
//!                                                                    "config": { "threshold": 25 } } } } },
//!   "reported": { "$version": 7, "wedge": { "lastDesiredVersion": 3,
//!                                           "modules": { "filter": { "runtimeStatus": "running" } } } } }
//! ```

use serde_json::{Map, Value, json};
use wedge_core::json::{merge_patch, merged};

/// The twin document. Pure data: persistence is the hub's business.
#[derive(Debug, Clone, PartialEq)]
pub struct TwinDocument(Value);

impl Default for TwinDocument {
    fn default() -> Self {
        TwinDocument(json!({
            "desired": { "$version": 0, "wedge": {} },
            "reported": { "$version": 0, "wedge": {} },
        }))
    }
}

impl TwinDocument {
    /// Reads a document, checking its shape. A document of wedge 0.1's first shape
    /// (`desired.modules.<m>` = config, `reported.modules.<m>` = properties) is moved to the
    /// current one.
    ///
    /// # Errors
    /// A message naming what is missing or of the wrong type.
    pub fn from_value(mut value: Value) -> Result<Self, String> {
        for (side, member) in [("desired", "config"), ("reported", "properties")] {
            let section = value
                .get_mut(side)
                .and_then(Value::as_object_mut)
                .ok_or_else(|| format!("missing `{side}`"))?;
            if !section.get("$version").is_some_and(Value::is_u64) {
                return Err(format!("`{side}.$version` must be a number"));
            }
            if let Some(old) = section.remove("modules") {
                let Value::Object(old) = old else {
                    return Err(format!("`{side}.modules` must be an object"));
                };
                let modules: Map<String, Value> = old
                    .into_iter()
                    .map(|(name, value)| (name, json!({ member: value })))
                    .collect();
                section.insert("wedge".into(), json!({ "modules": modules }));
            }
            if !section.get("wedge").is_some_and(Value::is_object) {
                return Err(format!("`{side}.wedge` must be an object"));
            }
        }
        Ok(TwinDocument(value))
    }

    /// The whole document.
    pub fn value(&self) -> &Value {
        &self.0
    }

    /// `desired.wedge`: the desired deployment.
    pub fn desired_wedge(&self) -> &Value {
        &self.0["desired"]["wedge"]
    }

    /// The desired `$version`.
    pub fn desired_version(&self) -> u64 {
        self.0["desired"]["$version"].as_u64().unwrap_or(0)
    }

    /// Merges `patch` into `desired.wedge` and bumps the desired `$version`; returns the
    /// previous `desired.wedge`.
    pub fn patch_desired(&mut self, patch: &Value) -> Value {
        let previous = self.desired_wedge().clone();
        self.set_desired(merged(&previous, patch));
        previous
    }

    /// Replaces `desired.wedge` and bumps the desired `$version`.
    pub fn set_desired(&mut self, wedge: Value) {
        self.0["desired"]["wedge"] = wedge;
        bump(&mut self.0["desired"]["$version"]);
    }

    /// Gives `desired.wedge` the version `version` (to continue after a version applied before
    /// the file lost its history).
    pub fn renumber_desired(&mut self, version: u64) {
        self.0["desired"]["$version"] = json!(version);
    }

    /// Merges `patch` into the reported section and bumps the reported `$version`.
    pub fn report(&mut self, patch: &Value) {
        let mut reported = self.0["reported"].take();
        merge_patch(&mut reported, patch);
        self.0["reported"] = reported;
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
        let before = twin.patch_desired(&json!({"modules": {"filter": {"config": {"t": 25}}}}));
        assert_eq!(before, json!({}));
        twin.report(&json!({"wedge": {"modules": {"filter": {"properties": {"t": 25, "x": 1}}}}}));
        twin.report(&json!({"wedge": {"modules": {"filter": {"properties": {"x": null}}}}}));
        assert_eq!(twin.desired_wedge()["modules"]["filter"]["config"]["t"], 25);
        assert_eq!(twin.desired_version(), 1);
        assert_eq!(twin.value()["reported"]["$version"], 2);
        assert_eq!(
            twin.value()["reported"]["wedge"]["modules"]["filter"]["properties"],
            json!({"t": 25})
        );
        assert_eq!(TwinDocument::from_value(twin.value().clone()), Ok(twin));
    }

    #[test]
    fn the_first_shape_is_moved_to_the_current_one() {
        let old = json!({
            "desired": {"$version": 3, "modules": {"filter": {"threshold": 25}}},
            "reported": {"$version": 4, "modules": {"filter": {"threshold": 25}}},
        });
        let twin = TwinDocument::from_value(old).unwrap();
        assert_eq!(
            twin.desired_wedge(),
            &json!({"modules": {"filter": {"config": {"threshold": 25}}}})
        );
        assert_eq!(twin.desired_version(), 3);
        assert_eq!(
            twin.value()["reported"]["wedge"]["modules"]["filter"]["properties"]["threshold"],
            25
        );
    }

    #[test]
    fn malformed_documents_are_named() {
        let err = TwinDocument::from_value(json!({"desired": {"$version": 1, "modules": []}}))
            .unwrap_err();
        assert!(err.contains("desired.modules"), "{err}");
        let err =
            TwinDocument::from_value(json!({"desired": {"$version": 1, "wedge": 1}})).unwrap_err();
        assert!(err.contains("desired.wedge"), "{err}");
    }
}
