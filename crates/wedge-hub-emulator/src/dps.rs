//! [`DpsEmulator`]: the Azure IoT Hub Device Provisioning Service, device side of its MQTT API,
//! played over a [`Broker`], and the identity registry of the hub it assigns devices to.
//!
//! Facts from Microsoft's "Communicate with DPS using the MQTT protocol"
//! (`articles/iot-dps/iot-dps-mqtt-support.md`) and the REST reference of
//! `RegistrationOperationStatus`:
//! - CONNECT: client id = registration id, username
//!   `{idScope}/registrations/{registrationId}/api-version=2019-03-31` (more `&…` may follow), a
//!   SAS password `SharedAccessSignature sr={idScope}%2Fregistrations%2F{registrationId}&sig=…
//!   &se=…&skn=registration` or, with X.509, the client certificate whose CN is the registration
//!   id;
//! - the device subscribes `$dps/registrations/res/#`, registers on
//!   `$dps/registrations/PUT/iotdps-register/?$rid={rid}` with
//!   `{"registrationId": …, "payload": …}`, is answered on
//!   `$dps/registrations/res/202/?$rid={rid}&retry-after={s}` with
//!   `{"operationId": …, "status": "assigning"}`, polls
//!   `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}` and gets
//!   `res/200` with `{"operationId", "status": "assigned", "registrationState": {"assignedHub",
//!   "deviceId", "payload", …}}`.
//! - group enrollments: the device key is base64(HMAC-SHA256(base64-decoded group key,
//!   registration id)).
//!
//! The credentials are checked in the gateway in front of Mosquitto (`gateway/`), which also
//! checks the devices' connections to the assigned hub against the registry DPS fills, as IoT
//! Hub checks them against its own. As with `$iothub` topics, a broker cannot scope `$dps`
//! topics to a connection: the service answers a registration only when that registration id
//! is connected and authenticated, and all connected DPS clients see all answers (provision one
//! device at a time).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::broker::{GATEWAY_DPS_USER, GATEWAY_HUB_USER};
use crate::gateway::{Authenticate, Gateway, Login, NOT_AUTHORIZED, Verdict};
use crate::{Broker, sas};

const REGISTER: &str = "$dps/registrations/PUT/iotdps-register/";
const POLL: &str = "$dps/registrations/GET/iotdps-get-operationstatus/";
const TIMEOUT: Duration = Duration::from_secs(10);

/// How an enrollment proves its devices' identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attestation {
    /// A symmetric key (base64).
    SymmetricKey(String),
    /// An X.509 client certificate signed by the broker's CA, CN = registration id.
    X509,
}

/// Where DPS assigns a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The hub's host name.
    pub hub: String,
    /// The device id in that hub.
    pub device_id: String,
}

/// How the emulated DPS starts.
#[derive(Debug, Clone)]
pub struct DpsOptions {
    /// The ID scope.
    pub id_scope: String,
    /// The hub devices are assigned to unless [`DpsEmulator::assign`] says otherwise. Use a
    /// name the broker's certificate is valid for (`localhost` or `127.0.0.1`), as devices
    /// connect to it through the gateway.
    pub hub: String,
    /// The `retry-after` of each 202 answer, in seconds.
    pub retry_after_s: u64,
}

impl Default for DpsOptions {
    fn default() -> Self {
        DpsOptions {
            id_scope: "0ne00000A0A".into(),
            hub: "localhost".into(),
            retry_after_s: 1,
        }
    }
}

/// One register request as the service received it.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registration id.
    pub registration_id: String,
    /// The request's `payload` member (`Null` when absent).
    pub payload: Value,
    /// When the request arrived.
    pub at: Instant,
}

/// A device credential the hub knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HubCredential {
    Key(String),
    X509,
}

#[derive(Default)]
struct State {
    individual: HashMap<String, Attestation>,
    groups: Vec<String>,
    assignments: HashMap<String, Assignment>,
    returned_payloads: HashMap<String, Value>,
    /// Authenticated DPS connections: connection number -> (registration id, its credential).
    connected: HashMap<u64, (String, HubCredential)>,
    next_connection: u64,
    operations: HashMap<String, Operation>,
    /// The hub's registry: (hub, device id) -> credential.
    hub_devices: HashMap<(String, String), HubCredential>,
    registrations: Vec<Registration>,
    polls: Vec<Instant>,
    /// Usernames of accepted hub connections, in order.
    hub_logins: Vec<String>,
    /// Connections refused by the gateway, with why.
    refusals: Vec<String>,
    subscribed: bool,
}

struct Operation {
    registration_id: String,
    credential: HubCredential,
    created: Instant,
}

struct Shared {
    state: Mutex<State>,
    revision: watch::Sender<u64>,
    options: DpsOptions,
    gateway_password: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.revision.send_modify(|r| *r += 1);
    }
}

/// The DPS service side and the hub's identity registry. Its tasks stop when it is dropped.
pub struct DpsEmulator {
    shared: Arc<Shared>,
    gateway: Gateway,
    task: JoinHandle<()>,
}

impl Drop for DpsEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DpsEmulator {
    /// Starts the gateway in front of `broker` (started with [`crate::BrokerOptions::gateway`])
    /// and the service connection, returning once it is subscribed.
    pub async fn start(broker: &Broker, options: DpsOptions) -> Result<DpsEmulator> {
        let gateway_password = broker
            .gateway_password()
            .context("start the broker with BrokerOptions { gateway: true, .. }")?
            .to_owned();
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            revision: watch::channel(0).0,
            options,
            gateway_password,
        });
        let authenticate: Authenticate = {
            let shared = shared.clone();
            Arc::new(move |login| authenticate(&shared, login))
        };
        let gateway = Gateway::start(broker, authenticate).await?;

        let (user, password) = broker.service_credentials();
        let mut mqtt = MqttOptions::new("wedge-dps-emulator", "127.0.0.1", broker.port());
        mqtt.set_credentials(user, password)
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(broker.service_tls_config()?),
            )));
        let (client, mut eventloop) = AsyncClient::new(mqtt, 64);
        let task = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            for filter in [REGISTER, POLL] {
                                let _ =
                                    client.try_subscribe(format!("{filter}#"), QoS::AtLeastOnce);
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            shared.lock().subscribed = true;
                            shared.changed();
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if let Some((topic, body)) = serve(&shared, &p.topic, &p.payload) {
                                let _ = client.try_publish(topic, QoS::AtLeastOnce, false, body);
                            }
                            shared.changed();
                        }
                        Ok(_) => {}
                        // Reconnect backoff (the next poll reconnects), not a wait for a condition.
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        let emulator = DpsEmulator {
            shared,
            gateway,
            task,
        };
        emulator
            .wait_until(TIMEOUT, |s| s.subscribed)
            .await
            .context("the DPS emulator did not subscribe")?;
        Ok(emulator)
    }

    /// The ID scope.
    pub fn id_scope(&self) -> &str {
        &self.shared.options.id_scope
    }

    /// The gateway's loopback port: the DPS endpoint and the hubs' MQTT port alike.
    pub fn port(&self) -> u16 {
        self.gateway.port()
    }

    /// `127.0.0.1:{port}`, a `global-endpoint` for wedge.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// Adds (or replaces) an individual enrollment.
    pub fn enroll(&self, registration_id: &str, attestation: Attestation) {
        self.shared
            .lock()
            .individual
            .insert(registration_id.to_owned(), attestation);
    }

    /// Adds a symmetric-key group enrollment with primary key `key` (base64).
    pub fn enroll_group(&self, key: &str) {
        self.shared.lock().groups.push(key.to_owned());
    }

    /// Where the next registrations of `registration_id` go (default: the options' hub, device
    /// id = registration id).
    pub fn assign(&self, registration_id: &str, assignment: Assignment) {
        self.shared
            .lock()
            .assignments
            .insert(registration_id.to_owned(), assignment);
    }

    /// The `payload` of the registration state returned to `registration_id` (what a custom
    /// allocation policy would return).
    pub fn return_payload(&self, registration_id: &str, payload: Value) {
        self.shared
            .lock()
            .returned_payloads
            .insert(registration_id.to_owned(), payload);
    }

    /// Deletes a device from the hub's registry: its next connection is refused.
    pub fn remove_device(&self, hub: &str, device_id: &str) {
        self.shared
            .lock()
            .hub_devices
            .remove(&(hub.to_owned(), device_id.to_owned()));
    }

    /// Register requests received so far.
    pub fn registrations(&self) -> Vec<Registration> {
        self.shared.lock().registrations.clone()
    }

    /// When operation-status polls arrived.
    pub fn polls(&self) -> Vec<Instant> {
        self.shared.lock().polls.clone()
    }

    /// Usernames of the hub connections the gateway accepted, in order.
    pub fn hub_logins(&self) -> Vec<String> {
        self.shared.lock().hub_logins.clone()
    }

    /// Connections the gateway refused, with the reason.
    pub fn refusals(&self) -> Vec<String> {
        self.shared.lock().refusals.clone()
    }

    /// Waits until `n` register requests have arrived.
    pub async fn wait_for_registrations(&self, n: usize, timeout: Duration) -> Result<()> {
        self.wait_until(timeout, |s| s.registrations.len() >= n)
            .await
            .with_context(|| format!("waiting for {n} DPS registrations"))
    }

    /// Waits until `n` hub connections have been accepted.
    pub async fn wait_for_hub_logins(&self, n: usize, timeout: Duration) -> Result<()> {
        self.wait_until(timeout, |s| s.hub_logins.len() >= n)
            .await
            .with_context(|| format!("waiting for {n} hub connections"))
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> Result<()> {
        crate::revision::wait_until(&self.shared.revision, "DPS emulator", timeout, || {
            done(&self.shared.lock())
        })
        .await
    }
}

/// Removes a DPS connection from the connected ones when it ends.
struct Connected(Arc<Shared>, u64);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.lock().connected.remove(&self.1);
        self.0.changed();
    }
}

/// The gateway's check of one CONNECT: a DPS registration or a device of an assigned hub.
fn authenticate(shared: &Arc<Shared>, login: &Login<'_>) -> Verdict {
    let connect = login.connect;
    let username = connect.username.clone().unwrap_or_default();
    let outcome = if username.contains("/registrations/") {
        dps_login(shared, login, &username).map(|credential| {
            let mut state = shared.lock();
            let number = state.next_connection;
            state.next_connection += 1;
            state
                .connected
                .insert(number, (connect.client_id.clone(), credential));
            let guard: Box<dyn Send> = Box::new(Connected(shared.clone(), number));
            (GATEWAY_DPS_USER, Some(guard))
        })
    } else {
        hub_login(shared, login, &username).map(|()| {
            shared.lock().hub_logins.push(username.clone());
            (GATEWAY_HUB_USER, None)
        })
    };
    let verdict = match outcome {
        Ok((user, guard)) => Verdict::Accept {
            user: user.to_owned(),
            password: shared.gateway_password.clone(),
            guard,
        },
        Err(reason) => {
            tracing::info!("gateway refused {username:?}: {reason}");
            shared.lock().refusals.push(format!("{username}: {reason}"));
            Verdict::Refuse(NOT_AUTHORIZED)
        }
    };
    shared.changed();
    verdict
}

fn dps_login(shared: &Shared, login: &Login<'_>, username: &str) -> Result<HubCredential, String> {
    let options = &shared.options;
    let mut parts = username.splitn(4, '/');
    let (scope, _, registration_id, api) = (
        parts.next().unwrap_or_default(),
        parts.next(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if scope != options.id_scope {
        return Err(format!("unknown ID scope {scope:?}"));
    }
    if !api.starts_with("api-version=") {
        return Err("no api-version in the username".into());
    }
    if login.connect.client_id != registration_id {
        return Err("the client id is not the registration id".into());
    }
    let state = shared.lock();
    if let Some(Attestation::X509) = state.individual.get(registration_id) {
        return match &login.certificate_cn {
            Some(cn) if cn == registration_id => Ok(HubCredential::X509),
            other => Err(format!(
                "certificate CN {other:?} is not the registration id"
            )),
        };
    }
    let token = login.connect.password_text().ok_or("no SAS token")?;
    let resource = format!("{scope}/registrations/{registration_id}");
    let skn = [None, Some("registration")];
    let now = sas::now_unix();
    let verify = |key: &str| sas::verify(token, &resource, key, &skn, now);
    if let Some(Attestation::SymmetricKey(key)) = state.individual.get(registration_id) {
        return verify(key).map(|()| HubCredential::Key(key.clone()));
    }
    let mut last = "no enrollment for this registration id".to_owned();
    for group in &state.groups {
        let derived = sas::sign(group, registration_id)?;
        match verify(&derived) {
            Ok(()) => return Ok(HubCredential::Key(derived)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn hub_login(shared: &Shared, login: &Login<'_>, username: &str) -> Result<(), String> {
    let mut parts = username.splitn(3, '/');
    let (hub, device) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if login.connect.client_id != device {
        return Err("the client id is not the device id".into());
    }
    let state = shared.lock();
    match state.hub_devices.get(&(hub.to_owned(), device.to_owned())) {
        None => Err(format!("no device {device:?} in hub {hub:?}")),
        Some(HubCredential::X509) => match &login.certificate_cn {
            Some(cn) if cn == device => Ok(()),
            other => Err(format!("certificate CN {other:?} is not the device id")),
        },
        Some(HubCredential::Key(key)) => {
            let token = login.connect.password_text().ok_or("no SAS token")?;
            let resource = format!("{hub}/devices/{device}");
            sas::verify(token, &resource, key, &[None], sas::now_unix())
        }
    }
}

/// The answer to a request on a `$dps` topic, if it is one.
fn serve(shared: &Shared, topic: &str, payload: &[u8]) -> Option<(String, Vec<u8>)> {
    let (tail, register) = match (topic.strip_prefix(REGISTER), topic.strip_prefix(POLL)) {
        (Some(tail), _) => (tail, true),
        (_, Some(tail)) => (tail, false),
        _ => return None,
    };
    let rid = query(tail, "$rid")?.to_owned();
    let retry_after = shared.options.retry_after_s;
    let respond = |status: u16, body: Value| {
        let mut topic = format!("$dps/registrations/res/{status}/?$rid={rid}");
        if status == 202 {
            topic.push_str(&format!("&retry-after={retry_after}"));
        }
        Some((topic, body.to_string().into_bytes()))
    };
    let error = |status: u16, code: u32, message: &str| {
        respond(
            status,
            json!({"errorCode": code, "trackingId": "emulated", "message": message,
                   "timestampUtc": humantime_now()}),
        )
    };
    let mut state = shared.lock();
    if register {
        let request: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        let Some(registration_id) = request["registrationId"].as_str() else {
            return error(400, 400_004, "the request has no registrationId");
        };
        let credential = state
            .connected
            .values()
            .find(|(id, _)| id == registration_id)
            .map(|(_, credential)| credential.clone());
        let Some(credential) = credential else {
            return error(401, 401_002, "the registration id is not the connection's");
        };
        state.registrations.push(Registration {
            registration_id: registration_id.to_owned(),
            payload: request["payload"].clone(),
            at: Instant::now(),
        });
        let operation_id = format!("4.{:016x}.{}", fastrand_u64(), state.registrations.len());
        state.operations.insert(
            operation_id.clone(),
            Operation {
                registration_id: registration_id.to_owned(),
                credential,
                created: Instant::now(),
            },
        );
        return respond(
            202,
            json!({"operationId": operation_id, "status": "assigning"}),
        );
    }
    state.polls.push(Instant::now());
    let Some(operation_id) = query(tail, "operationId") else {
        return error(400, 400_004, "no operationId");
    };
    let Some(operation) = state.operations.get(operation_id) else {
        return error(404, 404_201, "unknown operation");
    };
    if operation.created.elapsed() < Duration::from_secs(retry_after) {
        return respond(
            202,
            json!({"operationId": operation_id, "status": "assigning"}),
        );
    }
    let registration_id = operation.registration_id.clone();
    let credential = operation.credential.clone();
    let assignment = state
        .assignments
        .get(&registration_id)
        .cloned()
        .unwrap_or_else(|| Assignment {
            hub: shared.options.hub.clone(),
            device_id: registration_id.clone(),
        });
    state.hub_devices.insert(
        (assignment.hub.clone(), assignment.device_id.clone()),
        credential,
    );
    let now = humantime_now();
    let mut registration_state = json!({
        "registrationId": registration_id,
        "createdDateTimeUtc": now,
        "assignedHub": assignment.hub,
        "deviceId": assignment.device_id,
        "status": "assigned",
        "substatus": "initialAssignment",
        "lastUpdatedDateTimeUtc": now,
        "etag": "IjEi",
    });
    if let Some(payload) = state.returned_payloads.get(&registration_id) {
        registration_state["payload"] = payload.clone();
    }
    respond(
        200,
        json!({"operationId": operation_id, "status": "assigned",
               "registrationState": registration_state}),
    )
}

fn query<'t>(tail: &'t str, key: &str) -> Option<&'t str> {
    tail.strip_prefix('?')?.split('&').find_map(|pair| {
        pair.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

/// Now, as `2026-12-01T15:00:00Z` (the services' UTC timestamps).
fn humantime_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
