//! The JSON form of one telemetry message as the local hub stores it (one per line of
//! `telemetry.jsonl`) and `wedge tail` prints it.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use wedge_core::UpstreamMessage;

/// One stored telemetry message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TelemetryRecord {
    /// The message id (stable across resends: a line repeated after a crash has the same one).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message_id: Option<String>,
    /// The module that sent it.
    pub module: String,
    /// The output it was sent on.
    pub output: String,
    /// When the host accepted it, RFC 3339 with milliseconds.
    pub enqueued_time: String,
    /// Application properties.
    pub properties: BTreeMap<String, String>,
    /// MIME type of the body.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_type: Option<String>,
    /// Encoding of the body.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_encoding: Option<String>,
    /// The body: as text if it is UTF-8, otherwise base64 (see `body_encoding`).
    pub body: String,
    /// `utf-8` or `base64`.
    pub body_encoding: String,
}

impl TelemetryRecord {
    /// The record of `message`.
    pub fn new(message: &UpstreamMessage) -> Self {
        let (body, body_encoding) = match std::str::from_utf8(&message.message.body) {
            Ok(text) => (text.to_string(), "utf-8"),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&message.message.body),
                "base64",
            ),
        };
        TelemetryRecord {
            message_id: None,
            module: message.module.clone(),
            output: message.output.clone(),
            enqueued_time: humantime::format_rfc3339_millis(message.enqueued).to_string(),
            properties: message.message.properties.iter().cloned().collect(),
            content_type: message.message.content_type.clone(),
            content_encoding: message.message.content_encoding.clone(),
            body,
            body_encoding: body_encoding.to_string(),
        }
    }

    /// The body as JSON, if it is JSON text.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        (self.body_encoding == "utf-8")
            .then(|| serde_json::from_str(&self.body).ok())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};
    use wedge_core::Message;

    fn upstream(body: &[u8]) -> UpstreamMessage {
        UpstreamMessage {
            module: "m".into(),
            output: "o".into(),
            message: Message {
                body: body.to_vec(),
                properties: vec![("units".into(), "celsius".into())],
                content_type: Some("application/json".into()),
                content_encoding: None,
            },
            enqueued: SystemTime::UNIX_EPOCH + Duration::from_millis(1_500),
        }
    }

    #[test]
    fn text_bodies_stay_text_and_binary_becomes_base64() {
        let text = TelemetryRecord::new(&upstream(br#"{"t":1}"#));
        assert_eq!(text.body_encoding, "utf-8");
        assert_eq!(text.body_json(), Some(serde_json::json!({"t": 1})));
        assert_eq!(text.enqueued_time, "1970-01-01T00:00:01.500Z");
        assert_eq!(text.properties["units"], "celsius");
        let binary = TelemetryRecord::new(&upstream(&[0xff, 0x00]));
        assert_eq!(
            (binary.body.as_str(), binary.body_encoding.as_str()),
            ("/wA=", "base64")
        );
    }
}
