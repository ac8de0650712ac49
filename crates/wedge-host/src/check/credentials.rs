//! The upstream's credentials are present and well-formed: the IoT Hub connection string
//! parses and its key decodes (or its ready-made token has not expired), the X.509 device
//! certificate and key can be read, belong together and are valid now (warned 30 days ahead),
//! the MQTT password can be read. Reading the credentials also tells where the upstream
//! connects, so this is where its [`Endpoint`]s come from. No secret appears in a line.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use wedge_hub::iothub::connection_string::{ConnectionString, Credential};
use wedge_hub::iothub::sas;
use wedge_hub::iothub::session::ClientIdentity;

use super::Check;
use super::certificate::{CertInfo, Validity, days, rfc3339};
use super::upstream::{Endpoint, Trust};
use crate::config::{HubIdentity, SecretSource, UpstreamSpec};

/// A certificate or token expiring within this long is warned about.
pub(super) const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

const CONNECTION_STRING: &str = "upstream connection string";
const PASSWORD: &str = "upstream password";
const DEVICE_CERTIFICATE: &str = "device certificate";
const DEVICE_KEY: &str = "device key";

/// The credential lines of `spec` at `now`, and the endpoints to check (none when the
/// connection string cannot be read, as nothing then says where to connect). A DPS identity
/// is checked in `dps.rs`, with the assignment kept in `data_dir`.
pub(super) fn check(
    spec: &UpstreamSpec,
    data_dir: &Path,
    now: SystemTime,
) -> (Vec<Endpoint>, Vec<Check>) {
    match spec {
        UpstreamSpec::Local => (Vec::new(), Vec::new()),
        UpstreamSpec::IotHub {
            identity: HubIdentity::Dps(dps),
            ca_file,
            port,
            ..
        } => super::dps::check(dps, ca_file.as_deref(), *port, data_dir, now),
        UpstreamSpec::IotHub {
            identity: HubIdentity::ConnectionString(connection_string),
            ca_file,
            cert_file,
            key_file,
            port,
        } => {
            let identity = cert_file
                .clone()
                .zip(key_file.clone())
                .map(|(cert_file, key_file)| ClientIdentity {
                    cert_file,
                    key_file,
                });
            let mut checks = Vec::new();
            let Some(connection) = connection_string_check(connection_string, now, &mut checks)
            else {
                return (Vec::new(), checks);
            };
            match (&connection.credential, &identity) {
                (Credential::X509, None) => checks.push(Check::error(
                    DEVICE_CERTIFICATE,
                    "the connection string says `x509=true`, but no device certificate is configured",
                    "set `cert-file` and `key-file` in [upstream]",
                )),
                (Credential::X509, Some(identity)) => {
                    checks.extend(device_identity(identity, now));
                }
                (_, Some(_)) => checks.push(Check::error(
                    DEVICE_CERTIFICATE,
                    "`cert-file` and `key-file` are set, but the connection string authenticates with a shared access key or signature",
                    "use a connection string with `x509=true` (no `SharedAccessKey`), or remove `cert-file` and `key-file`",
                )),
                (_, None) => {}
            }
            let endpoint = Endpoint {
                role: "upstream",
                host: connection.connect_host().to_owned(),
                port: port.unwrap_or(8883),
                tls: Some(Trust {
                    ca_file: ca_file.clone(),
                    identity,
                }),
            };
            (vec![endpoint], checks)
        }
        UpstreamSpec::Mqtt(mqtt) => {
            let mut checks = Vec::new();
            if let Some(source) = &mqtt.password {
                checks.push(match source.read() {
                    Ok(_) => Check::ok(
                        PASSWORD,
                        format!(
                            "username {}, password read from {}",
                            mqtt.username.as_deref().unwrap_or("(none)"),
                            describe(source)
                        ),
                    ),
                    Err(e) => Check::error(PASSWORD, e, remedy_for(source, "the password")),
                });
            }
            let endpoint = Endpoint {
                role: "upstream",
                host: mqtt.host.clone(),
                port: mqtt.port.unwrap_or(if mqtt.tls { 8883 } else { 1883 }),
                tls: mqtt.tls.then(|| Trust {
                    ca_file: mqtt.ca_file.clone(),
                    identity: None,
                }),
            };
            (vec![endpoint], checks)
        }
    }
}

/// Reads and parses the connection string, pushing its line; the parsed string when usable.
fn connection_string_check(
    source: &SecretSource,
    now: SystemTime,
    checks: &mut Vec<Check>,
) -> Option<ConnectionString> {
    let text = match source.read() {
        Ok(text) => text,
        Err(e) => {
            checks.push(Check::error(
                CONNECTION_STRING,
                e,
                remedy_for(source, "the device connection string"),
            ));
            return None;
        }
    };
    // The parser's errors never hold a key or a signature (`ConnectionStringError`).
    let connection = match ConnectionString::parse(&text) {
        Ok(connection) => connection,
        Err(e) => {
            checks.push(Check::error(
                CONNECTION_STRING,
                format!("{} (from {})", e, describe(source)),
                "copy the device's connection string from the hub again: `HostName=<hub>.azure-devices.net;DeviceId=<id>;SharedAccessKey=<base64 key>` (or `x509=true`)",
            ));
            return None;
        }
    };
    let who = match &connection.module_id {
        Some(module) => format!(
            "module {module} of device {} on {}",
            connection.device_id, connection.host_name
        ),
        None => format!(
            "device {} on {}",
            connection.device_id, connection.host_name
        ),
    };
    checks.push(match &connection.credential {
        Credential::X509 => Check::ok(CONNECTION_STRING, format!("{who}, x509=true")),
        Credential::SharedAccessKey { .. } => {
            match sas::password(&connection, now, sas::DEFAULT_TTL) {
                Ok(_) => Check::ok(
                    CONNECTION_STRING,
                    format!("{who}, SharedAccessKey decodes and signs a token"),
                ),
                Err(e) => Check::error(
                    CONNECTION_STRING,
                    format!("{who}: {e}"),
                    "copy the device's primary key from the hub again",
                ),
            }
        }
        Credential::SharedAccessSignature(token) => {
            signature_check(&who, sas::signature_expiry(token.expose()), now)
        }
    });
    Some(connection)
}

/// A ready-made token: wedge cannot renew it, so its expiry is the device's.
fn signature_check(who: &str, expiry: Option<u64>, now: SystemTime) -> Check {
    let Some(expiry) = expiry else {
        return Check::error(
            CONNECTION_STRING,
            format!("{who}: the SharedAccessSignature has no expiry (`se=`)"),
            "give a SAS token as IoT Hub issues it (`SharedAccessSignature sr=…&sig=…&se=…`), or a SharedAccessKey",
        );
    };
    let at = rfc3339(i64::try_from(expiry).unwrap_or(i64::MAX));
    let now = sas::unix_seconds(now);
    let renew =
        "use a SharedAccessKey (wedge then signs and renews tokens itself), or issue a new token";
    if expiry <= now {
        Check::error(
            CONNECTION_STRING,
            format!("{who}: the SharedAccessSignature expired at {at}"),
            renew,
        )
    } else if expiry - now < EXPIRY_WARNING.as_secs() {
        Check::warning(
            CONNECTION_STRING,
            format!(
                "{who}: the SharedAccessSignature expires in {}, at {at}, and cannot be renewed",
                days(Duration::from_secs(expiry - now))
            ),
            renew,
        )
    } else {
        Check::ok(
            CONNECTION_STRING,
            format!("{who}: SharedAccessSignature valid until {at}"),
        )
    }
}

/// The device certificate's and key's lines. Also what a DPS registration with X.509 checks.
pub(super) fn device_identity(identity: &ClientIdentity, now: SystemTime) -> Vec<Check> {
    let mut checks = vec![device_certificate(&identity.cert_file, now)];
    // rustls checks that the key parses and belongs to the certificate; its errors name the
    // field and the file, never the key.
    match wedge_hub::tls::client_config_with_identity(None, Some(identity)) {
        Ok(_) => checks.push(Check::ok(
            DEVICE_KEY,
            format!(
                "{} is readable and matches the certificate",
                identity.key_file.display()
            ),
        )),
        Err(e) if e.field == "key-file" => checks.push(Check::error(
            DEVICE_KEY,
            e.to_string(),
            "give the private key (PEM) the device certificate was issued for, readable by the user wedge runs as",
        )),
        // A certificate that cannot be read is reported once, above.
        Err(_) => {}
    }
    checks
}

fn device_certificate(path: &Path, now: SystemTime) -> Check {
    let first = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())
        .and_then(|mut certs| match certs.next() {
            Some(cert) => cert.map_err(|e| e.to_string()),
            None => Err("no certificate in the file (expected a PEM `CERTIFICATE` block)".into()),
        })
        .and_then(|der| CertInfo::parse(&der));
    let info = match first {
        Ok(info) => info,
        Err(e) => {
            return Check::error(
                DEVICE_CERTIFICATE,
                format!("{}: {e}", path.display()),
                "give the device certificate (PEM), readable by the user wedge runs as",
            );
        }
    };
    let what = format!("{} ({})", path.display(), info.subject);
    match info.validity_at(now) {
        Validity::Expired => Check::error(
            DEVICE_CERTIFICATE,
            format!(
                "the device certificate {what} expired at {}",
                rfc3339(info.not_after)
            ),
            "issue a new device certificate (and register it, or its CA, with the hub)",
        ),
        Validity::NotYet => Check::error(
            DEVICE_CERTIFICATE,
            format!(
                "the device certificate {what} is not valid before {}; the clock says {}",
                rfc3339(info.not_before),
                humantime::format_rfc3339_seconds(now)
            ),
            "set the clock / enable NTP (`timedatectl set-ntp true`) if it is behind; else wait, or issue a certificate valid now",
        ),
        Validity::Valid { left } if left < EXPIRY_WARNING => Check::warning(
            DEVICE_CERTIFICATE,
            format!(
                "the device certificate {what} expires in {}, at {}",
                days(left),
                rfc3339(info.not_after)
            ),
            "renew it before then: the hub refuses an expired certificate",
        ),
        Validity::Valid { left } => Check::ok(
            DEVICE_CERTIFICATE,
            format!(
                "{what}, issued by {}, valid until {} ({})",
                info.issuer,
                rfc3339(info.not_after),
                days(left)
            ),
        ),
    }
}

/// Where a secret came from, without the secret.
fn describe(source: &SecretSource) -> String {
    match source {
        SecretSource::Inline(_) => "the deployment file".into(),
        SecretSource::Env(var) => format!("environment variable {var}"),
        SecretSource::File(path) => path.display().to_string(),
    }
}

fn remedy_for(source: &SecretSource, what: &str) -> String {
    match source {
        SecretSource::Inline(_) => format!("write {what} in the deployment file"),
        SecretSource::Env(var) => format!(
            "set {var} in the environment `wedge check` and `wedge run` get (e.g. the service's EnvironmentFile)"
        ),
        SecretSource::File(path) => format!(
            "put {what} in {}, readable by the user wedge runs as",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Level;

    fn iothub(connection: &str) -> UpstreamSpec {
        UpstreamSpec::IotHub {
            identity: HubIdentity::ConnectionString(SecretSource::Inline(connection.into())),
            ca_file: None,
            cert_file: None,
            key_file: None,
            port: None,
        }
    }

    #[test]
    fn a_malformed_key_is_named_and_never_shown() {
        let key = "not-base64!!secret";
        let (endpoints, checks) = check(
            &iothub(&format!("HostName=h;DeviceId=d;SharedAccessKey={key}")),
            Path::new("/nonexistent"),
            SystemTime::now(),
        );
        assert!(endpoints.is_empty());
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert_eq!(checks[0].level, Level::Error);
        assert!(
            checks[0]
                .found
                .contains("`SharedAccessKey` is not valid base64")
        );
        assert!(!format!("{checks:?}").contains("secret"), "{checks:?}");

        let good = "c2VjcmV0LWtleS1ieXRlcw==";
        let (endpoints, checks) = check(
            &iothub(&format!(
                "HostName=hub.example;DeviceId=d;GatewayHostName=edge;SharedAccessKey={good}"
            )),
            Path::new("/nonexistent"),
            SystemTime::now(),
        );
        assert_eq!(checks[0].level, Level::Ok, "{checks:?}");
        assert!(!format!("{checks:?}").contains(good));
        assert_eq!(
            (endpoints[0].host.as_str(), endpoints[0].port),
            ("edge", 8883)
        );
    }

    #[test]
    fn a_given_token_is_judged_by_its_expiry() {
        let now = SystemTime::now();
        let in_days = |d: u64| Some(sas::unix_seconds(now) + d * 24 * 3600);
        assert_eq!(signature_check("d", in_days(90), now).level, Level::Ok);
        assert_eq!(signature_check("d", in_days(2), now).level, Level::Warning);
        let expired = signature_check("d", Some(sas::unix_seconds(now) - 1), now);
        assert_eq!(expired.level, Level::Error);
        assert!(expired.found.contains("expired at"), "{expired}");
        assert_eq!(signature_check("d", None, now).level, Level::Error);
    }
}
