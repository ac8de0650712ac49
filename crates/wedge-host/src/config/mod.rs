//! The deployment file, `wedge.toml`: the upstream the host connects to, how much it keeps
//! while offline, how module binaries are fetched, and the modules and routes it starts with
//! (the base a desired deployment is merged over). Read by [`Deployment::load`]; every error
//! names the file, line, column and field.

mod file;

use std::collections::BTreeMap;
use std::path::PathBuf;

use wedge_core::TopicTemplate;
use wedge_runtime::spec::{ModuleSpec, Route};
use wedge_store::{OutboxLimits, WhenFull};

pub use file::DeploymentError;
pub(crate) use file::check_registration_id;

/// Default size of the outbox.
pub const DEFAULT_OUTBOX_KB: u64 = 64 << 10;

/// A validated deployment: every module file exists and is a component, every route names
/// modules that exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// Where the deployment came from (for messages).
    pub source: PathBuf,
    /// The upstream the host connects to.
    pub upstream: UpstreamSpec,
    /// Modules by name.
    pub modules: BTreeMap<String, ModuleDecl>,
    /// Routes by name.
    pub routes: BTreeMap<String, Route>,
    /// How much `$upstream` telemetry is kept while the upstream cannot take it, and for how
    /// long.
    pub outbox: OutboxLimits,
    /// How module binaries are fetched.
    pub sources: SourcesSpec,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` (the default): nowhere.
    pub metrics: Option<MetricsSpec>,
}

/// The metrics listener (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSpec {
    /// The address and port to listen on (`listen`).
    pub listen: std::net::SocketAddr,
    /// How long `/readyz` keeps answering 200 while the upstream is not connected, after the
    /// start or after the connection was lost (`offline-grace-s`): a reconnect (an IoT Hub SAS
    /// renewal is one) must not make the device look broken.
    pub offline_grace: std::time::Duration,
}

/// `offline-grace-s` when the deployment does not set it.
pub const DEFAULT_OFFLINE_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// How module binaries named by a deployment (`https://…`, `oci://…`) are fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcesSpec {
    /// Registry credentials: a Docker-style `config.json` (`{"auths": {"host:port": {"auth":
    /// base64("user:password")}}}`) in a file or in an environment variable. Never in the twin.
    pub registry_auth: Option<SecretSource>,
    /// Largest binary accepted.
    pub max_bytes: u64,
    /// Longest one fetch may take.
    pub timeout: std::time::Duration,
}

impl Default for SourcesSpec {
    fn default() -> Self {
        SourcesSpec {
            registry_auth: None,
            max_bytes: 64 << 20,
            timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// The outbox limits when the deployment does not set them: 64 MiB, no expiry, refuse new
/// messages when full (the modules get `full` and decide).
pub fn default_outbox_limits() -> OutboxLimits {
    OutboxLimits {
        max_bytes: DEFAULT_OUTBOX_KB << 10,
        ttl: None,
        when_full: WhenFull::Reject,
    }
}

/// Where `$upstream` messages go and where desired configuration comes from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum UpstreamSpec {
    /// The embedded local hub in the data directory (the default).
    #[default]
    Local,
    /// Azure IoT Hub over MQTT/TLS.
    IotHub {
        /// Who the device is: a connection string, or what DPS assigns.
        identity: HubIdentity,
        /// CA certificates (PEM) trusted in addition to the public roots.
        ca_file: Option<PathBuf>,
        /// The device certificate (PEM) for X.509 authentication (`x509=true`); always given
        /// together with `key_file`.
        cert_file: Option<PathBuf>,
        /// The certificate's private key (PEM).
        key_file: Option<PathBuf>,
        /// MQTT over TLS port; 8883 when absent.
        port: Option<u16>,
    },
    /// Any MQTT broker.
    Mqtt(MqttSpec),
}

/// How an IoT Hub device knows its identity.
#[derive(Debug, Clone, PartialEq)]
pub enum HubIdentity {
    /// From a device connection string.
    ConnectionString(SecretSource),
    /// Assigned by the Device Provisioning Service (`[upstream.dps]`).
    Dps(DpsSpec),
}

/// Provisioning through DPS (`[upstream.dps]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DpsSpec {
    /// The DPS instance's ID scope.
    pub id_scope: String,
    /// The registration id; `None`: the machine's host name, read at start.
    pub registration_id: Option<String>,
    /// How the device proves who it is.
    pub attestation: DpsAttestationSpec,
    /// The DPS endpoint (`global-endpoint`, default `global.azure-devices-provisioning.net`).
    pub host: String,
    /// Its port (8883, or the one `global-endpoint` names).
    pub port: u16,
    /// The register request's payload, with `modelId` when `model-id` is set.
    pub payload: Option<serde_json::Value>,
    /// The IoT Plug and Play model id (`model-id`).
    pub model_id: Option<String>,
}

/// A DPS attestation as the deployment gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum DpsAttestationSpec {
    /// An individual enrollment's symmetric key.
    SymmetricKey(SecretSource),
    /// A group enrollment's key, from which the device key is derived.
    GroupKey(SecretSource),
    /// An X.509 certificate (CN = registration id) and its key.
    X509 {
        /// The certificate (PEM).
        cert_file: PathBuf,
        /// Its private key (PEM).
        key_file: PathBuf,
    },
}

/// A generic MQTT broker upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSpec {
    /// Broker host name or address.
    pub host: String,
    /// Broker port; 8883 with TLS, 1883 without, when absent.
    pub port: Option<u16>,
    /// MQTT over TLS (the default).
    pub tls: bool,
    /// CA certificates (PEM) trusted in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// The device's name in topics.
    pub device: String,
    /// The MQTT client id; `wedge-<device>` when absent.
    pub client_id: Option<String>,
    /// The username, if the broker wants one.
    pub username: Option<String>,
    /// Where the password comes from.
    pub password: Option<SecretSource>,
    /// Where telemetry goes.
    pub telemetry_topic: TopicTemplate,
    /// A topic whose retained JSON document overlays module configuration.
    pub config_topic: Option<TopicTemplate>,
    /// A topic the reported state is published on, retained.
    pub reported_topic: Option<TopicTemplate>,
}

/// The default telemetry topic of the MQTT upstream.
pub const DEFAULT_MQTT_TELEMETRY_TOPIC: &str = "wedge/{device}/{module}/{output}";

/// Where a secret comes from. The deployment file names it; the value is read at start and never
/// logged.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the deployment file (convenient, but the file must then be private).
    Inline(String),
    /// An environment variable of the host process.
    Env(String),
    /// A file (relative to the deployment file).
    File(PathBuf),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            SecretSource::Env(var) => write!(f, "Env({var})"),
            SecretSource::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

impl SecretSource {
    /// The secret, trimmed of surrounding white space.
    ///
    /// # Errors
    /// The variable is unset or the file unreadable; the message names which.
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretSource::Inline(value) => Ok(value.trim().to_string()),
            SecretSource::Env(var) => std::env::var(var)
                .map(|v| v.trim().to_string())
                .map_err(|_| format!("environment variable {var} is not set")),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|v| v.trim().to_string())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// One module of the deployment file: where its binary is, and how it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleDecl {
    /// Absolute path of the component (`.wasm`).
    pub path: PathBuf,
    /// How it runs.
    pub spec: ModuleSpec,
}
