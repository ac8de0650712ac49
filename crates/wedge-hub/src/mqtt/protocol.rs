//! The generic MQTT upstream's side of the shared link.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wedge_core::UpstreamMessage;
use wedge_core::json::merge_patch;

use super::MqttUpstreamOptions;
use crate::link::{HubEvent, Protocol, Wire};

/// Requests from the handle.
pub(super) enum Command {
    Report(Value),
}

pub(super) struct MqttProtocol {
    options: MqttUpstreamOptions,
    tls: Option<Arc<rustls::ClientConfig>>,
    events: mpsc::Sender<HubEvent>,
    /// Counts config documents received: the "version" their acknowledgements carry.
    config_version: u64,
    /// The reported state, published whole (and retained) after every change.
    reported: Value,
}

impl MqttProtocol {
    pub(super) fn new(
        options: MqttUpstreamOptions,
        tls: Option<Arc<rustls::ClientConfig>>,
        events: mpsc::Sender<HubEvent>,
    ) -> Self {
        MqttProtocol {
            options,
            tls,
            events,
            config_version: 0,
            reported: json!({}),
        }
    }

    fn publish_reported(&self, wire: &mut Wire<'_>) -> Result<(), String> {
        match &self.options.reported_topic {
            Some(topic) => {
                wire.publish(topic.clone(), self.reported.to_string().into_bytes(), true)
            }
            None => Ok(()),
        }
    }

    /// A config document: the twin's desired shape. An empty payload (the retained document was
    /// cleared) clears every overlay; one that is not JSON is refused and reported.
    async fn on_config(&mut self, payload: &[u8], wire: &mut Wire<'_>) -> Result<(), String> {
        let document = match payload {
            [] => Ok(json!({})),
            bytes => serde_json::from_slice::<Value>(bytes).map_err(|e| e.to_string()),
        };
        let error = match document {
            Ok(document) if document.is_object() => {
                self.config_version += 1;
                let desired = document.get("wedge").cloned().unwrap_or_else(|| json!({}));
                let _ = self
                    .events
                    .send(HubEvent::Desired {
                        version: self.config_version,
                        desired,
                    })
                    .await;
                Value::Null
            }
            Ok(_) => json!("the config document is not a JSON object"),
            Err(e) => json!(format!("the config document is not JSON: {e}")),
        };
        if let Some(reason) = error.as_str() {
            tracing::warn!(topic = ?self.options.config_topic, "{reason}; keeping the current configuration");
        }
        // `null` removes an earlier error once a good document arrives.
        merge_patch(
            &mut self.reported,
            &json!({ "wedge": { "config-error": error } }),
        );
        self.publish_reported(wire)
    }
}

impl Protocol for MqttProtocol {
    type Command = Command;
    const PEER: &'static str = "MQTT broker";

    fn connect(&mut self) -> Result<(MqttOptions, Option<Duration>), String> {
        let o = &self.options;
        let mut options = MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
        if let Some((username, password)) = &o.credentials {
            options.set_credentials(username.clone(), password.clone());
        }
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        Ok((options, None))
    }

    fn telemetry_topic(
        &self,
        _message_id: &str,
        message: &UpstreamMessage,
    ) -> Result<String, String> {
        self.options
            .telemetry_topic
            .render(&self.options.device, &message.module, &message.output)
            .map_err(|e| e.to_string())
    }

    async fn on_connected(&mut self, wire: &mut Wire<'_>) -> Result<(), String> {
        if let Some(topic) = &self.options.config_topic {
            wire.subscribe(topic.clone())?;
        }
        if self.reported != json!({}) {
            self.publish_reported(wire)?;
        }
        Ok(())
    }

    async fn on_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        wire: &mut Wire<'_>,
    ) -> Result<(), String> {
        if self.options.config_topic.as_deref() == Some(topic) {
            self.on_config(payload, wire).await
        } else {
            tracing::warn!(topic, "ignoring a message on an unexpected topic");
            Ok(())
        }
    }

    async fn on_command(
        &mut self,
        command: Command,
        wire: Option<&mut Wire<'_>>,
    ) -> Result<(), String> {
        match command {
            Command::Report(patch) => {
                merge_patch(&mut self.reported, &patch);
                // While disconnected the change waits: the whole document goes out on connect.
                match wire {
                    Some(wire) => self.publish_reported(wire),
                    None => Ok(()),
                }
            }
        }
    }
}
