//! The module's configuration as passed by the host.

use serde::de::DeserializeOwned;

/// A module's configuration: the JSON object the host passes to `init` and `on-config`, also
/// returned by [`crate::twin::desired`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    value: serde_json::Value,
}

impl Config {
    /// Parses the JSON text the host passed. Empty text counts as `{}` so a module without any
    /// configuration still gets an object.
    pub fn from_json(s: &str) -> Result<Config, String> {
        if s.trim().is_empty() {
            return Ok(Config {
                value: serde_json::Value::Object(Default::default()),
            });
        }
        serde_json::from_str(s)
            .map(|value| Config { value })
            .map_err(|e| format!("configuration is not valid JSON: {e}"))
    }

    /// Deserialises the configuration into `T`. The error names the offending field, for
    /// example ``config field `temperature.min`: invalid type: string "x", expected f64``.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        crate::__private::from_value(&self.value, "config")
    }

    /// The configuration as untyped JSON.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }
}

impl From<serde_json::Value> for Config {
    fn from(value: serde_json::Value) -> Self {
        Config { value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)] // Only the error path is exercised.
    struct Range {
        min: f64,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Settings {
        temperature: Range,
    }

    #[test]
    fn empty_text_is_an_empty_object() {
        assert_eq!(
            Config::from_json("  ").unwrap().value(),
            &serde_json::json!({})
        );
    }

    #[test]
    fn invalid_json_is_an_error() {
        let err = Config::from_json("{").unwrap_err();
        assert!(err.starts_with("configuration is not valid JSON"), "{err}");
    }

    #[test]
    fn parse_errors_name_the_field() {
        let config = Config::from_json(r#"{"temperature": {"min": "x"}}"#).unwrap();
        let err = config.parse::<Settings>().unwrap_err();
        assert!(err.contains("`temperature.min`"), "{err}");
        let config = Config::from_json(r#"{"temperature": {}}"#).unwrap();
        let err = config.parse::<Settings>().unwrap_err();
        assert!(err.contains("missing field `min`"), "{err}");
    }
}
