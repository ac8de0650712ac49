//! The runtime's port to the hub. Messages routed to `$upstream` are appended to the durable
//! outbox (`wedge-store`); each upstream drains the outbox in order and acknowledges what the hub
//! took. The local hub, IoT Hub and MQTT upstreams implement [`Upstream`].

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::message::{Message, SendError};

/// A message routed to `$upstream`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamMessage {
    /// The module that sent it.
    pub module: String,
    /// The output it was sent on.
    pub output: String,
    /// The message.
    pub message: Message,
    /// When the host accepted it.
    pub enqueued: SystemTime,
}

/// Where `$upstream` telemetry and reported properties go.
#[async_trait::async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// Whether this upstream can carry `message` at all (for example IoT Hub's size limit,
    /// which counts the property bag). Checked before the message is stored, so that the module
    /// hears about it and the outbox never holds a message that can never leave.
    ///
    /// # Errors
    /// [`SendError::TooLarge`] or [`SendError::Invalid`] saying why.
    fn admit(&self, message: &UpstreamMessage) -> Result<(), SendError>;

    /// Merges `patch` (a JSON object) into the reported properties of `module`.
    async fn report(&self, module: &str, patch: serde_json::Value) -> Result<(), String>;
}

/// The outbox record's header: everything but the body, as one JSON line.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RecordHeader {
    module: String,
    output: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    properties: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_encoding: Option<String>,
    enqueued_ms: u64,
}

impl UpstreamMessage {
    /// The message as an outbox record: a JSON header line, then the body bytes as they are
    /// (no base64: bodies are most of the bytes).
    pub fn to_record(&self) -> Vec<u8> {
        let header = RecordHeader {
            module: self.module.clone(),
            output: self.output.clone(),
            properties: self.message.properties.clone(),
            content_type: self.message.content_type.clone(),
            content_encoding: self.message.content_encoding.clone(),
            enqueued_ms: self
                .enqueued
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let mut record = serde_json::to_vec(&header).expect("a header always serialises");
        record.push(b'\n');
        record.extend_from_slice(&self.message.body);
        record
    }

    /// The message of an outbox record made by [`UpstreamMessage::to_record`].
    ///
    /// # Errors
    /// The record is not one (a message naming what is wrong).
    pub fn from_record(record: &[u8]) -> Result<UpstreamMessage, String> {
        let newline = record
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("outbox record without a header line")?;
        let header: RecordHeader = serde_json::from_slice(&record[..newline])
            .map_err(|e| format!("outbox record header: {e}"))?;
        Ok(UpstreamMessage {
            module: header.module,
            output: header.output,
            message: Message {
                body: record[newline + 1..].to_vec(),
                properties: header.properties,
                content_type: header.content_type,
                content_encoding: header.content_encoding,
            },
            enqueued: SystemTime::UNIX_EPOCH + Duration::from_millis(header.enqueued_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_binary_bodies() {
        let message = UpstreamMessage {
            module: "sensor".into(),
            output: "readings".into(),
            message: Message {
                body: vec![0, b'\n', 0xff, b'{'],
                properties: vec![("unit".into(), "°C\n".into())],
                content_type: Some("application/octet-stream".into()),
                content_encoding: None,
            },
            enqueued: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123),
        };
        let record = message.to_record();
        assert_eq!(UpstreamMessage::from_record(&record), Ok(message));
        assert!(UpstreamMessage::from_record(b"no header").is_err());
        assert!(UpstreamMessage::from_record(b"{}\nbody").is_err());
    }
}
