//! The upstream a deployment names, started: its options built from the deployment (secrets
//! read here, never logged) and its connection task running over the outbox's [`Drain`]. An IoT
//! Hub identity comes from a connection string, or from DPS (`dps.rs`).

pub(crate) mod dps;

use std::sync::Arc;

use std::path::Path;

use crate::config::{HubIdentity, MqttSpec, UpstreamSpec};
use anyhow::Context;
use wedge_core::TopicTemplate;
use wedge_hub::iothub::connection_string::ConnectionString;
use wedge_hub::iothub::session::{ClientIdentity, IotHub, IotHubOptions};
use wedge_hub::mqtt::{MqttUpstream, MqttUpstreamOptions};
use wedge_hub::{Cloud, Drain, HubEvents};

/// A started cloud upstream and the events it brings.
pub(crate) type CloudLink = (Arc<dyn Cloud>, HubEvents);

/// Starts the cloud upstream of `spec`; `None` for the local hub, which the host opens itself.
///
/// # Errors
/// A secret cannot be read, the connection string is malformed, or a CA file is unusable.
pub(crate) fn start_cloud(
    spec: &UpstreamSpec,
    drain: Drain,
    data_dir: &Path,
) -> anyhow::Result<Option<CloudLink>> {
    match spec {
        UpstreamSpec::Local => Ok(None),
        UpstreamSpec::IotHub {
            identity: HubIdentity::Dps(spec),
            ca_file,
            port,
            ..
        } => {
            let hub = dps::HubSettings {
                ca_file: ca_file.clone(),
                port: *port,
            };
            dps::start(spec, hub, drain, data_dir).map(Some)
        }
        UpstreamSpec::IotHub {
            identity: HubIdentity::ConnectionString(connection_string),
            ca_file,
            cert_file,
            key_file,
            port,
        } => {
            let text = connection_string
                .read()
                .map_err(|e| anyhow::anyhow!("upstream connection string: {e}"))?;
            let connection =
                ConnectionString::parse(&text).context("upstream connection string")?;
            let mut options = IotHubOptions::new(connection);
            options.ca_file = ca_file.clone();
            options.client_identity =
                cert_file
                    .clone()
                    .zip(key_file.clone())
                    .map(|(cert_file, key_file)| ClientIdentity {
                        cert_file,
                        key_file,
                    });
            options.port = port.unwrap_or(options.port);
            let (hub, events) = IotHub::start(options, drain)?;
            Ok(Some((Arc::new(hub), events)))
        }
        UpstreamSpec::Mqtt(spec) => {
            let (broker, events) = MqttUpstream::start(mqtt_options(spec)?, drain)?;
            Ok(Some((Arc::new(broker), events)))
        }
    }
}

/// The MQTT upstream's options from the deployment, with its password read.
fn mqtt_options(spec: &MqttSpec) -> anyhow::Result<MqttUpstreamOptions> {
    let password = spec
        .password
        .as_ref()
        .map(|source| source.read())
        .transpose()
        .map_err(|e| anyhow::anyhow!("upstream password: {e}"))?;
    let credentials = spec
        .username
        .clone()
        .map(|user| (user, password.unwrap_or_default()));
    let topic = |template: &TopicTemplate| {
        template
            .render(&spec.device, "", "")
            .context("upstream topic")
    };
    Ok(MqttUpstreamOptions {
        host: spec.host.clone(),
        port: spec.port.unwrap_or(if spec.tls { 8883 } else { 1883 }),
        tls: spec.tls,
        ca_file: spec.ca_file.clone(),
        device: spec.device.clone(),
        client_id: spec
            .client_id
            .clone()
            .unwrap_or_else(|| format!("wedge-{}", spec.device)),
        credentials,
        telemetry_topic: spec.telemetry_topic.clone(),
        config_topic: spec.config_topic.as_ref().map(topic).transpose()?,
        reported_topic: spec.reported_topic.as_ref().map(topic).transpose()?,
    })
}
