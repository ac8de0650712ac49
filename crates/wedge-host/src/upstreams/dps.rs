//! An IoT Hub upstream whose identity comes from the Device Provisioning Service: provisioned
//! once, kept in the data dir (`DATA_DIR/dps-assignment.json`, private) with a fingerprint of
//! the DPS settings, and used from there on every start, with no DPS round trip, so a device
//! boots offline into its hub. It provisions again when the deployment's DPS settings change
//! (the fingerprint differs), and when the hub refuses the identity (CONNACK "not authorized"
//! or "bad user name or password": the device was deleted or moved) or refuses the connection
//! [`REFUSALS_BEFORE_REPROVISIONING`] times in a row.
//!
//! [`DpsHub`] stands in for the [`IotHub`] of the current assignment and is replaced with a new
//! one when re-provisioned; the host's [`HubEvents`] are fed from whichever is current.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use wedge_core::{SendError, Upstream, UpstreamMessage};
use wedge_hub::iothub::connection_string::{ConnectionString, Credential, Secret};
use wedge_hub::iothub::dps::{self, Assignment, Attestation, DpsOptions};
use wedge_hub::iothub::sas;
use wedge_hub::iothub::session::{ClientIdentity, IotHub, IotHubOptions};
use wedge_hub::{Cloud, Drain, FailureKind, HubEvents, LinkStatus};

use crate::config::{DpsAttestationSpec, DpsSpec};

use super::CloudLink;

/// The file the assignment is kept in.
const FILE: &str = "dps-assignment.json";
/// How long one provisioning may take.
const DEADLINE: Duration = Duration::from_secs(60);
/// Backoff between failed provisionings: from 1 s doubling to 5 min.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// How often the current link's status is looked at for a refused identity.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// Refused connections in a row (TLS refused, throttled…) after which DPS is asked again.
pub(crate) const REFUSALS_BEFORE_REPROVISIONING: u32 = 6;

/// The assignment as kept in the data dir.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Stored {
    /// Of the DPS settings it was provisioned with (see [`fingerprint`]).
    fingerprint: String,
    registration_id: String,
    assignment: Assignment,
    /// When DPS assigned it, Unix milliseconds.
    provisioned_at_unix_ms: u64,
}

/// What the hub connection is made with, besides the assignment.
pub(crate) struct HubSettings {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) port: Option<u16>,
}

/// Who the device is to DPS: its registration id, its attestation with the secret read, and
/// the fingerprint a stored assignment must carry to be used.
pub(crate) struct Identity {
    pub(crate) registration_id: String,
    attestation: Attestation,
    fingerprint: String,
}

impl Identity {
    /// Reads the secrets of `spec` (never logged) and the host name when no registration id
    /// is set.
    ///
    /// # Errors
    /// A key cannot be read or is not base64, a certificate or key cannot be read, the
    /// registration id cannot be found.
    pub(crate) fn of(spec: &DpsSpec) -> anyhow::Result<Identity> {
        let registration_id = match &spec.registration_id {
            Some(id) => id.clone(),
            None => host_name()?,
        };
        let (attestation, proof) = match &spec.attestation {
            DpsAttestationSpec::SymmetricKey(source) => {
                let key = source
                    .read()
                    .map_err(|e| anyhow::anyhow!("upstream.dps symmetric key: {e}"))?;
                sas::sign(&key, "").context("upstream.dps symmetric key")?;
                (Attestation::SymmetricKey(Secret::new(key.clone())), key)
            }
            DpsAttestationSpec::GroupKey(source) => {
                let group = source
                    .read()
                    .map_err(|e| anyhow::anyhow!("upstream.dps group key: {e}"))?;
                let key = dps::derive_device_key(&group, &registration_id)
                    .context("upstream.dps group key")?;
                let proof = key.expose().to_owned();
                (Attestation::SymmetricKey(key), proof)
            }
            DpsAttestationSpec::X509 {
                cert_file,
                key_file,
            } => {
                let cert = std::fs::read(cert_file)
                    .with_context(|| format!("upstream.dps cert-file {}", cert_file.display()))?;
                let identity = ClientIdentity {
                    cert_file: cert_file.clone(),
                    key_file: key_file.clone(),
                };
                identity.load()?;
                let proof = base64::engine::general_purpose::STANDARD.encode(cert);
                (Attestation::X509(identity), proof)
            }
        };
        let fingerprint = fingerprint(spec, &registration_id, &proof);
        Ok(Identity {
            registration_id,
            attestation,
            fingerprint,
        })
    }

    /// The assignment kept in `data_dir` for this identity: `Ok(None)` when there is none,
    /// `Err` with the hub it was for when one is kept for other DPS settings (it will be
    /// provisioned again).
    pub(crate) fn stored(&self, data_dir: &Path) -> Result<Option<StoredAssignment>, String> {
        match load(&data_dir.join(FILE)) {
            None => Ok(None),
            Some(stored) if stored.fingerprint == self.fingerprint => Ok(Some(StoredAssignment {
                hub: stored.assignment.hub,
                device_id: stored.assignment.device_id,
                provisioned_at_unix_ms: stored.provisioned_at_unix_ms,
            })),
            Some(stored) => Err(stored.assignment.hub),
        }
    }
}

/// What `wedge check` shows of a kept assignment.
pub(crate) struct StoredAssignment {
    pub(crate) hub: String,
    pub(crate) device_id: String,
    pub(crate) provisioned_at_unix_ms: u64,
}

/// Reads the secrets, loads the stored assignment and starts: connected straight to the stored
/// hub when the settings match, provisioning in the background otherwise.
///
/// # Errors
/// A key cannot be read or is not base64, the registration id cannot be found.
pub(crate) fn start(
    spec: &DpsSpec,
    hub: HubSettings,
    drain: Drain,
    data_dir: &Path,
) -> anyhow::Result<CloudLink> {
    let Identity {
        registration_id,
        attestation,
        fingerprint,
    } = Identity::of(spec)?;
    let options = DpsOptions {
        id_scope: spec.id_scope.clone(),
        registration_id: registration_id.clone(),
        attestation,
        host: spec.host.clone(),
        port: spec.port,
        ca_file: hub.ca_file.clone(),
        payload: spec.payload.clone(),
        token_ttl: sas::DEFAULT_TTL,
    };
    let path = data_dir.join(FILE);
    let stored = load(&path).filter(|stored| stored.fingerprint == fingerprint);
    let (desired_tx, desired) = watch::channel(None);
    let (methods_tx, methods) = mpsc::channel(16);
    let (c2d_tx, c2d) = mpsc::channel(64);
    let shared = Arc::new(Shared::default());
    let supervisor = Supervisor {
        shared: shared.clone(),
        options,
        hub,
        drain,
        path,
        fingerprint,
        model_id: spec.model_id.clone(),
        forward: Forward {
            desired: desired_tx,
            methods: methods_tx,
            c2d: c2d_tx,
        },
    };
    let task = tokio::spawn(supervisor.run(stored));
    *shared.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    let events = HubEvents {
        desired,
        methods,
        c2d,
    };
    Ok((Arc::new(DpsHub { shared }), events))
}

/// The machine's host name, lower-cased: the default registration id.
fn host_name() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read the host name for the DPS registration id: set `registration-id`")?;
    let name = name.trim().to_ascii_lowercase();
    crate::config::check_registration_id(&name).map_err(|e| {
        anyhow::anyhow!(
            "the host name cannot be the DPS registration id ({e}): set `registration-id`"
        )
    })?;
    Ok(name)
}

/// A keyed digest of the settings that make the identity: ID scope, registration id,
/// attestation, payload. The endpoint is not one of them: where DPS is reached does not change
/// who the device is. Keyed with the key (or the certificate), so a new key re-provisions and
/// the file says nothing about the key.
fn fingerprint(spec: &DpsSpec, registration_id: &str, proof: &str) -> String {
    let kind = match spec.attestation {
        DpsAttestationSpec::SymmetricKey(_) => "symmetric-key",
        DpsAttestationSpec::GroupKey(_) => "group-key",
        DpsAttestationSpec::X509 { .. } => "x509",
    };
    let settings = json!([spec.id_scope, registration_id, kind, spec.payload]).to_string();
    let key = base64::engine::general_purpose::STANDARD.encode(proof);
    sas::sign(&key, &settings).unwrap_or_default()
}

fn load(path: &Path) -> Option<Stored> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(stored) => Some(stored),
        Err(e) => {
            tracing::warn!(error = %e, file = %path.display(), "ignoring an unreadable DPS assignment: provisioning again");
            None
        }
    }
}

#[derive(Default)]
struct Shared {
    current: Mutex<Option<Arc<IotHub>>>,
    /// For `wedge status`: where the identity came from, or what provisioning is doing.
    identity: Mutex<Value>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    fn current(&self) -> Option<Arc<IotHub>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_identity(&self, identity: Value) {
        *self.identity.lock().unwrap_or_else(|e| e.into_inner()) = identity;
    }
}

/// The upstream the host holds: the current assignment's [`IotHub`], if there is one yet.
pub(crate) struct DpsHub {
    shared: Arc<Shared>,
}

impl Drop for DpsHub {
    fn drop(&mut self) {
        if let Some(task) = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl Cloud for DpsHub {
    fn kind(&self) -> &'static str {
        "iothub"
    }

    fn report_raw(&self, patch: Value) {
        match self.shared.current() {
            Some(hub) => hub.report_raw(patch),
            None => tracing::debug!("not provisioned yet: a reported patch is not sent"),
        }
    }

    fn status(&self) -> LinkStatus {
        match self.shared.current() {
            Some(hub) => hub.status(),
            None => LinkStatus {
                last_error: self
                    .shared
                    .identity
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())["error"]
                    .as_str()
                    .map(String::from),
                ..LinkStatus::default()
            },
        }
    }

    fn identity(&self) -> Option<Value> {
        Some(
            self.shared
                .identity
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

#[async_trait::async_trait]
impl Upstream for DpsHub {
    /// Before the first assignment the hub's limits cannot be checked against its identity;
    /// the link drops (and counts) what it cannot send.
    fn admit(&self, message: &UpstreamMessage) -> Result<(), SendError> {
        match self.shared.current() {
            Some(hub) => hub.admit(message),
            None => Ok(()),
        }
    }

    async fn report(&self, module: &str, patch: Value) -> Result<(), String> {
        match self.shared.current() {
            Some(hub) => hub.report(module, patch).await,
            None => Err("the device is not provisioned yet (DPS has not assigned a hub)".into()),
        }
    }
}

/// Where the events of the current hub go.
struct Forward {
    desired: watch::Sender<Option<wedge_hub::Desired>>,
    methods: mpsc::Sender<wedge_hub::MethodCall>,
    c2d: mpsc::Sender<wedge_hub::C2d>,
}

struct Supervisor {
    shared: Arc<Shared>,
    options: DpsOptions,
    hub: HubSettings,
    drain: Drain,
    path: PathBuf,
    fingerprint: String,
    model_id: Option<String>,
    forward: Forward,
}

impl Supervisor {
    async fn run(self, mut stored: Option<Stored>) {
        let mut from_store = stored.is_some();
        let mut backoff = BACKOFF_START;
        loop {
            let current = match stored.take() {
                Some(current) => current,
                None => match self.provision().await {
                    Ok(current) => {
                        backoff = BACKOFF_START;
                        current
                    }
                    Err(error) => {
                        let wait = backoff + backoff.mul_f64(fastrand_jitter() / 4.0);
                        tracing::warn!(%error, ?wait, "DPS provisioning failed");
                        self.shared.set_identity(json!({
                            "source": "dps",
                            "registration-id": self.options.registration_id,
                            "error": format!("provisioning: {error}; retrying in {} s", wait.as_secs()),
                        }));
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(BACKOFF_CAP);
                        continue;
                    }
                },
            };
            let hub = match self.connect(&current) {
                Ok(hub) => hub,
                Err(error) => {
                    tracing::error!(%error, "cannot connect to the assigned hub: provisioning again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                    continue;
                }
            };
            self.shared.set_identity(json!({
                "source": "dps",
                "registration-id": current.registration_id,
                "hub": current.assignment.hub,
                "device-id": current.assignment.device_id,
                "provisioned-at-unix-ms": current.provisioned_at_unix_ms,
                "from-store": from_store,
            }));
            let refusal = self.watch(&hub).await;
            tracing::warn!(hub = %current.assignment.hub, device = %current.assignment.device_id, reason = %refusal, "the hub refuses the identity: provisioning again");
            *self
                .shared
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
            drop(hub);
            from_store = false;
        }
    }

    async fn provision(&self) -> Result<Stored, dps::DpsError> {
        self.shared.set_identity(json!({
            "source": "dps",
            "registration-id": self.options.registration_id,
            "error": "provisioning",
        }));
        let assignment = dps::provision(&self.options, DEADLINE).await?;
        tracing::info!(hub = %assignment.hub, device = %assignment.device_id, "DPS assigned the device");
        let stored = Stored {
            fingerprint: self.fingerprint.clone(),
            registration_id: self.options.registration_id.clone(),
            assignment,
            provisioned_at_unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        let bytes = serde_json::to_vec_pretty(&stored).expect("serializable");
        if let Err(e) = wedge_core::files::write_atomic(&self.path, &bytes) {
            // Still usable now; the next start provisions again.
            tracing::error!(error = %e, file = %self.path.display(), "cannot keep the DPS assignment");
        }
        Ok(stored)
    }

    /// Starts the link to the assigned hub and the forwarding of its events.
    fn connect(&self, current: &Stored) -> anyhow::Result<Forwarding> {
        let (credential, client_identity) = match &self.options.attestation {
            Attestation::SymmetricKey(key) => (
                Credential::SharedAccessKey {
                    key: key.clone(),
                    key_name: None,
                },
                None,
            ),
            Attestation::X509(identity) => (Credential::X509, Some(identity.clone())),
        };
        let mut options = IotHubOptions::new(ConnectionString {
            host_name: current.assignment.hub.clone(),
            device_id: current.assignment.device_id.clone(),
            module_id: None,
            gateway_host_name: None,
            credential,
        });
        options.ca_file = self.hub.ca_file.clone();
        options.client_identity = client_identity;
        options.port = self.hub.port.unwrap_or(options.port);
        options.model_id = self.model_id.clone();
        let (hub, events) = IotHub::start(options, self.drain.clone())?;
        let hub = Arc::new(hub);
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(hub.clone());
        Ok(Forwarding {
            hub,
            task: tokio::spawn(forward(events, self.forward.clone_senders())),
        })
    }

    /// Returns once the hub refuses the identity.
    async fn watch(&self, forwarding: &Forwarding) -> String {
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let status = forwarding.hub.status();
            if let Some(reason) = refused_identity(&status) {
                return reason;
            }
        }
    }
}

/// Why `status` says the hub refuses the identity, if it does.
fn refused_identity(status: &LinkStatus) -> Option<String> {
    let retry = status.retry.as_ref()?;
    let error = status.last_error.clone().unwrap_or_default();
    let credentials = error.contains("not authorized") || error.contains("bad user name");
    let refused = retry.reason == FailureKind::Refused;
    (refused && (credentials || retry.failures >= REFUSALS_BEFORE_REPROVISIONING)).then_some(error)
}

impl Forward {
    fn clone_senders(&self) -> Forward {
        Forward {
            desired: self.desired.clone(),
            methods: self.methods.clone(),
            c2d: self.c2d.clone(),
        }
    }
}

/// The current hub and the task feeding its events to the host; both end when dropped.
struct Forwarding {
    hub: Arc<IotHub>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(events: HubEvents, to: Forward) {
    let HubEvents {
        mut desired,
        mut methods,
        mut c2d,
    } = events;
    loop {
        tokio::select! {
            changed = desired.changed() => {
                if changed.is_err() { return; }
                let latest = desired.borrow_and_update().clone();
                if latest.is_some() {
                    to.desired.send_replace(latest);
                }
            }
            Some(call) = methods.recv() => { let _ = to.methods.send(call).await; }
            Some(message) = c2d.recv() => { let _ = to.c2d.send(message).await; }
            else => return,
        }
    }
}

fn fastrand_jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(SystemTime::now()) % 1000) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;

    fn spec(scope: &str, host: &str, payload: Option<Value>) -> DpsSpec {
        DpsSpec {
            id_scope: scope.into(),
            registration_id: None,
            attestation: DpsAttestationSpec::GroupKey(SecretSource::Env("K".into())),
            host: host.into(),
            port: 8883,
            payload,
            model_id: None,
        }
    }

    #[test]
    fn the_fingerprint_follows_identity_settings_not_the_endpoint() {
        let base = fingerprint(&spec("s", "a", None), "dev", "a2V5");
        assert_eq!(
            base,
            fingerprint(&spec("s", "elsewhere", None), "dev", "a2V5")
        );
        for other in [
            fingerprint(&spec("t", "a", None), "dev", "a2V5"),
            fingerprint(&spec("s", "a", None), "dev2", "a2V5"),
            fingerprint(&spec("s", "a", None), "dev", "b3RoZXI="),
            fingerprint(&spec("s", "a", Some(json!({"site": 1}))), "dev", "a2V5"),
        ] {
            assert_ne!(base, other);
        }
        assert!(!base.contains("a2V5") && !base.is_empty());
    }
}
