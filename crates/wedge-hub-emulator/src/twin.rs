//! A twin's properties section and the JSON merge-patch rules IoT Hub applies to it.
//!
//! Facts used (Microsoft's MQTT page and Azure SDK for C):
//! - twin GET answers with `{"desired": {..., "$version": n}, "reported": {..., "$version": m}}`;
//! - a reported patch "updates or adds" each member and a member set to `null` deletes it;
//!   the answer carries the new reported `$version` in the topic;
//! - desired-change notifications carry the patch with the new `"$version"` inside the body.
//!
//! Versions start at 1: Microsoft's mosquitto sample shows a fresh twin answering
//! `{"desired":{"$version":1},"reported":{"temperature":32,"$version":2}}` after one patch.

use serde_json::{Map, Value};

/// The name IoT Hub gives the version member inside each properties collection.
const VERSION: &str = "$version";

/// One properties collection (desired or reported) with its version.
#[derive(Debug, Clone)]
pub(crate) struct Collection {
    properties: Map<String, Value>,
    version: u64,
}

impl Default for Collection {
    fn default() -> Self {
        Collection {
            properties: Map::new(),
            version: 1,
        }
    }
}

impl Collection {
    /// Merges `patch` (RFC 7386 merge-patch) and bumps the version, returning the new one.
    /// `$version` in a patch is ignored: only the hub assigns versions.
    pub(crate) fn apply(&mut self, patch: &Map<String, Value>) -> u64 {
        for (key, value) in patch.iter().filter(|(k, _)| *k != VERSION) {
            merge_member(&mut self.properties, key, value);
        }
        self.version += 1;
        self.version
    }

    /// The collection as IoT Hub shows it: the properties plus `"$version"`.
    pub(crate) fn to_json(&self) -> Value {
        let mut doc = self.properties.clone();
        doc.insert(VERSION.to_owned(), self.version.into());
        Value::Object(doc)
    }
}

/// The properties section of one identity's twin.
#[derive(Debug, Clone, Default)]
pub(crate) struct Twin {
    pub(crate) desired: Collection,
    pub(crate) reported: Collection,
}

impl Twin {
    /// The body of a twin GET response.
    pub(crate) fn document(&self) -> Value {
        serde_json::json!({
            "desired": self.desired.to_json(),
            "reported": self.reported.to_json(),
        })
    }
}

fn merge_member(target: &mut Map<String, Value>, key: &str, patch: &Value) {
    match patch {
        Value::Null => {
            target.remove(key);
        }
        Value::Object(members) => {
            let slot = target
                .entry(key.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(inner) = slot {
                for (k, v) in members {
                    merge_member(inner, k, v);
                }
            }
        }
        other => {
            target.insert(key.to_owned(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn merge_patch_adds_replaces_nests_and_deletes() {
        let mut c = Collection::default();
        assert_eq!(
            c.apply(&object(
                json!({"a": 1, "n": {"x": 1, "y": 2}, "$version": 99})
            )),
            2
        );
        assert_eq!(
            c.apply(&object(
                json!({"a": null, "n": {"y": null, "z": 3}, "b": [1]})
            )),
            3
        );
        assert_eq!(
            c.to_json(),
            json!({"n": {"x": 1, "z": 3}, "b": [1], "$version": 3})
        );
        let twin = Twin::default();
        assert_eq!(
            twin.document(),
            json!({"desired": {"$version": 1}, "reported": {"$version": 1}})
        );
    }
}
