//! Constructors and accessors for [`Message`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Message;

impl Message {
    /// A message whose body is `value` as JSON, with content type `application/json` and content
    /// encoding `utf-8`.
    ///
    /// Serialising only fails for values JSON cannot represent (such as maps with non-string
    /// keys); that is a bug in the module, so rather than panic the body becomes `null` and the
    /// reason is logged. Use [`crate::telemetry::send_json`] to get the error instead.
    pub fn json<T: Serialize>(value: &T) -> Message {
        Message::try_json(value).unwrap_or_else(|e| {
            crate::log::error(&e);
            Message::with_body(b"null".to_vec(), "application/json")
        })
    }

    /// Like [`Message::json`] but returns the serialisation error.
    pub(crate) fn try_json<T: Serialize>(value: &T) -> Result<Message, String> {
        serde_json::to_vec(value)
            .map(|body| Message::with_body(body, "application/json"))
            .map_err(|e| format!("cannot encode message body as JSON: {e}"))
    }

    /// A message whose body is `s`, with content type `text/plain` and content encoding `utf-8`.
    pub fn text(s: &str) -> Message {
        Message::with_body(s.as_bytes().to_vec(), "text/plain")
    }

    /// Sets the application property `key` to `value`, replacing an existing property of that
    /// name (IoT Hub keeps one value per key) and otherwise appending it.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Message {
        let (key, value) = (key.into(), value.into());
        match self.properties.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.properties.push((key, value)),
        }
        self
    }

    /// The value of the first application property named `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Deserialises the body as JSON into `T`; the error says whether the body is not JSON or
    /// which field does not fit.
    pub fn body_json<T: DeserializeOwned>(&self) -> Result<T, String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body)
            .map_err(|e| format!("message body is not valid JSON: {e}"))?;
        crate::__private::from_value(&value, "message body")
    }

    fn with_body(body: Vec<u8>, content_type: &str) -> Message {
        Message {
            body,
            properties: Vec::new(),
            content_type: Some(content_type.to_string()),
            content_encoding: Some("utf-8".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_sets_body_and_content_headers() {
        let msg = Message::json(&json!({"a": 1}));
        assert_eq!(msg.body, br#"{"a":1}"#);
        assert_eq!(msg.content_type.as_deref(), Some("application/json"));
        assert_eq!(msg.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(
            msg.body_json::<serde_json::Value>().unwrap(),
            json!({"a": 1})
        );
    }

    #[test]
    fn properties_replace_and_append() {
        let msg = Message::text("hi")
            .with_property("a", "1")
            .with_property("b", "2")
            .with_property("a", "3");
        assert_eq!(
            msg.properties,
            [("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        assert_eq!(msg.property("a"), Some("3"));
        assert_eq!(msg.property("c"), None);
    }

    #[test]
    fn body_json_errors_say_what_is_wrong() {
        let err = Message::text("nope")
            .body_json::<serde_json::Value>()
            .unwrap_err();
        assert!(err.starts_with("message body is not valid JSON"), "{err}");
    }
}
