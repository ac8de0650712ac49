//! Azure IoT Hub Device Provisioning Service (DPS) over MQTT: the device learns its hub and
//! device id from an ID scope and an attestation (a symmetric key, a group enrollment's key, or
//! an X.509 certificate), then connects to that hub as usual.
//!
//! `machine.rs` is the I/O-free exchange, `key.rs` the credentials, `runner.rs` one
//! provisioning over rumqttc with a deadline. Not covered: TPM attestation (DPS does not offer
//! it over MQTT), certificate issuance from a CSR (preview), MQTT over WebSockets.

mod key;
mod machine;
mod runner;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub use key::{KEY_NAME, derive_device_key, password, resource_uri};
pub use machine::{DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER, RESPONSE_FILTER, Registration, Step};
pub use runner::provision;

use super::connection_string::Secret;
use super::sas::SasError;
use crate::link::tls::{ClientIdentity, TlsFileError};

/// DPS's public endpoint.
pub const GLOBAL_ENDPOINT: &str = "global.azure-devices-provisioning.net";
/// The DPS MQTT API version ("Communicate with DPS using the MQTT protocol").
pub const API_VERSION: &str = "2019-03-31";

/// How the device proves who it is to DPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attestation {
    /// The device's own key (an individual enrollment), or one derived from a group key.
    SymmetricKey(Secret),
    /// A client certificate whose CN is the registration id.
    X509(ClientIdentity),
}

/// Everything one provisioning needs.
#[derive(Debug, Clone)]
pub struct DpsOptions {
    /// The DPS instance's ID scope (`0ne…`).
    pub id_scope: String,
    /// The registration id: the MQTT client id, and the device id unless DPS says otherwise.
    pub registration_id: String,
    /// The device's proof.
    pub attestation: Attestation,
    /// The DPS host.
    pub host: String,
    /// Its MQTT over TLS port (8883).
    pub port: u16,
    /// CA certificates trusted in addition to the public roots.
    pub ca_file: Option<PathBuf>,
    /// What the register request carries as `payload` (custom allocation data; the IoT Plug
    /// and Play model id goes here as `modelId`).
    pub payload: Option<Value>,
    /// Lifetime of the SAS token signed for DPS.
    pub token_ttl: Duration,
}

/// What DPS assigned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Assignment {
    /// The IoT hub's host name (`registrationState.assignedHub`).
    pub hub: String,
    /// The device id in that hub (`registrationState.deviceId`).
    pub device_id: String,
    /// The payload DPS returned (a custom allocation policy's data), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// Why a provisioning did not end with an assignment. Never holds a key or a token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DpsError {
    /// The key is not base64.
    #[error("the DPS key {0}")]
    Key(#[from] SasError),
    /// The CA file, certificate or key is unusable.
    #[error("{0}")]
    Tls(String),
    /// DPS cannot be reached (network, DNS, TLS transport).
    #[error("DPS is unreachable: {0}")]
    Unreachable(String),
    /// DPS refused the connection: the attestation was not accepted.
    #[error(
        "DPS refused the connection: {0} (check the ID scope, the registration id and its key or certificate: a group key that is not the enrollment's is refused so)"
    )]
    NotAuthorized(String),
    /// DPS answered a request with an error status.
    #[error("DPS refused the request with {status}: {message}{}", code_suffix(.code))]
    Refused {
        /// The HTTP-style status of the answer topic.
        status: u16,
        /// DPS's `errorCode`.
        code: Option<u64>,
        /// DPS's `message`.
        message: String,
    },
    /// DPS ended the registration without assigning the device.
    #[error("DPS could not assign the device ({status}): {message}{}", code_suffix(.code))]
    Failed {
        /// `failed` or `disabled`.
        status: String,
        /// `registrationState.errorCode`.
        code: Option<u64>,
        /// `registrationState.errorMessage`.
        message: String,
    },
    /// No assignment within the deadline.
    #[error("DPS did not assign the device within {0:?}")]
    Timeout(Duration),
    /// DPS answered something that is not its protocol.
    #[error("unexpected answer from DPS: {0}")]
    Protocol(String),
}

impl From<TlsFileError> for DpsError {
    fn from(error: TlsFileError) -> Self {
        DpsError::Tls(error.to_string())
    }
}

impl DpsError {
    /// Whether trying again later may succeed (the network, DPS busy), as opposed to a
    /// configuration DPS refuses.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DpsError::Unreachable(_) | DpsError::Timeout(_) | DpsError::Protocol(_)
        ) || matches!(self, DpsError::Refused { status, .. } if *status == 429 || *status >= 500)
    }
}

fn code_suffix(code: &Option<u64>) -> String {
    code.map(|c| format!(" (error code {c})"))
        .unwrap_or_default()
}

/// The MQTT username: `{idScope}/registrations/{registrationId}/api-version=2019-03-31`, with
/// wedge's version as `ClientVersion` as the SDKs add theirs.
pub fn username(id_scope: &str, registration_id: &str) -> String {
    format!(
        "{id_scope}/registrations/{registration_id}/api-version={API_VERSION}&ClientVersion={}",
        super::url_encode(concat!("wedge/", env!("CARGO_PKG_VERSION")))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_as_the_docs_have_it() {
        assert_eq!(
            username("0ne00000A0A", "dev-1"),
            format!(
                "0ne00000A0A/registrations/dev-1/api-version=2019-03-31&ClientVersion=wedge%2F{}",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}
