//! The IoT Hub upstream: one task owns the MQTT/TLS connection (rumqttc + rustls) and drives the
//! I/O-free pieces of this module: it connects with a fresh SAS token (and reconnects before the
//! token expires), publishes telemetry at QoS 1 and forgets a message only after its PUBACK,
//! feeds twin traffic to the [`Twin`] machine, and hands desired configuration, direct methods
//! and cloud-to-device messages to the host as [`HubEvent`]s.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{
    AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use wedge_runtime::{MAX_BODY_BYTES, Message, SendError, Upstream, UpstreamMessage};

use super::connection_string::ConnectionString;
use super::sas;
use super::topics::{self, Identity, Incoming, Telemetry};
use super::twin::{Action, Twin};

/// Most telemetry messages held in memory while the hub is unreachable. (The durable outbox
/// replaces this bound with the store's.)
const MAX_QUEUED: usize = 100_000;
/// QoS 1 publishes awaiting their PUBACK at once.
const MAX_IN_FLIGHT: usize = 100;
/// Reconnect delays: doubled after each failure, with jitter, up to the cap.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// IoT Hub's limit for one device-to-cloud message, topic (property bag) included.
const MAX_MESSAGE_BYTES: usize = MAX_BODY_BYTES;

/// How to reach the hub.
#[derive(Debug, Clone)]
pub struct IotHubOptions {
    /// The device (or module) identity and its credential.
    pub connection: ConnectionString,
    /// A PEM file of CA certificates trusted in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// MQTT over TLS port (8883).
    pub port: u16,
    /// Lifetime of the SAS tokens wedge signs.
    pub token_ttl: Duration,
}

impl IotHubOptions {
    /// Options with the defaults: port 8883, one-hour tokens, public roots only.
    pub fn new(connection: ConnectionString) -> Self {
        IotHubOptions {
            connection,
            ca_file: None,
            port: 8883,
            token_ttl: sas::DEFAULT_TTL,
        }
    }
}

/// What the hub asks of the host.
#[derive(Debug)]
pub enum HubEvent {
    /// The desired configuration of modules (`desired.wedge.modules.<name>.config`) at `version`.
    Desired {
        /// The desired `$version`.
        version: u64,
        /// Module name to its desired config overlay.
        modules: BTreeMap<String, Value>,
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
    /// Telemetry messages waiting to be sent or acknowledged.
    pub queued: usize,
    /// Telemetry messages the hub acknowledged.
    pub acknowledged: u64,
    /// The latest connection error.
    pub last_error: Option<String>,
}

/// Errors starting the upstream.
#[derive(Debug, thiserror::Error)]
pub enum IotHubError {
    /// The CA file cannot be used.
    #[error("ca-file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The credential cannot produce a token.
    #[error("cannot sign a SAS token: {0}")]
    Sas(#[from] sas::SasError),
    /// X.509 client certificates are not supported yet.
    #[error("X.509 authentication is not supported yet; use SharedAccessKey")]
    X509,
}

enum Command {
    Telemetry {
        topic: String,
        payload: Vec<u8>,
    },
    Report(Value),
    MethodResponse {
        status: u16,
        rid: String,
        payload: String,
    },
}

/// The handle: an [`Upstream`] for the runtime. Cheap to share.
pub struct IotHub {
    identity: Identity,
    commands: mpsc::UnboundedSender<Command>,
    queued: Arc<AtomicU64>,
    status: Arc<Mutex<LinkStatus>>,
    next_message: AtomicU64,
    boot: u64,
}

impl IotHub {
    /// Starts the connection task. Returns the handle and the stream of events for the host.
    ///
    /// # Errors
    /// The CA file is unusable or the credential cannot sign a token (checked now, so that a
    /// bad key is reported at start, not at every reconnect).
    pub fn start(
        options: IotHubOptions,
    ) -> Result<(IotHub, mpsc::Receiver<HubEvent>), IotHubError> {
        let tls = Arc::new(tls_config(options.ca_file.as_ref())?);
        if sas::password(&options.connection, SystemTime::now(), options.token_ttl)?.is_none() {
            return Err(IotHubError::X509);
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, event_rx) = mpsc::channel(64);
        let queued = Arc::new(AtomicU64::new(0));
        let status = Arc::new(Mutex::new(LinkStatus::default()));
        let identity = options.connection.identity();
        let session = Session {
            options,
            tls,
            events,
            commands: command_rx,
            responses: commands.clone(),
            queued: queued.clone(),
            status: status.clone(),
            twin: Twin::default(),
            outbox: Outbox::default(),
        };
        tokio::spawn(session.run());
        let boot = sas::unix_seconds(SystemTime::now());
        Ok((
            IotHub {
                identity,
                commands,
                queued,
                status,
                next_message: AtomicU64::new(1),
                boot,
            },
            event_rx,
        ))
    }

    /// The connection's state.
    pub fn status(&self) -> LinkStatus {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        status.queued = self.queued.load(Ordering::Relaxed) as usize;
        status
    }

    /// Sends a reported-properties patch (a JSON object) as it is.
    pub fn report_raw(&self, patch: Value) {
        let _ = self.commands.send(Command::Report(patch));
    }
}

#[async_trait::async_trait]
impl Upstream for IotHub {
    async fn send(&self, message: UpstreamMessage) -> Result<(), SendError> {
        let mut properties = message.message.properties.clone();
        properties.push(("wedge-module".into(), message.module.clone()));
        properties.push(("wedge-output".into(), message.output.clone()));
        // Unique per device and boot, stable across resends: receivers de-duplicate on it.
        let message_id = format!(
            "{}-{}",
            self.boot,
            self.next_message.fetch_add(1, Ordering::Relaxed)
        );
        let telemetry = Telemetry {
            application: &properties,
            content_type: message.message.content_type.as_deref(),
            content_encoding: message.message.content_encoding.as_deref(),
            message_id: Some(&message_id),
            correlation_id: None,
            creation_time: Some(message.enqueued),
        };
        let topic = self
            .identity
            .telemetry_topic(&telemetry)
            .map_err(|e| SendError::Invalid(e.to_string()))?;
        if topic.len() + message.message.body.len() > MAX_MESSAGE_BYTES {
            return Err(SendError::TooLarge(MAX_MESSAGE_BYTES as u32));
        }
        if self.queued.load(Ordering::Relaxed) as usize >= MAX_QUEUED {
            return Err(SendError::Full);
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.commands
            .send(Command::Telemetry {
                topic,
                payload: message.message.body,
            })
            .map_err(|_| SendError::Full)
    }

    async fn report(&self, module: &str, patch: Value) -> Result<(), String> {
        self.report_raw(json!({ "wedge": { "modules": { module: { "properties": patch } } } }));
        Ok(())
    }
}

/// Telemetry not yet acknowledged, in order, and which of it is on the wire.
#[derive(Default)]
struct Outbox {
    next_seq: u64,
    entries: BTreeMap<u64, (String, Vec<u8>)>,
    /// Sequence numbers sent on this connection and not yet acknowledged, by packet id.
    in_flight: HashMap<u16, u64>,
    /// The next sequence number to send.
    cursor: u64,
    /// Publishes handed to rumqttc, in order, waiting for their packet id: `Some(seq)` for
    /// telemetry, `None` for twin and method traffic.
    awaiting_pkid: VecDeque<Option<u64>>,
}

impl Outbox {
    fn push(&mut self, topic: String, payload: Vec<u8>) {
        self.entries.insert(self.next_seq, (topic, payload));
        self.next_seq += 1;
    }

    /// A new connection: everything unacknowledged is sent again, from the oldest.
    fn rewind(&mut self) {
        self.in_flight.clear();
        self.awaiting_pkid.clear();
        self.cursor = self.entries.keys().next().copied().unwrap_or(self.next_seq);
    }

    /// The next entry to put on the wire, if the in-flight window has room.
    fn next_to_send(&mut self) -> Option<(u64, String, Vec<u8>)> {
        if !self.has_room() {
            return None;
        }
        let (&seq, (topic, payload)) = self.entries.range(self.cursor..).next()?;
        self.cursor = seq + 1;
        Some((seq, topic.clone(), payload.clone()))
    }

    fn has_room(&self) -> bool {
        self.in_flight.len() + self.awaiting_pkid.iter().flatten().count() < MAX_IN_FLIGHT
    }

    fn has_unsent(&self) -> bool {
        self.entries.range(self.cursor..).next().is_some()
    }

    fn acknowledged(&mut self, pkid: u16) -> bool {
        match self.in_flight.remove(&pkid) {
            Some(seq) => self.entries.remove(&seq).is_some(),
            None => false,
        }
    }
}

struct Session {
    options: IotHubOptions,
    tls: Arc<rustls::ClientConfig>,
    events: mpsc::Sender<HubEvent>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Method answers come back through the command queue.
    responses: mpsc::UnboundedSender<Command>,
    queued: Arc<AtomicU64>,
    status: Arc<Mutex<LinkStatus>>,
    twin: Twin,
    outbox: Outbox,
}

impl Session {
    fn set_status(&self, update: impl FnOnce(&mut LinkStatus)) {
        update(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn run(mut self) {
        let mut backoff = BACKOFF_START;
        loop {
            match self.connection().await {
                Ok(()) => backoff = BACKOFF_START,
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "IoT Hub connection failed");
                    self.set_status(|s| {
                        s.connected = false;
                        s.last_error = Some(error.clone());
                    });
                }
            }
            self.twin.on_disconnected();
            if self.wait(jitter(backoff)).await.is_err() {
                return; // the host dropped the handle
            }
            backoff = (backoff * 2).min(BACKOFF_CAP);
        }
    }

    /// Waits out a reconnect delay, still queueing commands. `Err` when the handle is gone.
    async fn wait(&mut self, delay: Duration) -> Result<(), String> {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return Ok(()),
                command = self.commands.recv() => match command {
                    None => return Err("the IotHub handle was dropped".into()),
                    Some(command) => self.on_command(command, None).await?,
                },
            }
        }
    }

    /// Handles a command from the handle. `client` is the connection once the hub has
    /// accepted it (CONNACK), `None` before and between connections: telemetry and reported
    /// patches are queued either way, a method answer without a connection is dropped (the hub
    /// gave up on the call with the connection).
    async fn on_command(
        &mut self,
        command: Command,
        client: Option<&AsyncClient>,
    ) -> Result<(), String> {
        match command {
            Command::Telemetry { topic, payload } => self.outbox.push(topic, payload),
            Command::Report(patch) => {
                let actions = self
                    .twin
                    .report(patch, Instant::now())
                    .unwrap_or_else(|e| vec![Action::Warn(e.to_string())]);
                self.act(actions, client).await?;
            }
            Command::MethodResponse {
                status,
                rid,
                payload,
            } => {
                if let Some(client) = client {
                    let topic = topics::method_response_topic(i32::from(status), &rid);
                    self.publish(client, topic, payload.into_bytes(), None)?;
                }
            }
        }
        Ok(())
    }

    fn mqtt_options(&self) -> Result<MqttOptions, String> {
        let cs = &self.options.connection;
        let identity = cs.identity();
        let token = sas::password(cs, SystemTime::now(), self.options.token_ttl)
            .map_err(|e| e.to_string())?
            .ok_or("X.509 authentication is not supported yet")?;
        if token.expires_at() <= sas::unix_seconds(SystemTime::now()) {
            return Err("the SharedAccessSignature in the connection string has expired".into());
        }
        let mut options =
            MqttOptions::new(identity.client_id(), cs.connect_host(), self.options.port);
        options
            .set_credentials(
                identity.username(Some(topics::DEVICE_CLIENT_TYPE)),
                token.expose(),
            )
            .set_keep_alive(Duration::from_secs(60))
            .set_clean_session(true)
            .set_max_packet_size(MAX_MESSAGE_BYTES + 64 * 1024, MAX_MESSAGE_BYTES + 64 * 1024)
            .set_inflight(MAX_IN_FLIGHT as u16 + 16)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                self.tls.clone(),
            )));
        Ok(options)
    }

    /// One connection, from CONNECT until it fails or the token needs renewing (`Ok`).
    async fn connection(&mut self) -> Result<(), String> {
        let options = self.mqtt_options()?;
        let issued = sas::unix_seconds(SystemTime::now());
        let expires = issued + self.options.token_ttl.as_secs();
        let renew_in = Duration::from_secs(sas::renew_at(issued, expires).saturating_sub(issued));
        let renew_at = tokio::time::Instant::now() + renew_in;
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        // One task owns `poll()` (it is not cancel-safe: a request taken from the queue could
        // be lost mid-write); this loop reads its events from a channel.
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
            let twin_deadline = self
                .twin
                .next_deadline()
                .map(tokio::time::Instant::from_std);
            let sendable = connected && self.outbox.has_room() && self.outbox.has_unsent();
            let step: Result<bool, String> = tokio::select! {
                event = events.recv() => match event {
                    None => Err("the MQTT event loop ended".to_string()),
                    Some(Err(e)) => Err(describe(&e)),
                    Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        connected = true;
                        self.on_connected(&client).await.map(|()| true)
                    }
                    Some(Ok(event)) => self.on_event(event, &client).await.map(|()| true),
                },
                command = self.commands.recv() => match command {
                    None => Ok(false),
                    Some(command) => {
                        let client = connected.then_some(&client);
                        self.on_command(command, client).await.map(|()| true)
                    }
                },
                () = std::future::ready(()), if sendable => match self.outbox.next_to_send() {
                    Some((seq, topic, payload)) => self.publish(&client, topic, payload, Some(seq)).map(|()| true),
                    None => Ok(true),
                },
                () = sleep_until_opt(twin_deadline) => {
                    let actions = self.twin.tick(Instant::now());
                    self.act(actions, connected.then_some(&client)).await.map(|()| true)
                }
                () = tokio::time::sleep_until(renew_at) => {
                    tracing::info!("renewing the SAS token: reconnecting");
                    Ok(false)
                }
            };
            match step {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let _ = client.try_disconnect();
        drop(poller);
        result
    }

    async fn on_connected(&mut self, client: &AsyncClient) -> Result<(), String> {
        tracing::info!(host = %self.options.connection.connect_host(), "connected to IoT Hub");
        self.set_status(|s| {
            s.connected = true;
            s.last_error = None;
        });
        let identity = self.options.connection.identity();
        let mut filters = vec![
            topics::TWIN_RESPONSE_FILTER.to_string(),
            topics::TWIN_DESIRED_FILTER.to_string(),
        ];
        filters.push(topics::METHODS_FILTER.to_string());
        if identity.module_id.is_none() {
            filters.push(identity.c2d_filter());
        }
        for filter in filters {
            client
                .try_subscribe(filter, QoS::AtLeastOnce)
                .map_err(|e| e.to_string())?;
        }
        let actions = self.twin.on_connected(Instant::now());
        self.act(actions, Some(client)).await
    }

    fn publish(
        &mut self,
        client: &AsyncClient,
        topic: String,
        payload: Vec<u8>,
        seq: Option<u64>,
    ) -> Result<(), String> {
        client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .map_err(|e| e.to_string())?;
        self.outbox.awaiting_pkid.push_back(seq);
        Ok(())
    }

    async fn on_event(&mut self, event: Event, client: &AsyncClient) -> Result<(), String> {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(Some(seq)) = self.outbox.awaiting_pkid.pop_front() {
                    self.outbox.in_flight.insert(pkid, seq);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) if self.outbox.acknowledged(ack.pkid) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.set_status(|s| s.acknowledged += 1);
            }
            Event::Incoming(Packet::Publish(publish)) => {
                let topic = publish.topic.clone();
                match Incoming::parse(&topic) {
                    Ok(incoming) => {
                        self.on_incoming(incoming, publish.payload.to_vec(), client)
                            .await?
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring a message on an unexpected topic")
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn on_incoming(
        &mut self,
        incoming: Incoming,
        payload: Vec<u8>,
        client: &AsyncClient,
    ) -> Result<(), String> {
        match incoming {
            Incoming::MethodRequest { name, rid } => {
                let (respond, answer) = oneshot::channel();
                let payload = String::from_utf8_lossy(&payload).into_owned();
                let _ = self
                    .events
                    .send(HubEvent::Method {
                        name,
                        payload,
                        respond,
                    })
                    .await;
                let responses = self.responses.clone();
                tokio::spawn(async move {
                    let (status, payload) = answer
                        .await
                        .unwrap_or((500, r#"{"error":"no answer"}"#.into()));
                    let _ = responses.send(Command::MethodResponse {
                        status,
                        rid,
                        payload,
                    });
                });
                Ok(())
            }
            Incoming::C2d { properties, .. } => {
                let _ = self
                    .events
                    .send(HubEvent::C2d(topics::c2d_message(&properties, payload)))
                    .await;
                Ok(())
            }
            twin => {
                let actions = self.twin.on_incoming(&twin, &payload, Instant::now());
                self.act(actions, Some(client)).await
            }
        }
    }

    /// Carries out what the twin machine asks. It asks to publish only while connected (it
    /// queues otherwise and sends on the next connect), so `client` is there whenever it does.
    async fn act(
        &mut self,
        actions: Vec<Action>,
        client: Option<&AsyncClient>,
    ) -> Result<(), String> {
        for action in actions {
            match action {
                Action::Publish { topic, payload } => match client {
                    Some(client) => self.publish(client, topic, payload, None)?,
                    None => tracing::debug!(
                        topic,
                        "twin publish while disconnected: it is re-sent on connect"
                    ),
                },
                Action::DesiredModules { version, modules } => {
                    let _ = self
                        .events
                        .send(HubEvent::Desired { version, modules })
                        .await;
                }
                Action::Warn(message) => tracing::warn!("twin: {message}"),
            }
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
            format!("the hub refused the connection ({code:?}): check the device id and key")
        }
        other => other.to_string(),
    }
}

/// TLS: the public roots (IoT Hub's certificates chain to them) plus an optional CA file.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<rustls::ClientConfig, IotHubError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let error = |reason: String| IotHubError::CaFile {
            path: path.clone(),
            reason,
        };
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .map_err(|e| error(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| error(e.to_string()))?;
        if certs.is_empty() {
            return Err(error("no certificates in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| error(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth())
}
