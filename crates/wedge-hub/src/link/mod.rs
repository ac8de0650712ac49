//! One MQTT connection kept up for an upstream: the loop the IoT Hub and the generic MQTT
//! upstreams share. It owns rumqttc's event loop (through one poller task: `poll()` is not
//! cancel-safe), reconnects with backoff and jitter, drains the telemetry outbox at QoS 1 with a
//! bounded in-flight window (an entry is forgotten only after its PUBACK and re-sent from the
//! oldest after a reconnect), and hands everything cloud-specific to a [`Protocol`].

mod outbox;
pub(crate) mod tls;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use wedge_core::{MAX_BODY_BYTES, Message, Upstream, UpstreamMessage};

use crate::Drain;
use outbox::{MAX_IN_FLIGHT, Outbox};
pub use tls::CaFileError;
/// Largest MQTT packet either way: a message body at its limit plus room for its topic.
const MAX_PACKET_BYTES: usize = MAX_BODY_BYTES + 64 * 1024;
/// Reconnect delays: doubled after each failure, with jitter, up to the cap.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// What the cloud asks of the host.
#[derive(Debug)]
pub enum HubEvent {
    /// The desired deployment (the twin's `desired.wedge`, or the `wedge` member of the MQTT
    /// config document) at `version`.
    Desired {
        /// The desired version (the twin's `$version`; a counter for MQTT).
        version: u64,
        /// The desired deployment, a JSON object (see `wedge_core::doc::DeploymentDoc`).
        desired: Value,
    },
    /// A direct method; answer through `respond` with a status and a JSON payload.
    Method {
        /// The method name as the cloud sent it (`<module>.<method>`).
        name: String,
        /// The JSON payload.
        payload: String,
        /// Where the answer goes.
        respond: oneshot::Sender<(u16, String)>,
    },
    /// A cloud-to-device message.
    C2d(Message),
}

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
}

/// A cloud upstream (IoT Hub, MQTT broker) as the host serves it: an [`Upstream`] that also
/// takes raw reported patches and shows its link.
pub trait Cloud: Upstream {
    /// What kind of upstream this is (`iothub`, `mqtt`), for `wedge status`.
    fn kind(&self) -> &'static str;
    /// Merges a patch (a JSON object) into the reported state, as it is.
    fn report_raw(&self, patch: Value);
    /// The connection's state.
    fn status(&self) -> LinkStatus;
}

/// The part of an upstream that differs between clouds: how to connect, what to subscribe to,
/// how telemetry is addressed, and what incoming messages and the handle's commands mean.
pub(crate) trait Protocol: Send + 'static {
    /// Requests from the upstream's handle (reported state, method answers, ...).
    type Command: Send + 'static;
    /// The peer, for log lines.
    const PEER: &'static str;

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
    fn on_connected(
        &mut self,
        wire: &mut Wire<'_>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// A message arrived on a subscribed topic.
    fn on_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        wire: &mut Wire<'_>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// A command from the handle; `wire` is `None` while disconnected.
    fn on_command(
        &mut self,
        command: Self::Command,
        wire: Option<&mut Wire<'_>>,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// When [`Protocol::on_deadline`] wants to run next (timeouts, retries).
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The deadline passed.
    fn on_deadline(
        &mut self,
        _wire: Option<&mut Wire<'_>>,
    ) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }

    /// The connection ended.
    fn on_disconnected(&mut self) {}
}

/// The connected broker, as a protocol sees it: every publish goes through here so that packet
/// ids are matched to the right outbox entries.
pub(crate) struct Wire<'a> {
    client: &'a AsyncClient,
    outbox: &'a mut Outbox,
}

impl Wire<'_> {
    /// Publishes at QoS 1.
    pub(crate) fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), String> {
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

/// Sends commands to a link; clones go to tasks that answer later (direct methods).
pub(crate) struct Commands<C> {
    tx: mpsc::UnboundedSender<C>,
}

impl<C> Clone for Commands<C> {
    fn clone(&self) -> Self {
        Commands {
            tx: self.tx.clone(),
        }
    }
}

impl<C> Commands<C> {
    /// Queues `command`; dropped when the link is gone (the host is shutting down).
    pub(crate) fn send(&self, command: C) {
        let _ = self.tx.send(command);
    }
}

/// The receiving end of [`Commands`], consumed by [`start`].
pub(crate) struct CommandQueue<C>(mpsc::UnboundedReceiver<C>);

/// A command channel, created before the protocol so that the protocol can hold a sender.
pub(crate) fn channel<C>() -> (Commands<C>, CommandQueue<C>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Commands { tx }, CommandQueue(rx))
}

/// The handle side of a running link. The link stops when it is dropped (the protocol may
/// hold command senders of its own, so the command channel does not tell).
pub(crate) struct LinkHandle<C> {
    commands: Commands<C>,
    status: Arc<Mutex<LinkStatus>>,
    _stop: oneshot::Sender<()>,
}

impl<C> LinkHandle<C> {
    /// Queues a protocol command.
    pub(crate) fn command(&self, command: C) {
        self.commands.send(command);
    }

    /// The connection's state.
    pub(crate) fn status(&self) -> LinkStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Starts the connection task for `protocol`, fed by `queue` (see [`channel`]), draining
/// `drain`.
pub(crate) fn start<P: Protocol>(
    protocol: P,
    commands: Commands<P::Command>,
    queue: CommandQueue<P::Command>,
    drain: Drain,
) -> LinkHandle<P::Command> {
    let status = Arc::new(Mutex::new(LinkStatus::default()));
    let (stop, stopped) = oneshot::channel();
    let link = Link {
        protocol,
        commands: queue.0,
        status: status.clone(),
        outbox: Outbox::new(drain),
        stopped,
    };
    tokio::spawn(link.run());
    LinkHandle {
        commands,
        status,
        _stop: stop,
    }
}

struct Link<P: Protocol> {
    protocol: P,
    commands: mpsc::UnboundedReceiver<P::Command>,
    status: Arc<Mutex<LinkStatus>>,
    outbox: Outbox,
    /// Resolves when the handle is dropped.
    stopped: oneshot::Receiver<()>,
}

impl<P: Protocol> Link<P> {
    fn set_status(&self, update: impl FnOnce(&mut LinkStatus)) {
        update(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn run(mut self) {
        let mut backoff = BACKOFF_START;
        loop {
            match self.connection().await {
                Ok(true) => backoff = BACKOFF_START,
                Ok(false) => return, // the handle was dropped
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "{} connection failed", P::PEER);
                    self.set_status(|s| {
                        s.connected = false;
                        s.last_error = Some(error.clone());
                    });
                }
            }
            self.protocol.on_disconnected();
            if !self.wait(jitter(backoff)).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_CAP);
        }
    }

    /// Waits out a reconnect delay, still taking commands. `false` when the handle is gone.
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                _ = &mut self.stopped => return false,
                command = self.commands.recv() => match command {
                    None => return false,
                    Some(command) => {
                        if let Err(error) = self.on_command(command, None).await {
                            tracing::warn!(%error, "{} link", P::PEER);
                        }
                    }
                },
            }
        }
    }

    async fn on_command(
        &mut self,
        command: P::Command,
        client: Option<&AsyncClient>,
    ) -> Result<(), String> {
        let mut wire = client.map(|client| Wire {
            client,
            outbox: &mut self.outbox,
        });
        self.protocol.on_command(command, wire.as_mut()).await
    }

    /// One connection, from CONNECT until it fails (`Err`), its credentials need renewing
    /// (`Ok(true)`) or the handle is dropped (`Ok(false)`).
    async fn connection(&mut self) -> Result<bool, String> {
        let (mut options, renew_in) = self.protocol.connect()?;
        // The same for every cloud: a clean session (the link re-sends what was not
        // acknowledged and the protocol subscribes again), room for the largest message with
        // its topic, and rumqttc's window a little above the link's own.
        options
            .set_keep_alive(Duration::from_secs(60))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_inflight(MAX_IN_FLIGHT as u16 + 16);
        let renew_at = renew_in.map(|d| tokio::time::Instant::now() + d);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let (event_tx, mut events) = mpsc::channel(256);
        let poller = AbortOnDrop(tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await;
                let failed = event.is_err();
                if event_tx.send(event).await.is_err() || failed {
                    return;
                }
            }
        }));
        self.outbox.rewind();
        let mut connected = false;
        let result = loop {
            let deadline = self.protocol.deadline().map(tokio::time::Instant::from_std);
            let sendable = connected && self.outbox.sendable();
            // Waiting for new records borrows a handle of its own, not `self`.
            let store = self.outbox.drain().outbox.clone();
            let more_after = self.outbox.wants_more().filter(|_| connected);
            let step: Result<bool, String> = tokio::select! {
                event = events.recv() => match event {
                    None => Err("the MQTT event loop ended".to_string()),
                    Some(Err(e)) => Err(describe(&e)),
                    Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        connected = true;
                        tracing::info!("connected to the {}", P::PEER);
                        self.set_status(|s| {
                            s.connected = true;
                            s.last_error = None;
                        });
                        let mut wire = Wire { client: &client, outbox: &mut self.outbox };
                        self.protocol.on_connected(&mut wire).await.map(|()| true)
                    }
                    Some(Ok(event)) => self.on_event(event, &client).await.map(|()| true),
                },
                _ = &mut self.stopped => Ok(false),
                command = self.commands.recv() => match command {
                    None => Ok(false),
                    Some(command) => self.on_command(command, connected.then_some(&client)).await.map(|()| true),
                },
                () = std::future::ready(()), if sendable => self.send_next(&client).map(|()| true),
                () = store.wait_after(more_after.unwrap_or(0)), if more_after.is_some() => {
                    self.outbox.fill().map(|()| true)
                }
                () = sleep_until_opt(deadline) => {
                    let mut wire = connected.then_some(Wire {
                        client: &client,
                        outbox: &mut self.outbox,
                    });
                    self.protocol.on_deadline(wire.as_mut()).await.map(|()| true)
                }
                () = sleep_until_opt(renew_at) => {
                    tracing::info!("renewing credentials: reconnecting to the {}", P::PEER);
                    break Ok(true);
                }
            };
            match step {
                Ok(true) => {}
                Ok(false) => break Ok(false),
                Err(e) => break Err(e),
            }
        };
        let _ = client.try_disconnect();
        drop(poller);
        result
    }

    fn send_next(&mut self, client: &AsyncClient) -> Result<(), String> {
        let Some((id, record)) = self.outbox.next_to_send() else {
            return Ok(());
        };
        let message_id = self.outbox.drain().message_id(id);
        let topic = UpstreamMessage::from_record(&record).and_then(|message| {
            let topic = self.protocol.telemetry_topic(&message_id, &message)?;
            Ok((topic, message.message.body))
        });
        match topic {
            Ok((topic, payload)) => {
                client
                    .try_publish(topic, QoS::AtLeastOnce, false, payload)
                    .map_err(|e| e.to_string())?;
                self.outbox.requested(Some(id));
            }
            // Admission checked the message before it was stored; this only happens if the
            // record was damaged or the deployment changed the topic template since. Keeping
            // the record would block the outbox for good.
            Err(error) => {
                tracing::error!(%error, message_id, "dropping a stored message that cannot be sent");
                self.outbox.forget(id);
            }
        }
        Ok(())
    }

    async fn on_event(&mut self, event: Event, client: &AsyncClient) -> Result<(), String> {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => self.outbox.sent(pkid),
            Event::Incoming(Packet::PubAck(ack)) if self.outbox.acknowledged(ack.pkid) => {
                self.set_status(|s| s.acknowledged += 1);
            }
            Event::Incoming(Packet::Publish(publish)) => {
                let mut wire = Wire {
                    client,
                    outbox: &mut self.outbox,
                };
                self.protocol
                    .on_publish(&publish.topic, &publish.payload, &mut wire)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Aborts the task when dropped, so a connection's poller never outlives it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// `delay` plus up to 25% random jitter, so that a fleet does not reconnect in lockstep.
fn jitter(delay: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    delay + delay.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// A connection error in words, never including the password.
fn describe(error: &rumqttc::ConnectionError) -> String {
    match error {
        rumqttc::ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection ({code:?}): check the credentials")
        }
        other => other.to_string(),
    }
}
