//! [`HubEmulator`]: the Azure IoT Hub service side, played over a [`Broker`].
//!
//! Publish QoS follows IoT Hub where Microsoft documents it: C2D messages are delivered at
//! QoS 1 and direct-method requests are QoS 0. Twin answers and desired-property
//! notifications are published at QoS 1, so the device's subscription QoS decides (as IoT
//! Hub grants at most QoS 1). Nothing is retained.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rumqttc::{AsyncClient, MqttOptions, QoS, TlsConfiguration, Transport};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::dispatch::{self, Shared};
use crate::twin::Twin;
use crate::{Broker, encode_property_bag};

/// How long `start` waits for the service connection to be subscribed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One device-to-cloud message as the hub received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telemetry {
    /// The device id from the topic.
    pub device: String,
    /// The module id, for `devices/{d}/modules/{m}/messages/events/...`.
    pub module: Option<String>,
    /// The decoded property bag, in topic order: system properties (`$.ct`, `$.ce`,
    /// `$.mid`, ...) and application properties alike.
    pub properties: Vec<(String, String)>,
    /// The message body.
    pub body: Vec<u8>,
}

impl Telemetry {
    /// The value of the first property named `key`.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything the emulator has seen and keeps.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) telemetry: Vec<Telemetry>,
    /// Keyed by identity key (`device` or `device/module`).
    pub(crate) twins: HashMap<String, Twin>,
    pub(crate) pending_methods: HashMap<String, oneshot::Sender<(u16, Vec<u8>)>>,
    /// Successful (re)subscriptions of the service connection.
    pub(crate) connections: u64,
    pub(crate) last_error: Option<String>,
}

/// The IoT Hub service side: records telemetry, keeps twins, answers twin requests, invokes
/// direct methods and sends C2D messages. Its event-loop task stops when it is dropped.
pub struct HubEmulator {
    shared: Arc<Shared>,
    client: AsyncClient,
    task: JoinHandle<()>,
    next_rid: AtomicU64,
}

impl Drop for HubEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HubEmulator {
    /// Connects to `broker` as its service user (by its certificate, when the broker requires
    /// client certificates) and returns once subscribed.
    ///
    /// IoT Hub knows which identity sent a `$iothub/...` request from the connection; a
    /// broker does not. So twin and method traffic is attributed to the broker's only
    /// device/module user; with several users, use [`HubEmulator::start_for`].
    pub async fn start(broker: &Broker) -> Result<HubEmulator> {
        let twin_identity = match broker.identities() {
            [only] => Some(only.key()),
            _ => None,
        };
        Self::connect(broker, twin_identity).await
    }

    /// Like [`HubEmulator::start`], attributing `$iothub/...` traffic to `identity`
    /// (`device` or `device/module`).
    pub async fn start_for(broker: &Broker, identity: &str) -> Result<HubEmulator> {
        Self::connect(broker, Some(identity.to_owned())).await
    }

    async fn connect(broker: &Broker, twin_identity: Option<String>) -> Result<HubEmulator> {
        let (user, password) = broker.service_credentials();
        let mut options = MqttOptions::new("wedge-hub-emulator", "127.0.0.1", broker.port());
        options
            .set_credentials(user, password)
            .set_keep_alive(Duration::from_secs(30))
            // A persistent session: after a broker restart the emulator's subscriptions are
            // restored before any device can publish, like the always-on IoT Hub service.
            .set_clean_session(false)
            // IoT Hub's limit is 256 KiB; rumqttc's default (10 KiB) would cut twins short.
            .set_max_packet_size(256 * 1024, 256 * 1024);
        if broker.tls() {
            // With the service certificate when the broker requires client certificates.
            let tls = broker.service_tls_config()?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls),
            )));
        }
        let (client, eventloop) = AsyncClient::new(options, 256);
        let shared = Arc::new(Shared {
            state: Default::default(),
            revision: watch::channel(0).0,
            twin_identity,
        });
        let task = tokio::spawn(dispatch::run(shared.clone(), client.clone(), eventloop));
        let emulator = HubEmulator {
            shared,
            client,
            task,
            next_rid: AtomicU64::new(1),
        };
        emulator.wait_for_connections(1, CONNECT_TIMEOUT).await?;
        Ok(emulator)
    }

    /// How many times the service connection has (re)connected and subscribed.
    pub fn connections(&self) -> u64 {
        self.shared.lock().connections
    }

    /// Waits until [`HubEmulator::connections`] reaches `n`, e.g. after [`Broker::restart`].
    pub async fn wait_for_connections(&self, n: u64, timeout: Duration) -> Result<()> {
        self.wait_until(timeout, |s| s.connections >= n)
            .await
            .map_err(|e| {
                let last = self.shared.lock().last_error.clone();
                e.context(format!("hub emulator not connected (last error: {last:?})"))
            })
    }

    /// All telemetry received so far, in arrival order.
    pub fn telemetry(&self) -> Vec<Telemetry> {
        self.shared.lock().telemetry.clone()
    }

    /// Waits until at least `n` telemetry messages have arrived and returns them all.
    pub async fn wait_for_telemetry(&self, n: usize, timeout: Duration) -> Result<Vec<Telemetry>> {
        self.wait_until(timeout, |s| s.telemetry.len() >= n)
            .await
            .with_context(|| format!("waiting for {n} telemetry messages"))?;
        Ok(self.telemetry())
    }

    /// The twin GET document (`{"desired": ..., "reported": ...}`) of `identity`.
    pub fn twin(&self, identity: &str) -> Value {
        self.with_twin(identity, Twin::document)
    }

    /// The reported properties of `identity`, including `"$version"`.
    pub fn reported(&self, identity: &str) -> Value {
        self.with_twin(identity, |t| t.reported.to_json())
    }

    /// The desired properties of `identity`, including `"$version"`.
    pub fn desired(&self, identity: &str) -> Value {
        self.with_twin(identity, |t| t.desired.to_json())
    }

    /// Waits until the reported properties of `identity` satisfy `predicate`; returns them.
    pub async fn wait_for_reported(
        &self,
        identity: &str,
        predicate: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value> {
        let result = self
            .wait_until(timeout, |s| {
                predicate(
                    &s.twins
                        .get(identity)
                        .cloned()
                        .unwrap_or_default()
                        .reported
                        .to_json(),
                )
            })
            .await;
        let reported = self.reported(identity);
        result.with_context(|| format!("reported properties of {identity} now: {reported}"))?;
        Ok(reported)
    }

    /// Merges `patch` (a JSON object; `null` members delete) into the desired properties of
    /// `identity`, bumps their version and notifies the device on
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}` with the patch plus
    /// `"$version"`, as IoT Hub does. Returns the new version.
    pub async fn set_desired(&self, identity: &str, patch: Value) -> Result<u64> {
        self.check_twin_identity(identity)?;
        let Value::Object(mut patch) = patch else {
            bail!("a desired-properties patch must be a JSON object");
        };
        let version = self
            .shared
            .lock()
            .twins
            .entry(identity.to_owned())
            .or_default()
            .desired
            .apply(&patch);
        self.shared.changed();
        patch.insert("$version".to_owned(), version.into());
        let topic = format!("$iothub/twin/PATCH/properties/desired/?$version={version}");
        self.client
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                Value::Object(patch).to_string(),
            )
            .await?;
        Ok(version)
    }

    /// Invokes direct method `method` on `identity` with `payload` and returns the device's
    /// `(status, payload)`; an empty answer body is `Value::Null`. Fails after `timeout`,
    /// like IoT Hub does when a device does not answer.
    pub async fn invoke(
        &self,
        identity: &str,
        method: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<(u16, Value)> {
        self.check_twin_identity(identity)?;
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = oneshot::channel();
        self.shared.lock().pending_methods.insert(rid.clone(), tx);
        let topic = format!("$iothub/methods/POST/{method}/?$rid={rid}");
        // "Method requests are QoS 0" (Microsoft, "Understand and invoke direct methods").
        let sent = self
            .client
            .publish(topic, QoS::AtMostOnce, false, payload.to_string())
            .await;
        let answer = match sent {
            Ok(()) => tokio::time::timeout(timeout, rx).await,
            Err(e) => {
                self.shared.lock().pending_methods.remove(&rid);
                return Err(e.into());
            }
        };
        let Ok(Ok((status, body))) = answer else {
            self.shared.lock().pending_methods.remove(&rid);
            bail!("direct method {method} on {identity} got no answer within {timeout:?}");
        };
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).context("device answered a method with non-JSON")?
        };
        Ok((status, body))
    }

    /// Sends a cloud-to-device message at QoS 1 on
    /// `devices/{device}/messages/devicebound/{property-bag}`. The bag starts with the
    /// `$.to=/devices/{device}/messages/deviceBound` system property, as IoT Hub's does,
    /// followed by `properties`.
    pub async fn send_c2d(
        &self,
        device: &str,
        body: impl Into<Vec<u8>>,
        properties: &[(&str, &str)],
    ) -> Result<()> {
        let to = format!("/devices/{device}/messages/deviceBound");
        let mut bag = vec![("$.to", to.as_str())];
        bag.extend_from_slice(properties);
        let topic = format!(
            "devices/{device}/messages/devicebound/{}",
            encode_property_bag(&bag)
        );
        self.client
            .publish(topic, QoS::AtLeastOnce, false, body.into())
            .await?;
        Ok(())
    }

    fn with_twin<T>(&self, identity: &str, f: impl FnOnce(&Twin) -> T) -> T {
        f(self
            .shared
            .lock()
            .twins
            .entry(identity.to_owned())
            .or_default())
    }

    /// `$iothub/...` topics carry no identity, so only the attributed one can be served.
    fn check_twin_identity(&self, identity: &str) -> Result<()> {
        match &self.shared.twin_identity {
            Some(owner) if owner == identity => Ok(()),
            owner => Err(anyhow!(
                "this emulator routes $iothub traffic for {owner:?}, not {identity:?}: \
                 use HubEmulator::start_for or one Broker per device"
            )),
        }
    }

    /// Re-checks `done` after every state change until it holds or `timeout` passes.
    async fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> Result<()> {
        crate::revision::wait_until(&self.shared.revision, "hub emulator", timeout, || {
            done(&self.shared.lock())
        })
        .await
    }
}
