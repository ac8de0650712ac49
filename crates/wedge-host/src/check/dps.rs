//! An IoT Hub identity from the Device Provisioning Service: the attestation's secret can be
//! read and used (the group key derives the device key; an X.509 certificate is valid and
//! matches its key), the registration id is known, and where the device will connect: the DPS
//! endpoint always (a re-provisioning needs it), and the hub of the assignment kept in the
//! data dir, if any (the hub a restart connects to without asking DPS).

use std::path::Path;
use std::time::SystemTime;

use wedge_hub::iothub::session::ClientIdentity;

use super::Check;
use super::certificate::rfc3339;
use super::credentials::device_identity;
use super::upstream::{Endpoint, Trust};
use crate::config::{DpsAttestationSpec, DpsSpec};
use crate::upstreams::dps::Identity;

const ATTESTATION: &str = "dps attestation";
const ASSIGNMENT: &str = "dps assignment";

/// The lines of the DPS identity of `spec` and the endpoints to check. `ca_file` and `port`
/// are the `[upstream]` settings the hub connection is made with.
pub(super) fn check(
    spec: &DpsSpec,
    ca_file: Option<&Path>,
    port: Option<u16>,
    data_dir: &Path,
    now: SystemTime,
) -> (Vec<Endpoint>, Vec<Check>) {
    let client = match &spec.attestation {
        DpsAttestationSpec::X509 {
            cert_file,
            key_file,
        } => Some(ClientIdentity {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        }),
        _ => None,
    };
    let mut checks = Vec::new();
    if let Some(client) = &client {
        checks.extend(device_identity(client, now));
    }
    let trust = |identity: Option<ClientIdentity>| Trust {
        ca_file: ca_file.map(Path::to_path_buf),
        identity,
    };
    let mut endpoints = vec![Endpoint {
        role: "dps",
        host: spec.host.clone(),
        port: spec.port,
        tls: Some(trust(client.clone())),
    }];
    let identity = match Identity::of(spec) {
        Ok(identity) => identity,
        Err(e) => {
            // The error names the field and the file, never the key.
            checks.push(Check::error(
                ATTESTATION,
                format!("{e:#}"),
                "give the enrollment's key (base64, as the DPS portal shows it) in the key file, readable by the user wedge runs as",
            ));
            return (endpoints, checks);
        }
    };
    let kind = match spec.attestation {
        DpsAttestationSpec::SymmetricKey(_) => "individual enrollment, symmetric key",
        DpsAttestationSpec::GroupKey(_) => {
            "group enrollment, device key derived from the group key"
        }
        DpsAttestationSpec::X509 { .. } => "X.509 certificate",
    };
    checks.push(Check::ok(
        ATTESTATION,
        format!(
            "registration {} in ID scope {} ({kind})",
            identity.registration_id, spec.id_scope
        ),
    ));
    match identity.stored(data_dir) {
        Ok(Some(stored)) => {
            let at = rfc3339(i64::try_from(stored.provisioned_at_unix_ms / 1000).unwrap_or(0));
            checks.push(Check::ok(
                ASSIGNMENT,
                format!(
                    "device {} on {}, provisioned {at}; a restart connects there without DPS",
                    stored.device_id, stored.hub
                ),
            ));
            endpoints.push(Endpoint {
                role: "upstream",
                host: stored.hub,
                port: port.unwrap_or(8883),
                tls: Some(trust(client)),
            });
        }
        Ok(None) => checks.push(Check::ok(
            ASSIGNMENT,
            "none kept yet: the first start registers with DPS",
        )),
        Err(hub) => checks.push(Check::warning(
            ASSIGNMENT,
            format!("the kept assignment (to {hub}) was made with other DPS settings"),
            "nothing to do: the next start provisions again; DPS must be reachable then",
        )),
    }
    (endpoints, checks)
}
