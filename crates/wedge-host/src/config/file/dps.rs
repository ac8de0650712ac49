//! The `[upstream.dps]` table of an IoT Hub upstream: provisioning through the Device
//! Provisioning Service instead of a connection string.
//!
//! ```toml
//! [upstream]
//! kind = "iothub"
//! [upstream.dps]
//! id-scope = "0ne00000A0A"
//! registration-id = "sensor-7"        # default: the machine's host name
//! group-key-file = "/etc/wedge/group.key"   # or symmetric-key-file, or cert-file + key-file
//! global-endpoint = "global.azure-devices-provisioning.net"   # host, or host:port
//! payload = { site = "hall 7" }
//! model-id = "dtmi:com:example:Sensor;1"
//! ```
//!
//! The table sits inside the `kind`-tagged `[upstream]`, where toml cannot keep spans: errors
//! name the line of `[upstream]` and the field.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Locator, secret_source};
use crate::config::{DeploymentError, DpsAttestationSpec, DpsSpec};

/// DPS's public endpoint and port.
const GLOBAL_ENDPOINT: &str = "global.azure-devices-provisioning.net";
const DPS_PORT: u16 = 8883;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct FileDps {
    id_scope: String,
    registration_id: Option<String>,
    symmetric_key: Option<String>,
    symmetric_key_env: Option<String>,
    symmetric_key_file: Option<PathBuf>,
    group_key: Option<String>,
    group_key_env: Option<String>,
    group_key_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    global_endpoint: Option<String>,
    payload: Option<toml::Table>,
    model_id: Option<String>,
}

/// The DPS settings; `connection_string` and `certificate` say whether `[upstream]` also has a
/// connection string or a `cert-file`/`key-file` of its own, which DPS replaces.
pub(super) fn parse(
    at: &Locator<'_>,
    base: &Path,
    span: Range<usize>,
    dps: FileDps,
    connection_string: bool,
    certificate: bool,
) -> Result<DpsSpec, DeploymentError> {
    let error = |field: &str, message: &str| at.error(span.clone(), field, message);
    if connection_string {
        return Err(error(
            "upstream.dps",
            "give either a connection string or an `[upstream.dps]` section, not both",
        ));
    }
    if certificate {
        return Err(error(
            "upstream.cert-file",
            "with DPS the device certificate goes in `[upstream.dps]` (`cert-file`, `key-file`)",
        ));
    }
    if dps.id_scope.is_empty() || !dps.id_scope.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(error(
            "upstream.dps.id-scope",
            "must be the DPS instance's ID scope: letters and digits, e.g. \"0ne00000A0A\"",
        ));
    }
    if let Some(id) = &dps.registration_id {
        check_registration_id(id).map_err(|e| error("upstream.dps.registration-id", &e))?;
    }
    let key = secret_source(
        base,
        "symmetric-key",
        dps.symmetric_key,
        dps.symmetric_key_env,
        dps.symmetric_key_file,
    )
    .map_err(|e| error("upstream.dps", &e))?;
    let group = secret_source(
        base,
        "group-key",
        dps.group_key,
        dps.group_key_env,
        dps.group_key_file,
    )
    .map_err(|e| error("upstream.dps", &e))?;
    let certificate = match (dps.cert_file, dps.key_file) {
        (Some(cert), Some(key)) => Some((base.join(cert), base.join(key))),
        (Some(_), None) => {
            return Err(error(
                "upstream.dps.cert-file",
                "needs `key-file`, the certificate's private key",
            ));
        }
        (None, Some(_)) => {
            return Err(error(
                "upstream.dps.key-file",
                "needs `cert-file`, the device certificate",
            ));
        }
        (None, None) => None,
    };
    let attestation = match (key, group, certificate) {
        (Some(key), None, None) => DpsAttestationSpec::SymmetricKey(key),
        (None, Some(group), None) => DpsAttestationSpec::GroupKey(group),
        (None, None, Some((cert_file, key_file))) => DpsAttestationSpec::X509 {
            cert_file,
            key_file,
        },
        (None, None, None) => {
            return Err(error(
                "upstream.dps",
                "needs an attestation: `symmetric-key-file` (individual enrollment), `group-key-file` (group enrollment) or `cert-file` + `key-file` (X.509)",
            ));
        }
        _ => {
            return Err(error(
                "upstream.dps",
                "give one attestation: a symmetric key, a group key or a certificate",
            ));
        }
    };
    let endpoint = dps.global_endpoint.as_deref().unwrap_or(GLOBAL_ENDPOINT);
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    error(
                        "upstream.dps.global-endpoint",
                        &format!("`{port}` is not a port"),
                    )
                })?,
        ),
        None => (endpoint, DPS_PORT),
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(error(
            "upstream.dps.global-endpoint",
            "must be a host name, optionally with `:port`",
        ));
    }
    let mut payload = dps
        .payload
        .map(|table| serde_json::to_value(table).expect("a TOML table is JSON"));
    if let Some(model_id) = &dps.model_id {
        if model_id.is_empty() || !model_id.starts_with("dtmi:") {
            return Err(error(
                "upstream.dps.model-id",
                "must be a DTDL model id (`dtmi:…;1`)",
            ));
        }
        // IoT Plug and Play devices announce their model to DPS in the payload.
        let object = payload.get_or_insert_with(|| serde_json::json!({}));
        object["modelId"] = model_id.clone().into();
    }
    Ok(DpsSpec {
        id_scope: dps.id_scope,
        registration_id: dps.registration_id,
        attestation,
        host: host.to_owned(),
        port,
        payload,
        model_id: dps.model_id,
    })
}

/// DPS registration ids: up to 128 characters, letters, digits and `-._`, beginning and ending
/// with a letter or digit (lower case is what DPS stores; it compares case-insensitively).
pub(crate) fn check_registration_id(id: &str) -> Result<(), String> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let ok = (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        && edge(id.chars().next())
        && edge(id.chars().last());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a DPS registration id: 1 to 128 letters, digits and `-._`, starting and ending with a letter or digit"
        ))
    }
}
