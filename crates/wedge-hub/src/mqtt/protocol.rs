//! The generic MQTT upstream's side of the shared link.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use serde_json::{Value, json};
use wedge_core::json::merge_patch;
use wedge_core::{MAX_REPORTED_BYTES, UpstreamMessage};

use super::MqttUpstreamOptions;
use super::version::Versions;
use crate::Drain;
use crate::link::{Protocol, Report, StatusCell, ToHost, Wire};

/// Requests from the handle.
pub(super) enum Command {
    Report(Report),
}

pub(super) struct MqttProtocol {
    options: MqttUpstreamOptions,
    tls: Option<Arc<rustls::ClientConfig>>,
    to_host: ToHost,
    status: StatusCell,
    /// Numbers config documents: the "version" their acknowledgements carry.
    versions: Versions,
    /// The reported state, published whole (and retained) after every change; at most
    /// [`MAX_REPORTED_BYTES`] as JSON, like IoT Hub's reported section.
    reported: Value,
}

impl MqttProtocol {
    pub(super) fn new(
        options: MqttUpstreamOptions,
        tls: Option<Arc<rustls::ClientConfig>>,
        to_host: ToHost,
        status: StatusCell,
    ) -> Self {
        MqttProtocol {
            options,
            tls,
            to_host,
            status,
            versions: Versions::default(),
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

    /// Merges `patch` into the reported document unless that would take it over
    /// [`MAX_REPORTED_BYTES`]; then the document stays as it was.
    fn merge_reported(&mut self, patch: &Value) -> Result<(), String> {
        let mut merged = self.reported.clone();
        merge_patch(&mut merged, patch);
        let bytes = merged.to_string().len();
        if bytes > MAX_REPORTED_BYTES {
            return Err(format!(
                "the reported document would be {bytes} bytes as JSON, at most {MAX_REPORTED_BYTES} allowed"
            ));
        }
        self.reported = merged;
        Ok(())
    }

    /// A config document: the twin's desired shape. An empty payload (the retained document was
    /// cleared) clears every overlay; one that is not JSON is refused and reported. The same
    /// document again (the retained one, on every reconnect) keeps its version.
    fn on_config(&mut self, payload: &[u8], wire: &mut Wire<'_>) -> Result<(), String> {
        let document = match payload {
            [] => Ok(json!({})),
            bytes => serde_json::from_slice::<Value>(bytes).map_err(|e| e.to_string()),
        };
        let error = match document {
            Ok(document) if document.is_object() => {
                let desired = document.get("wedge").cloned().unwrap_or_else(|| json!({}));
                let unchanged = self
                    .to_host
                    .last_desired()
                    .is_some_and(|last| last.deployment == desired);
                if !unchanged {
                    self.to_host.desired(self.versions.next(), desired);
                }
                Value::Null
            }
            Ok(_) => json!("the config document is not a JSON object"),
            Err(e) => json!(format!("the config document is not JSON: {e}")),
        };
        if let Some(reason) = error.as_str() {
            tracing::warn!(topic = ?self.options.config_topic, "{reason}; keeping the current configuration");
        }
        // `null` removes an earlier error once a good document arrives. The reason is
        // serde_json's one-line message, so this always fits.
        let patch = json!({ "wedge": { "config-error": error } });
        if let Err(e) = self.merge_reported(&patch) {
            tracing::warn!("{e}: the config error is not reported");
        }
        self.publish_reported(wire)
    }
}

impl Protocol for MqttProtocol {
    type Command = Command;
    const PEER: &'static str = "MQTT broker";

    async fn prepare(&mut self, drain: &Drain) {
        self.versions.reserve(&drain.meta).await;
    }

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

    fn on_connected(&mut self, wire: &mut Wire<'_>) -> Result<(), String> {
        if let Some(topic) = &self.options.config_topic {
            wire.subscribe(topic.clone())?;
        }
        if self.reported != json!({}) {
            self.publish_reported(wire)?;
        }
        Ok(())
    }

    fn on_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        wire: &mut Wire<'_>,
    ) -> Result<(), String> {
        if self.options.config_topic.as_deref() == Some(topic) {
            self.on_config(payload, wire)
        } else {
            tracing::warn!(topic, "ignoring a message on an unexpected topic");
            Ok(())
        }
    }

    fn on_command(&mut self, command: Command, wire: Option<&mut Wire<'_>>) -> Result<(), String> {
        match command {
            Command::Report(report) => {
                let merged = self.merge_reported(&report.patch);
                let accepted = merged.is_ok();
                report.answer(&self.status, merged);
                // While disconnected the change waits: the whole document goes out on connect.
                match wire {
                    Some(wire) if accepted => self.publish_reported(wire),
                    _ => Ok(()),
                }
            }
        }
    }
}
