//! The generic MQTT upstream: any MQTT 3.1.1 broker (Mosquitto, EMQX, HiveMQ, ...), over TLS or
//! plain TCP, with username and password. Telemetry bodies are published at QoS 1 on a topic
//! made from a template; a retained JSON document on an optional config topic overlays module
//! configuration as the IoT Hub twin's desired properties do (same shape:
//! `{"wedge": {"modules": {"<name>": {"config": {...}}}}}`), and the reported state (the same
//! document IoT Hub's reported properties hold) is published retained on an optional topic.
//!
//! MQTT 3.1.1 has no message properties: only the body travels. The topic carries the module
//! and output.

mod protocol;
mod version;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use wedge_core::TopicTemplate;
use wedge_core::{SendError, Upstream, UpstreamMessage};

use crate::Drain;
use crate::iothub::twin::properties_patch;
use crate::link::{self, CaFileError, Cloud, HubEvents, LinkHandle, LinkStatus};
use protocol::{Command, MqttProtocol};

/// How to reach the broker and which topics to use.
#[derive(Clone)]
pub struct MqttUpstreamOptions {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT over TLS (server certificate checked against the public roots and `ca_file`).
    pub tls: bool,
    /// A PEM file of CA certificates trusted in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// The device's name in topics (`{device}`).
    pub device: String,
    /// The MQTT client id.
    pub client_id: String,
    /// Username and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// Where telemetry goes.
    pub telemetry_topic: TopicTemplate,
    /// A topic whose retained JSON document overlays module configuration.
    pub config_topic: Option<String>,
    /// A topic the reported state is published on, retained.
    pub reported_topic: Option<String>,
}

impl std::fmt::Debug for MqttUpstreamOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttUpstreamOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("device", &self.device)
            .field("client_id", &self.client_id)
            .field("username", &self.credentials.as_ref().map(|(user, _)| user))
            .field("telemetry_topic", &self.telemetry_topic)
            .field("config_topic", &self.config_topic)
            .field("reported_topic", &self.reported_topic)
            .finish_non_exhaustive()
    }
}

/// The handle: an [`Upstream`] for the runtime. Cheap to share.
pub struct MqttUpstream {
    device: String,
    telemetry_topic: TopicTemplate,
    link: LinkHandle<Command>,
}

impl MqttUpstream {
    /// Starts the connection task, which sends what `drain` holds. Returns the handle and the
    /// events for the host (desired configuration from the config topic; no methods or C2D).
    ///
    /// # Errors
    /// The CA file is unusable.
    pub fn start(
        options: MqttUpstreamOptions,
        drain: Drain,
    ) -> Result<(MqttUpstream, HubEvents), CaFileError> {
        let tls = match options.tls {
            true => Some(Arc::new(link::tls::client_config(
                options.ca_file.as_deref(),
            )?)),
            false => None,
        };
        let (parts, events) = link::parts();
        let protocol = MqttProtocol::new(
            options.clone(),
            tls,
            parts.to_host.clone(),
            parts.status.clone(),
        );
        let handle = MqttUpstream {
            device: options.device,
            telemetry_topic: options.telemetry_topic,
            link: link::start(protocol, parts, drain),
        };
        Ok((handle, events))
    }
}

impl Cloud for MqttUpstream {
    fn kind(&self) -> &'static str {
        "mqtt"
    }

    fn report_raw(&self, patch: Value) {
        self.link.report_raw(patch, Command::Report);
    }

    fn status(&self) -> LinkStatus {
        self.link.status()
    }
}

#[async_trait::async_trait]
impl Upstream for MqttUpstream {
    fn admit(&self, message: &UpstreamMessage) -> Result<(), SendError> {
        self.telemetry_topic
            .render(&self.device, &message.module, &message.output)
            .map(drop)
            .map_err(|e| SendError::Invalid(e.to_string()))
    }

    /// Waits only for the link to merge the patch (or refuse it), not for the broker.
    async fn report(&self, module: &str, patch: Value) -> Result<(), String> {
        self.link
            .report(properties_patch(module, patch), Command::Report)
            .await
    }
}
