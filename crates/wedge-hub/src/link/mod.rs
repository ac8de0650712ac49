//! One MQTT connection kept up for an upstream: the loop the IoT Hub and the generic MQTT
//! upstreams share. It owns rumqttc's event loop (through one poller task: `poll()` is not
//! cancel-safe), reconnects with backoff and jitter, drains the telemetry outbox at QoS 1 with a
//! bounded in-flight window (an entry is forgotten only after its PUBACK and re-sent from the
//! oldest after a reconnect), and hands everything cloud-specific to a [`Protocol`].
//!
//! The link never waits for the host: a [`Protocol`]'s handlers are plain functions, what goes
//! to the host is handed over without waiting (`events.rs`), commands from the handle come
//! through a bounded queue filled with `try_send`, and anything too large for one MQTT packet is
//! dropped (counted) instead of failing the connection and coming back on every connect.

mod connection;
mod events;
mod outbox;
mod retry;
pub mod tls;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use wedge_core::{MAX_BODY_BYTES, UpstreamMessage};

use crate::Drain;
pub use events::{C2d, Desired, HubEvents, IOT_HUB_C2D_QUEUE, MethodCall};
pub(crate) use events::{MAX_PENDING_METHODS, ToHost, to_host};
use outbox::Outbox;
pub use retry::FailureKind;
pub use tls::CaFileError;

/// Largest MQTT packet either way: a message body at its limit plus room for its topic.
const MAX_PACKET_BYTES: usize = MAX_BODY_BYTES + 64 * 1024;
/// A publish packet's bytes besides topic and payload, at most: type byte, remaining length
/// (up to 4 bytes), topic length, packet id.
const PUBLISH_OVERHEAD: usize = 1 + 4 + 2 + 2;
/// Commands from the handle waiting for the link, at most. The link takes them as fast as they
/// come (it never waits on anything else), so this is only reached by a flood.
const COMMAND_QUEUE: usize = 256;

/// The connection as `wedge status` shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LinkStatus {
    /// Whether the MQTT session is up.
    pub connected: bool,
    /// Telemetry messages the broker acknowledged since the host started.
    pub acknowledged: u64,
    /// The latest connection error.
    pub last_error: Option<String>,
    /// While not connected: why, and when the next attempt is.
    pub retry: Option<RetryStatus>,
    /// What was refused or dropped since the host started, instead of being queued without
    /// bound or blocking what follows.
    pub dropped: Dropped,
    /// Connections lost since the host started and the time offline after them, kept by
    /// [`StatusCell::update`] from the changes of `connected` (the link loop does not see it).
    pub offline: Offline,
}

/// Offline spells: from losing an established connection to the next connect (see
/// [`LinkStatus::offline`]). The time before the first connection is not one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Offline {
    /// Spells begun.
    pub count: u64,
    /// Milliseconds offline in all spells, the current one included.
    pub total_ms: u64,
    /// Milliseconds into the current spell, while one lasts.
    pub current_ms: Option<u64>,
    /// Milliseconds of the spells that ended.
    #[serde(skip)]
    ended_ms: u64,
    #[serde(skip)]
    since: Option<Instant>,
}

impl Offline {
    /// Follows a change of `connected` from `was` to `is`.
    fn follow(&mut self, was: bool, is: bool) {
        match (was, is) {
            (true, false) => {
                self.count += 1;
                self.since = Some(Instant::now());
            }
            (false, true) => {
                if let Some(since) = self.since.take() {
                    self.ended_ms += millis(since.elapsed());
                }
            }
            _ => {}
        }
    }

    /// The totals as of now.
    fn now(&mut self) {
        self.current_ms = self.since.map(|since| millis(since.elapsed()));
        self.total_ms = self.ended_ms + self.current_ms.unwrap_or(0);
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The next connection attempt, as `wedge status` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RetryStatus {
    /// What kind of failure the last attempt was.
    pub reason: FailureKind,
    /// Failed attempts in a row that count for the backoff.
    pub failures: u32,
    /// Milliseconds until the next attempt; `None` while probing for the endpoint to come back.
    pub in_ms: Option<u64>,
    /// When the next attempt is, in Unix milliseconds.
    pub at_unix_ms: Option<u64>,
    /// One line: `retrying in 37 s: the broker refused the connection: not authorized …`.
    pub summary: String,
    #[serde(skip)]
    at: Option<Instant>,
    #[serde(skip)]
    error: String,
}

impl RetryStatus {
    pub(crate) fn new(
        reason: FailureKind,
        failures: u32,
        at: Option<Instant>,
        error: String,
    ) -> Self {
        let mut status = RetryStatus {
            reason,
            failures,
            in_ms: None,
            at_unix_ms: None,
            summary: String::new(),
            at,
            error,
        };
        status.refresh(Instant::now());
        status
    }

    /// The time-dependent fields as of `now`.
    fn refresh(&mut self, now: Instant) {
        match self.at {
            Some(at) => {
                let left = at.saturating_duration_since(now);
                self.in_ms = Some(left.as_millis() as u64);
                self.at_unix_ms = (SystemTime::now() + left)
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as u64);
                self.summary = format!(
                    "retrying in {} s: {}",
                    left.as_secs_f64().ceil(),
                    self.error
                );
            }
            None => {
                self.in_ms = None;
                self.at_unix_ms = None;
                self.summary = format!("unreachable, checking about every second: {}", self.error);
            }
        }
    }
}

/// Counts of refused and dropped items (see [`LinkStatus::dropped`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Dropped {
    /// Publishes larger than one MQTT packet may be (an unsendable item would otherwise fail
    /// the connection on every connect).
    pub unsendable: u64,
    /// Reported patches refused: too large, or too many waiting.
    pub reports: u64,
    /// Direct methods answered 503 because too many were unanswered.
    pub methods_refused: u64,
    /// Method answers over IoT Hub's payload limit, replaced by an error status.
    pub method_answers_too_large: u64,
    /// Method answers lost because the link's command queue was full (the hub times the call
    /// out).
    pub method_answers_lost: u64,
    /// Cloud-to-device messages the host was too far behind to take.
    pub c2d: u64,
}

/// The link status, shared by the link, its protocol and the handle.
#[derive(Clone, Default)]
pub(crate) struct StatusCell(Arc<Mutex<LinkStatus>>);

impl StatusCell {
    pub(crate) fn update(&self, update: impl FnOnce(&mut LinkStatus)) {
        let mut status = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let was = status.connected;
        update(&mut status);
        let is = status.connected;
        status.offline.follow(was, is);
    }

    pub(crate) fn get(&self) -> LinkStatus {
        let mut status = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(retry) = &mut status.retry {
            retry.refresh(Instant::now());
        }
        status.offline.now();
        status
    }
}

/// A cloud upstream (IoT Hub, MQTT broker) as the host serves it: an [`Upstream`] that also
/// takes raw reported patches and shows its link.
///
/// [`Upstream`]: wedge_core::Upstream
pub trait Cloud: wedge_core::Upstream {
    /// What kind of upstream this is (`iothub`, `mqtt`), for `wedge status`.
    fn kind(&self) -> &'static str;
    /// Merges a patch (a JSON object) into the reported state, as it is. A patch that is
    /// refused (too large, too many waiting) is logged and counted.
    fn report_raw(&self, patch: Value);
    /// The connection's state.
    fn status(&self) -> LinkStatus;
    /// Where the device's identity came from, when that is worth showing (a DPS assignment:
    /// hub, device id, when and whether from the stored copy); `None` by default.
    fn identity(&self) -> Option<Value> {
        None
    }
}

/// A reported patch on its way to the link, with where to say whether it was taken.
pub(crate) struct Report {
    pub(crate) patch: Value,
    reply: Option<oneshot::Sender<Result<(), String>>>,
}

impl Report {
    /// Tells the reporter (a module waiting in `twin.report`) the outcome; a refusal is also
    /// counted and logged.
    pub(crate) fn answer(self, status: &StatusCell, result: Result<(), String>) {
        if let Err(error) = &result {
            status.update(|s| s.dropped.reports += 1);
            tracing::warn!(%error, "reported patch refused");
        }
        if let Some(reply) = self.reply {
            let _ = reply.send(result);
        }
    }
}

/// The part of an upstream that differs between clouds: how to connect, what to subscribe to,
/// how telemetry is addressed, and what incoming messages and the handle's commands mean.
/// Nothing here is `async`: a protocol reacts and returns, it never waits.
pub(crate) trait Protocol: Send + 'static {
    /// Requests from the upstream's handle (reported state, method answers, ...).
    type Command: Send + 'static;
    /// The peer, for log lines.
    const PEER: &'static str;
    /// Whether to connect with a clean session (the protocol subscribes again on every connect
    /// either way, and the link re-sends unacknowledged telemetry itself).
    const CLEAN_SESSION: bool = true;

    /// Runs once before the first connection: reading or reserving what the protocol keeps in
    /// the store. The one place a protocol may wait, and only on the store.
    fn prepare(&mut self, _drain: &Drain) -> impl std::future::Future<Output = ()> + Send {
        async {}
    }

    /// Options for the next connection (peer, identity, credentials, transport; the link sets
    /// the session settings), and how long until its credentials must be renewed (by
    /// reconnecting).
    fn connect(&mut self) -> Result<(MqttOptions, Option<Duration>), String>;

    /// The topic a telemetry message is published on. `message_id` is unique per device and
    /// stable across re-sends.
    fn telemetry_topic(
        &self,
        message_id: &str,
        message: &UpstreamMessage,
    ) -> Result<String, String>;

    /// The broker accepted the connection: subscribe and catch up.
    fn on_connected(&mut self, wire: &mut Wire<'_>) -> Result<(), String>;

    /// A message arrived on a subscribed topic.
    fn on_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        wire: &mut Wire<'_>,
    ) -> Result<(), String>;

    /// A command from the handle; `wire` is `None` while disconnected.
    fn on_command(
        &mut self,
        command: Self::Command,
        wire: Option<&mut Wire<'_>>,
    ) -> Result<(), String>;

    /// When [`Protocol::on_deadline`] wants to run next (timeouts, retries).
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The deadline passed.
    fn on_deadline(&mut self, _wire: Option<&mut Wire<'_>>) -> Result<(), String> {
        Ok(())
    }

    /// The connection ended.
    fn on_disconnected(&mut self) {}
}

/// The connected broker, as a protocol sees it: every publish goes through here so that packet
/// ids are matched to the right outbox entries.
pub(crate) struct Wire<'a> {
    client: &'a AsyncClient,
    outbox: &'a mut Outbox,
    status: &'a StatusCell,
    /// The acknowledgement of the publish being handled, if any: the link acknowledges it
    /// after [`Protocol::on_publish`] unless the protocol took it ([`Wire::take_ack`]).
    ack: Option<Ack>,
}

/// The PUBACK of one incoming QoS 1 publish, to be sent once the message is safe. Dropped
/// without [`Ack::ack`], nothing is sent: the broker keeps the message for the session
/// (CleanSession = 0) and delivers it again after the next connect, so nothing is lost, at
/// worst handled twice (at least once).
#[derive(Debug)]
pub struct Ack {
    client: AsyncClient,
    publish: rumqttc::Publish,
}

impl Ack {
    /// Acknowledges the message. An ack of a connection that has since ended goes nowhere;
    /// the broker then delivers the message again on the new one.
    pub fn ack(self) {
        if let Err(e) = self.client.try_ack(&self.publish) {
            tracing::debug!(error = %e, "acknowledgement not sent: the message comes again");
        }
    }
}

impl Wire<'_> {
    /// Takes the acknowledgement of the publish being handled, so that it is sent later (or
    /// never), not when [`Protocol::on_publish`] returns.
    pub(crate) fn take_ack(&mut self) -> Option<Ack> {
        self.ack.take()
    }

    /// Publishes at QoS 1. A publish larger than one packet may be is dropped, counted and
    /// logged (`Ok`): sending it would fail the connection, and it would fail again on every
    /// connect, blocking everything behind it.
    pub(crate) fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), String> {
        if !fits_in_a_packet(&topic, &payload) {
            self.status.update(|s| s.dropped.unsendable += 1);
            tracing::error!(
                topic = wedge_core::truncate(&topic, 128),
                bytes = payload.len(),
                "dropping a publish larger than the {MAX_PACKET_BYTES}-byte packet limit"
            );
            return Ok(());
        }
        self.client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .map_err(|e| e.to_string())?;
        self.outbox.requested(None);
        Ok(())
    }

    /// Subscribes at QoS 1.
    pub(crate) fn subscribe(&mut self, filter: String) -> Result<(), String> {
        self.client
            .try_subscribe(filter, QoS::AtLeastOnce)
            .map_err(|e| e.to_string())
    }
}

/// Whether a publish of `topic` and `payload` stays within [`MAX_PACKET_BYTES`].
fn fits_in_a_packet(topic: &str, payload: &[u8]) -> bool {
    topic.len() + payload.len() + PUBLISH_OVERHEAD <= MAX_PACKET_BYTES
}

/// Sends commands to a link without waiting; clones go to whoever answers later (direct
/// methods).
pub(crate) struct Commands<C> {
    tx: mpsc::Sender<C>,
}

impl<C> Clone for Commands<C> {
    fn clone(&self) -> Self {
        Commands {
            tx: self.tx.clone(),
        }
    }
}

impl<C> Commands<C> {
    /// Queues `command`; gives it back when the queue is full or the link is gone.
    pub(crate) fn try_send(&self, command: C) -> Result<(), C> {
        self.tx.try_send(command).map_err(|e| e.into_inner())
    }
}

/// The receiving end of [`Commands`], consumed by [`start`].
pub(crate) struct CommandQueue<C>(mpsc::Receiver<C>);

/// What a protocol is built with and the link is started with: the command queue, the status
/// and the hand-over to the host, created first so the protocol can hold their senders.
pub(crate) struct Parts<C> {
    pub(crate) commands: Commands<C>,
    pub(crate) queue: CommandQueue<C>,
    pub(crate) status: StatusCell,
    pub(crate) to_host: ToHost,
}

/// A fresh set of [`Parts`] and the host's end of the events.
pub(crate) fn parts<C>() -> (Parts<C>, HubEvents) {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let status = StatusCell::default();
    let (to_host, events) = to_host(status.clone());
    let parts = Parts {
        commands: Commands { tx },
        queue: CommandQueue(rx),
        status,
        to_host,
    };
    (parts, events)
}

/// The handle side of a running link. The link stops when it is dropped (the protocol may
/// hold command senders of its own, so the command channel does not tell).
pub(crate) struct LinkHandle<C> {
    commands: Commands<C>,
    status: StatusCell,
    _stop: oneshot::Sender<()>,
}

impl<C> LinkHandle<C> {
    /// The connection's state.
    pub(crate) fn status(&self) -> LinkStatus {
        self.status.get()
    }

    /// Queues a reported patch, wrapped in the protocol's command by `command`; the answer
    /// says whether the protocol took it (`Err` with the reason: too large, too many waiting,
    /// the command queue full). Refusals are counted.
    pub(crate) async fn report(
        &self,
        patch: Value,
        command: impl FnOnce(Report) -> C,
    ) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        let report = Report {
            patch,
            reply: Some(reply),
        };
        if self.commands.try_send(command(report)).is_err() {
            return Err(self.queue_full());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the upstream link has stopped".into()))
    }

    /// Queues a reported patch nobody waits for (the host's own status reports).
    pub(crate) fn report_raw(&self, patch: Value, command: impl FnOnce(Report) -> C) {
        let report = Report { patch, reply: None };
        if self.commands.try_send(command(report)).is_err() {
            self.queue_full();
        }
    }

    fn queue_full(&self) -> String {
        let error =
            format!("the upstream link has {COMMAND_QUEUE} commands waiting; try again later");
        self.status.update(|s| s.dropped.reports += 1);
        tracing::warn!(%error, "reported patch refused");
        error
    }
}

/// Starts the connection task for `protocol`, built with `parts` (see [`parts`]), draining
/// `drain`.
pub(crate) fn start<P: Protocol>(
    protocol: P,
    parts: Parts<P::Command>,
    drain: Drain,
) -> LinkHandle<P::Command> {
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(connection::run(
        protocol,
        parts.queue.0,
        parts.status.clone(),
        Outbox::new(drain),
        stopped,
    ));
    LinkHandle {
        commands: parts.commands,
        status: parts.status,
        _stop: stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_spells_start_when_a_connection_is_lost() {
        let cell = StatusCell::default();
        cell.update(|s| s.last_error = Some("refused".into()));
        assert_eq!(cell.get().offline, Offline::default(), "not connected yet");
        cell.update(|s| s.connected = true);
        cell.update(|s| s.acknowledged += 1);
        assert_eq!(cell.get().offline.count, 0);
        cell.update(|s| s.connected = false);
        let offline = cell.get().offline;
        assert_eq!((offline.count, offline.current_ms.is_some()), (1, true));
        cell.update(|s| s.connected = true);
        let offline = cell.get().offline;
        assert_eq!((offline.count, offline.current_ms), (1, None));
        assert_eq!(offline.total_ms, offline.ended_ms);
    }

    #[test]
    fn the_packet_limit_counts_topic_payload_and_header() {
        let topic = "t".repeat(100);
        let room = MAX_PACKET_BYTES - PUBLISH_OVERHEAD - topic.len();
        assert!(fits_in_a_packet(&topic, &vec![0; room]));
        assert!(!fits_in_a_packet(&topic, &vec![0; room + 1]));
    }
}
