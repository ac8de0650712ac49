//! The runtime's port to the hub. The local hub, IoT Hub and MQTT upstreams implement it.

use std::time::SystemTime;

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
    /// Accepts one message for the hub. Returns once the upstream has taken responsibility for
    /// it (for a durable upstream: once it is stored).
    async fn send(&self, message: UpstreamMessage) -> Result<(), SendError>;

    /// Merges `patch` (a JSON object) into the reported properties of `module`.
    async fn report(&self, module: &str, patch: serde_json::Value) -> Result<(), String>;
}
