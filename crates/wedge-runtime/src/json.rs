//! JSON merge patch (RFC 7396), the one way wedge combines configuration and reported properties.

use serde_json::Value;

/// Applies `patch` to `target` as an RFC 7396 merge patch: objects merge key by key, `null`
/// removes a key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// `base` with `patch` merged in.
pub fn merged(base: &Value, patch: &Value) -> Value {
    let mut out = base.clone();
    merge_patch(&mut out, patch);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7396_examples() {
        let base = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        assert_eq!(
            merged(&base, &json!({"a": "z", "c": {"f": null}})),
            json!({"a": "z", "c": {"d": "e"}})
        );
        assert_eq!(
            merged(&json!({"a": [1]}), &json!({"a": {"b": 1}})),
            json!({"a": {"b": 1}})
        );
        assert_eq!(merged(&json!([1]), &json!({"a": 1})), json!({"a": 1}));
        assert_eq!(merged(&json!({"a": 1}), &json!("x")), json!("x"));
    }
}
