//! `wasi:config/store`: the module's active configuration (what `init` and `on-config`
//! receive, and `twin.desired` returns) as flat string keys, for components written against
//! the standard interface. Nested objects are joined with `.` (`{"a": {"b": 1}}` is `a.b` =
//! `1`); strings are themselves; numbers, booleans and arrays are their JSON text; `null` is
//! absent. Read at each call, so a live configuration change is seen at once.

use serde_json::Value;

use crate::bindings::wasi::config::store::{Error, Host};

use super::HostState;

/// The flat keys of `config`, in key order.
pub(crate) fn flatten(config: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        match value {
            Value::Null => {}
            Value::Object(map) => {
                for (key, value) in map {
                    let key = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&key, value, out);
                }
            }
            Value::String(s) => out.push((prefix.to_string(), s.clone())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", config, &mut out);
    out
}

impl Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, Error>> {
        let config = self.module.config();
        Ok(Ok(flatten(&config)
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, Error>> {
        Ok(Ok(flatten(&self.module.config())))
    }
}

#[cfg(test)]
mod tests {
    use super::flatten;
    use serde_json::json;

    #[test]
    fn nested_objects_join_with_dots_and_scalars_are_text() {
        let config = json!({
            "threshold": 30.5,
            "field": "temperature",
            "on": true,
            "gone": null,
            "units": {"temperature": "celsius", "limits": {"max": 40}},
            "tags": ["a", "b"],
        });
        assert_eq!(
            flatten(&config),
            [
                ("field", "temperature"),
                ("on", "true"),
                ("tags", "[\"a\",\"b\"]"),
                ("threshold", "30.5"),
                ("units.limits.max", "40"),
                ("units.temperature", "celsius"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }
}
