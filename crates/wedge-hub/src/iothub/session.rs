//! The IoT Hub upstream: a `Protocol` for the shared MQTT link. It connects with a fresh SAS
//! token (and reconnects before the token expires), or with an X.509 client certificate (no
//! password, no renewal), addresses telemetry with IoT Hub's property-bag topics, feeds twin
//! traffic to the I/O-free [`Twin`] machine, and hands desired configuration, direct methods
//! and cloud-to-device messages to the host ([`HubEvents`]) without waiting for it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use wedge_core::{MAX_BODY_BYTES, MAX_METHOD_PAYLOAD_BYTES, SendError, Upstream, UpstreamMessage};

use super::connection_string::{ConnectionString, Credential};
use super::sas;
use super::topics::{self, Identity, Incoming, Telemetry};
use super::twin::{Action, Twin, properties_patch};
use crate::Drain;
pub use crate::link::tls::{ClientIdentity, TlsFileError};
use crate::link::{
    self, Cloud, Commands, HubEvents, LinkHandle, LinkStatus, MAX_PENDING_METHODS, Protocol,
    Report, StatusCell, ToHost, Wire,
};

/// IoT Hub's limit for one device-to-cloud message, topic (property bag) included.
const MAX_MESSAGE_BYTES: usize = MAX_BODY_BYTES;
/// Stands in for a message id when checking a message's size before it has an id: as long as
/// any id the link assigns (`<store id>-<record id>`; store ids are 16 hex digits).
const LONGEST_MESSAGE_ID: &str = "0000000000000000-00000000000000000000";

/// How to reach the hub.
#[derive(Debug, Clone)]
pub struct IotHubOptions {
    /// The device (or module) identity and its credential.
    pub connection: ConnectionString,
    /// A PEM file of CA certificates trusted in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// The device certificate and key: required with an `x509=true` connection string, refused
    /// with any other.
    pub client_identity: Option<ClientIdentity>,
    /// MQTT over TLS port (8883).
    pub port: u16,
    /// Lifetime of the SAS tokens wedge signs.
    pub token_ttl: Duration,
    /// The IoT Plug and Play model id, announced as `&model-id=` in the username (Microsoft,
    /// "IoT Plug and Play conventions": the device sends it when it connects).
    pub model_id: Option<String>,
}

impl IotHubOptions {
    /// Options with the defaults: port 8883, one-hour tokens, public roots only.
    pub fn new(connection: ConnectionString) -> Self {
        IotHubOptions {
            connection,
            ca_file: None,
            client_identity: None,
            port: 8883,
            token_ttl: sas::DEFAULT_TTL,
            model_id: None,
        }
    }
}

/// Errors starting the upstream.
#[derive(Debug, thiserror::Error)]
pub enum IotHubError {
    /// The CA file, the client certificate or its key cannot be used.
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    /// The credential cannot produce a token.
    #[error("cannot sign a SAS token: {0}")]
    Sas(#[from] sas::SasError),
    /// `x509=true` without a client certificate.
    #[error(
        "the connection string says `x509=true`, which needs the device certificate: set `cert-file` and `key-file` in [upstream]"
    )]
    X509WithoutCertificate,
    /// A client certificate with a SAS credential: IoT Hub would authenticate with the token and
    /// ignore the certificate, which is surely not what was meant.
    #[error(
        "`cert-file` and `key-file` are for X.509 authentication: the connection string needs `x509=true` instead of `SharedAccessKey`/`SharedAccessSignature`"
    )]
    CertificateWithoutX509,
}

/// Requests from the handle (and from method calls being answered) to the connection task.
enum Command {
    Report(Report),
    MethodResponse {
        status: u16,
        rid: String,
        payload: String,
        /// Keeps the call counted among the unanswered until the answer is on its way.
        _pending: OwnedSemaphorePermit,
    },
}

/// The handle: an [`Upstream`] for the runtime. Cheap to share.
pub struct IotHub {
    identity: Identity,
    link: LinkHandle<Command>,
}

impl IotHub {
    /// Starts the connection task, which sends what `drain` holds. Returns the handle and the
    /// stream of events for the host.
    ///
    /// # Errors
    /// The CA file, the certificate or its key is unusable, the credential cannot sign a token,
    /// or a certificate is missing for `x509=true` (or given with a SAS credential). Checked
    /// now, so that a bad key is reported at start, not at every reconnect.
    pub fn start(options: IotHubOptions, drain: Drain) -> Result<(IotHub, HubEvents), IotHubError> {
        let x509 = options.connection.credential == Credential::X509;
        match (x509, &options.client_identity) {
            (true, None) => return Err(IotHubError::X509WithoutCertificate),
            (false, Some(_)) => return Err(IotHubError::CertificateWithoutX509),
            (true, Some(_)) => {}
            (false, None) => {
                sas::password(&options.connection, SystemTime::now(), options.token_ttl)?;
            }
        }
        let tls = Arc::new(link::tls::client_config_with_identity(
            options.ca_file.as_deref(),
            options.client_identity.as_ref(),
        )?);
        let (parts, events) = link::parts();
        let identity = options.connection.identity();
        let protocol = IotHubProtocol {
            identity: identity.clone(),
            options,
            tls,
            to_host: parts.to_host.clone(),
            answers: parts.commands.clone(),
            status: parts.status.clone(),
            // Far apart per process: see `Twin::starting_at`.
            twin: Twin::starting_at(Default::default(), u64::from(fastrand::u32(..)) << 16),
        };
        let link = link::start(protocol, parts, drain);
        Ok((IotHub { identity, link }, events))
    }
}

impl Cloud for IotHub {
    fn kind(&self) -> &'static str {
        "iothub"
    }

    fn report_raw(&self, patch: Value) {
        self.link.report_raw(patch, Command::Report);
    }

    fn status(&self) -> LinkStatus {
        self.link.status()
    }
}

#[async_trait::async_trait]
impl Upstream for IotHub {
    fn admit(&self, message: &UpstreamMessage) -> Result<(), SendError> {
        let topic = telemetry_topic(&self.identity, LONGEST_MESSAGE_ID, message)
            .map_err(SendError::Invalid)?;
        if topic.len() + message.message.body.len() > MAX_MESSAGE_BYTES {
            return Err(SendError::TooLarge(MAX_MESSAGE_BYTES as u32));
        }
        Ok(())
    }

    /// Waits only for the link to queue the patch (or refuse it), not for the hub.
    async fn report(&self, module: &str, patch: Value) -> Result<(), String> {
        self.link
            .report(properties_patch(module, patch), Command::Report)
            .await
    }
}

/// `devices/{id}/messages/events/` with the property bag: the module's properties, the source
/// module and output, content type and encoding, message id and creation time.
fn telemetry_topic(
    identity: &Identity,
    message_id: &str,
    message: &UpstreamMessage,
) -> Result<String, String> {
    let mut properties = message.message.properties.clone();
    properties.push(("wedge-module".into(), message.module.clone()));
    properties.push(("wedge-output".into(), message.output.clone()));
    let telemetry = Telemetry {
        application: &properties,
        content_type: message.message.content_type.as_deref(),
        content_encoding: message.message.content_encoding.as_deref(),
        message_id: Some(message_id),
        correlation_id: None,
        creation_time: Some(message.enqueued),
    };
    identity
        .telemetry_topic(&telemetry)
        .map_err(|e| e.to_string())
}

struct IotHubProtocol {
    identity: Identity,
    options: IotHubOptions,
    tls: Arc<rustls::ClientConfig>,
    to_host: ToHost,
    /// Method answers come back through the command queue.
    answers: Commands<Command>,
    status: StatusCell,
    twin: Twin,
}

impl Protocol for IotHubProtocol {
    type Command = Command;
    const PEER: &'static str = "IoT Hub";
    /// A persistent session, as the SDKs connect: C2D messages sent while the device is away
    /// wait at the hub (with a clean session the device "will receive only those messages that
    /// were sent to it after it successfully subscribed", .NET SDK `ClientOptions`). The
    /// subscriptions are still made on every connect.
    const CLEAN_SESSION: bool = false;

    /// With a SAS credential the password is a fresh token and the connection is renewed at
    /// 80 % of its life. With X.509 the TLS client certificate authenticates: the username
    /// alone is sent (no password flag: rumqttc omits an empty password, as the SDKs send
    /// none) and nothing expires on wedge's side.
    fn connect(&mut self) -> Result<(MqttOptions, Option<Duration>), String> {
        let cs = &self.options.connection;
        let now = SystemTime::now();
        let token = sas::password(cs, now, self.options.token_ttl).map_err(|e| e.to_string())?;
        let (password, renew_in) = match &token {
            Some(token) => {
                let issued = sas::unix_seconds(now);
                if token.expires_at() <= issued {
                    return Err(
                        "the SharedAccessSignature in the connection string has expired".into(),
                    );
                }
                let renew_at = sas::renew_at(issued, token.expires_at());
                (
                    token.expose(),
                    Some(Duration::from_secs(renew_at.saturating_sub(issued))),
                )
            }
            None => ("", None),
        };
        let mut options = MqttOptions::new(
            self.identity.client_id(),
            cs.connect_host(),
            self.options.port,
        );
        let mut username = self.identity.username(Some(topics::DEVICE_CLIENT_TYPE));
        if let Some(model_id) = &self.options.model_id {
            username.push_str("&model-id=");
            username.push_str(&super::url_encode(model_id));
        }
        options
            .set_credentials(username, password)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                self.tls.clone(),
            )));
        Ok((options, renew_in))
    }

    fn telemetry_topic(
        &self,
        message_id: &str,
        message: &UpstreamMessage,
    ) -> Result<String, String> {
        telemetry_topic(&self.identity, message_id, message)
    }

    fn on_connected(&mut self, wire: &mut Wire<'_>) -> Result<(), String> {
        let mut filters = vec![
            topics::TWIN_RESPONSE_FILTER.to_string(),
            topics::TWIN_DESIRED_FILTER.to_string(),
            topics::METHODS_FILTER.to_string(),
        ];
        if self.identity.module_id.is_none() {
            filters.push(self.identity.c2d_filter());
        }
        for filter in filters {
            wire.subscribe(filter)?;
        }
        let actions = self.twin.on_connected(Instant::now());
        self.act(actions, Some(wire))
    }

    fn on_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        wire: &mut Wire<'_>,
    ) -> Result<(), String> {
        match Incoming::parse(topic) {
            Ok(Incoming::MethodRequest { name, rid }) => {
                let payload = String::from_utf8_lossy(payload).into_owned();
                self.on_method(name, payload, rid, wire)
            }
            Ok(Incoming::C2d { properties, .. }) => {
                // Acknowledged by the host once a route took it, not on receipt.
                let message = topics::c2d_message(&properties, payload.to_vec());
                self.to_host.c2d(crate::C2d::new(message, wire.take_ack()));
                Ok(())
            }
            Ok(twin) => {
                let actions = self.twin.on_incoming(&twin, payload, Instant::now());
                self.act(actions, Some(wire))
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a message on an unexpected topic");
                Ok(())
            }
        }
    }

    /// Reported patches are queued with or without a connection (or refused, and the reporter
    /// told why); a method answer without one is dropped (the hub gave up on the call with the
    /// connection).
    fn on_command(&mut self, command: Command, wire: Option<&mut Wire<'_>>) -> Result<(), String> {
        match command {
            Command::Report(report) => {
                match self.twin.report(report.patch.clone(), Instant::now()) {
                    Ok(actions) => {
                        report.answer(&self.status, Ok(()));
                        self.act(actions, wire)
                    }
                    Err(e) => {
                        report.answer(&self.status, Err(e.to_string()));
                        Ok(())
                    }
                }
            }
            Command::MethodResponse {
                status,
                rid,
                payload,
                _pending,
            } => match wire {
                Some(wire) => self.answer_method(status, &rid, payload, wire),
                None => Ok(()),
            },
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.twin.next_deadline()
    }

    fn on_deadline(&mut self, wire: Option<&mut Wire<'_>>) -> Result<(), String> {
        let actions = self.twin.tick(Instant::now());
        self.act(actions, wire)
    }

    fn on_disconnected(&mut self) {
        self.twin.on_disconnected();
    }
}

impl IotHubProtocol {
    /// Carries out what the twin machine asks. It asks to publish only while connected (it
    /// queues otherwise and sends on the next connect), so `wire` is there whenever it does.
    fn act(&mut self, actions: Vec<Action>, mut wire: Option<&mut Wire<'_>>) -> Result<(), String> {
        for action in actions {
            match action {
                Action::Publish { topic, payload } => match wire.as_deref_mut() {
                    Some(wire) => wire.publish(topic, payload, false)?,
                    None => tracing::debug!(
                        topic,
                        "twin publish while disconnected: it is re-sent on connect"
                    ),
                },
                Action::Desired { version, wedge } => self.to_host.desired(version, wedge),
                Action::Warn(message) => tracing::warn!("twin: {message}"),
            }
        }
        Ok(())
    }

    /// A direct method: handed to the host, whose answer comes back as a command; with
    /// [`MAX_PENDING_METHODS`] calls unanswered already, answered 503 at once.
    fn on_method(
        &mut self,
        name: String,
        payload: String,
        rid: String,
        wire: &mut Wire<'_>,
    ) -> Result<(), String> {
        let answers = self.answers.clone();
        let status = self.status.clone();
        let call_rid = rid.clone();
        let answer = move |code: u16, payload: String, pending: OwnedSemaphorePermit| {
            let command = Command::MethodResponse {
                status: code,
                rid: call_rid,
                payload,
                _pending: pending,
            };
            if answers.try_send(command).is_err() {
                status.update(|s| s.dropped.method_answers_lost += 1);
                tracing::warn!("a direct method's answer was lost: the link's queue is full");
            }
        };
        match self.to_host.method(name, payload, answer) {
            Ok(()) => Ok(()),
            Err(_) => {
                let busy = serde_json::json!({
                    "error": format!("{MAX_PENDING_METHODS} direct methods are being answered already; try again later")
                });
                self.answer_method(503, &rid, busy.to_string(), wire)
            }
        }
    }

    /// Publishes a method's answer; one over IoT Hub's payload limit is replaced by a 413
    /// that says so (sent, it would be refused or, over the packet limit, fail the connection).
    fn answer_method(
        &self,
        status: u16,
        rid: &str,
        payload: String,
        wire: &mut Wire<'_>,
    ) -> Result<(), String> {
        let (status, payload) = if payload.len() > MAX_METHOD_PAYLOAD_BYTES {
            self.status
                .update(|s| s.dropped.method_answers_too_large += 1);
            tracing::warn!(
                bytes = payload.len(),
                "a direct method's answer is over the {MAX_METHOD_PAYLOAD_BYTES}-byte limit: answering 413"
            );
            let error = format!(
                "the answer is {} bytes, over IoT Hub's {MAX_METHOD_PAYLOAD_BYTES}-byte limit for a method payload",
                payload.len()
            );
            (413, serde_json::json!({ "error": error }).to_string())
        } else {
            (status, payload)
        };
        let topic = topics::method_response_topic(i32::from(status), rid);
        wire.publish(topic, payload.into_bytes(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain() -> Drain {
        let store = wedge_store::Store::open_in_memory().unwrap();
        Drain {
            outbox: store.outbox(wedge_store::OutboxLimits {
                max_bytes: 1 << 20,
                ttl: None,
                when_full: wedge_store::WhenFull::Reject,
            }),
            id_prefix: "0".into(),
            meta: store.meta(),
        }
    }

    fn options(connection: &str, identity: Option<ClientIdentity>) -> IotHubOptions {
        let mut options = IotHubOptions::new(ConnectionString::parse(connection).unwrap());
        options.client_identity = identity;
        options
    }

    fn start_error(options: IotHubOptions) -> String {
        match IotHub::start(options, drain()) {
            Ok(_) => panic!("started"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn x509_needs_a_certificate_and_sas_refuses_one() {
        let err = start_error(options("HostName=h;DeviceId=d;x509=true", None));
        assert!(
            err.contains("x509=true") && err.contains("cert-file"),
            "{err}"
        );
        let identity = ClientIdentity {
            cert_file: "dev.pem".into(),
            key_file: "dev.key".into(),
        };
        let err = start_error(options(
            "HostName=h;DeviceId=d;SharedAccessKey=a2V5",
            Some(identity),
        ));
        assert!(
            err.contains("cert-file") && err.contains("needs `x509=true`"),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_certificate_is_reported_at_start_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let identity = ClientIdentity {
            cert_file: dir.path().join("missing.pem"),
            key_file: dir.path().join("missing.key"),
        };
        let err = start_error(options("HostName=h;DeviceId=d;x509=true", Some(identity)));
        assert!(
            err.starts_with("cert-file ") && err.contains("missing.pem"),
            "{err}"
        );
    }

    #[test]
    fn x509_connects_with_the_username_alone_and_never_renews() {
        let (parts, _events) = link::parts::<Command>();
        let connection = ConnectionString::parse(
            "HostName=hub.example;DeviceId=dev1;GatewayHostName=127.0.0.1;x509=true",
        )
        .unwrap();
        let identity = connection.identity();
        let mut protocol = IotHubProtocol {
            identity,
            options: IotHubOptions::new(connection),
            tls: Arc::new(link::tls::client_config(None).unwrap()),
            to_host: parts.to_host,
            answers: parts.commands,
            status: parts.status,
            twin: Twin::default(),
        };
        let (options, renew_in) = protocol.connect().unwrap();
        assert_eq!(renew_in, None);
        let login = options.credentials().unwrap();
        assert!(
            login.username.starts_with("hub.example/dev1/?api-version="),
            "{}",
            login.username
        );
        assert!(!login.username.contains("model-id"), "{}", login.username);
        protocol.options.model_id = Some("dtmi:com:example:Thermostat;1".into());
        let (options, _) = protocol.connect().unwrap();
        let login = options.credentials().unwrap();
        // python3 -c 'import urllib.parse as u; print(u.quote("dtmi:com:example:Thermostat;1", safe=""))'
        assert!(
            login
                .username
                .ends_with("&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1"),
            "{}",
            login.username
        );
        // rumqttc sets the password flag only for a non-empty password.
        assert_eq!(login.password, "");
        assert_eq!(options.broker_address(), ("127.0.0.1".to_string(), 8883));
    }
}
