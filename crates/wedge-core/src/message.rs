//! Messages as the host handles them, and the limits the host enforces on them.

/// Largest body accepted by `telemetry.send`: IoT Hub's limit for one device-to-cloud message.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most application properties on one message.
pub const MAX_PROPERTIES: usize = 64;
/// Longest property key or value.
pub const MAX_PROPERTY_LEN: usize = 1024;
/// Longest `content-type` or `content-encoding` (they travel as properties too).
pub const MAX_CONTENT_FIELD_LEN: usize = 128;
/// Largest reported-properties patch an upstream sends at once: IoT Hub's limit for the whole
/// `properties/reported` section (32 KB), so no single patch can be refused for its size alone.
/// Also the cap of the MQTT upstream's retained reported document, which plays that section.
pub const MAX_REPORTED_BYTES: usize = 32 * 1024;
/// Largest direct-method payload, either way: IoT Hub's limit (128 KB).
pub const MAX_METHOD_PAYLOAD_BYTES: usize = 128 * 1024;

/// A message between modules or to the hub.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The payload.
    pub body: Vec<u8>,
    /// Application properties, in order.
    pub properties: Vec<(String, String)>,
    /// MIME type of the body.
    pub content_type: Option<String>,
    /// Encoding of the body.
    pub content_encoding: Option<String>,
}

/// Why a message was not accepted; what `telemetry.send` returns to the module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No route starts at this output.
    #[error("no route from output `{0}`")]
    NoRoute(String),
    /// Larger than the limit, in bytes.
    #[error("message larger than {0} bytes")]
    TooLarge(u32),
    /// A destination is full.
    #[error("destination full")]
    Full,
    /// Malformed.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl Message {
    /// Checks the host's limits: body size, content type and encoding length, property count
    /// and length, reserved `$` keys.
    ///
    /// # Errors
    /// [`SendError::TooLarge`] or [`SendError::Invalid`] naming the problem.
    pub fn validate(&self) -> Result<(), SendError> {
        if self.body.len() > MAX_BODY_BYTES {
            return Err(SendError::TooLarge(MAX_BODY_BYTES as u32));
        }
        if self.properties.len() > MAX_PROPERTIES {
            return Err(SendError::Invalid(format!(
                "{} properties, at most {MAX_PROPERTIES} allowed",
                self.properties.len()
            )));
        }
        for (name, field) in [
            ("content-type", &self.content_type),
            ("content-encoding", &self.content_encoding),
        ] {
            if field
                .as_ref()
                .is_some_and(|f| f.len() > MAX_CONTENT_FIELD_LEN)
            {
                return Err(SendError::Invalid(format!(
                    "{name} is longer than {MAX_CONTENT_FIELD_LEN} bytes"
                )));
            }
        }
        for (key, value) in &self.properties {
            if key.is_empty() || key.starts_with('$') {
                return Err(SendError::Invalid(format!(
                    "property key `{key}` is empty or reserved (starts with `$`)"
                )));
            }
            if key.len() > MAX_PROPERTY_LEN || value.len() > MAX_PROPERTY_LEN {
                return Err(SendError::Invalid(format!(
                    "property `{}` is longer than {MAX_PROPERTY_LEN} bytes",
                    truncate(key, 64)
                )));
            }
        }
        Ok(())
    }

    /// The value of the first property named `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced() {
        let ok = Message {
            body: vec![0; MAX_BODY_BYTES],
            ..Default::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let big = Message {
            body: vec![0; MAX_BODY_BYTES + 1],
            ..Default::default()
        };
        assert_eq!(
            big.validate(),
            Err(SendError::TooLarge(MAX_BODY_BYTES as u32))
        );
        let reserved = Message {
            properties: vec![("$.mid".into(), "x".into())],
            ..Default::default()
        };
        assert!(
            matches!(reserved.validate(), Err(SendError::Invalid(why)) if why.contains("$.mid"))
        );
        let long_type = Message {
            content_type: Some("x".repeat(MAX_CONTENT_FIELD_LEN + 1)),
            ..Default::default()
        };
        assert!(
            matches!(long_type.validate(), Err(SendError::Invalid(why)) if why.contains("content-type"))
        );
        let long_encoding = Message {
            content_encoding: Some("x".repeat(MAX_CONTENT_FIELD_LEN + 1)),
            ..Default::default()
        };
        assert!(long_encoding.validate().is_err());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
