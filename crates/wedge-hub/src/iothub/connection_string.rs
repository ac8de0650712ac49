//! IoT Hub device and module connection strings:
//! `HostName=<hub>.azure-devices.net;DeviceId=<device>;SharedAccessKey=<base64 key>`, optionally with
//! `ModuleId`, `SharedAccessKeyName`, `GatewayHostName`, or `x509=true` (or a ready-made
//! `SharedAccessSignature`) in place of the key.
//!
//! Syntax and key names follow `azure-iot-sdk-python`
//! `azure-iot-device/azure/iot/device/common/auth/connection_string.py`: segments split on `;`,
//! each split on its *first* `=` (a base64 key ends in `=`), keys case-sensitive, duplicates and
//! unknown keys rejected, and `SharedAccessKey` mixed with `x509` rejected. Unlike that parser a
//! trailing `;` and blanks around segments are tolerated, and `x509` must say `true` or `false`
//! (Python treats any value as `true`).
//!
//! The shared access key (and a `SharedAccessSignature`) is a [`Secret`]: it shows as
//! `<redacted>` in `Debug` and `Display`, and only [`Secret::expose`] hands it out.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;

/// Keys a connection string may hold, as the Python SDK spells them.
const KNOWN_KEYS: [&str; 8] = [
    "HostName",
    "DeviceId",
    "ModuleId",
    "SharedAccessKey",
    "SharedAccessKeyName",
    "SharedAccessSignature",
    "GatewayHostName",
    "x509",
];

/// A credential that must not reach logs: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for signing or for the MQTT password.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the device proves its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A symmetric key (base64, checked at parse time) from which SAS tokens are signed.
    SharedAccessKey {
        /// The base64 key as written in the connection string.
        key: Secret,
        /// `SharedAccessKeyName`: the policy name, sent as `skn=` in the token.
        key_name: Option<String>,
    },
    /// A ready-made SAS token (`SharedAccessSignature=SharedAccessSignature sr=…`); it cannot be
    /// renewed.
    SharedAccessSignature(Secret),
    /// `x509=true`: the TLS client certificate authenticates; no password is sent.
    X509,
}

/// A parsed device or module connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `HostName`: the hub, e.g. `contoso.azure-devices.net`. Used in the MQTT username and the
    /// SAS resource URI even when connecting through a gateway.
    pub host_name: String,
    /// `DeviceId`.
    pub device_id: String,
    /// `ModuleId`, for a module identity.
    pub module_id: Option<String>,
    /// `GatewayHostName`: where to open the connection (an IoT Edge gateway) instead of
    /// `host_name`.
    pub gateway_host_name: Option<String>,
    /// The credential.
    pub credential: Credential,
}

/// Why a connection string was rejected. No variant carries a value, so no key can leak
/// through an error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    /// Nothing but blanks and `;`.
    #[error("the connection string is empty")]
    Empty,
    /// A segment with no `=`; numbered from 1, the text itself is withheld in case it is a key.
    #[error("segment {0} of the connection string has no `=` (expected `Key=value`)")]
    NoEquals(usize),
    /// A key given twice.
    #[error("key `{0}` appears more than once in the connection string")]
    DuplicateKey(String),
    /// A key the connection string format does not have.
    #[error(
        "unknown key {} in segment {segment} of the connection string{}",
        shown_key(.key),
        did_you_mean(.suggestion)
    )]
    UnknownKey {
        /// The segment, numbered from 1.
        segment: usize,
        /// The key as written, when it looks like a key name (ASCII letters, at most 32). Withheld
        /// otherwise: `<key>==` with the `SharedAccessKey=` prefix forgotten parses as key `<key>`.
        key: Option<String>,
        /// The known key it matches when case is ignored.
        suggestion: Option<&'static str>,
    },
    /// A required key is absent.
    #[error("the connection string has no `{0}`")]
    MissingKey(&'static str),
    /// A key with nothing after its `=`.
    #[error("`{0}` in the connection string is empty")]
    EmptyValue(&'static str),
    /// Neither a key, a signature nor `x509=true`.
    #[error(
        "the connection string has no credential: add `SharedAccessKey`, `SharedAccessSignature` or `x509=true`"
    )]
    NoCredential,
    /// More than one of `SharedAccessKey`, `SharedAccessSignature` and `x509=true`.
    #[error(
        "the connection string mixes credentials: use one of `SharedAccessKey`, `SharedAccessSignature` and `x509=true`"
    )]
    MixedCredentials,
    /// `SharedAccessKeyName` without `SharedAccessKey`.
    #[error("`SharedAccessKeyName` is only meaningful with `SharedAccessKey`")]
    KeyNameWithoutKey,
    /// `SharedAccessKey` is not base64.
    #[error("`SharedAccessKey` is not valid base64")]
    KeyNotBase64,
    /// `x509` is neither `true` nor `false`.
    #[error("`x509` must be `true` or `false`")]
    BadX509,
}

fn shown_key(key: &Option<String>) -> String {
    match key {
        Some(key) => format!("`{key}`"),
        None => "(not shown: it does not look like a key name)".to_owned(),
    }
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion
        .map(|known| format!(" (did you mean `{known}`?)"))
        .unwrap_or_default()
}

impl ConnectionString {
    /// Parses `s`.
    ///
    /// # Errors
    /// A [`ConnectionStringError`] naming the missing, duplicate, unknown or malformed key.
    pub fn parse(s: &str) -> Result<Self, ConnectionStringError> {
        let mut values: [Option<&str>; KNOWN_KEYS.len()] = [None; KNOWN_KEYS.len()];
        let mut any = false;
        for (index, segment) in s.split(';').enumerate() {
            let segment = segment.trim();
            if segment.is_empty() {
                continue;
            }
            any = true;
            let (key, value) = segment
                .split_once('=')
                .ok_or(ConnectionStringError::NoEquals(index + 1))?;
            let key = key.trim();
            let slot = KNOWN_KEYS
                .iter()
                .position(|known| *known == key)
                .ok_or_else(|| {
                    let name_like = !key.is_empty()
                        && key.len() <= 32
                        && key.bytes().all(|b| b.is_ascii_alphabetic());
                    ConnectionStringError::UnknownKey {
                        segment: index + 1,
                        key: name_like.then(|| key.to_owned()),
                        suggestion: KNOWN_KEYS
                            .iter()
                            .copied()
                            .find(|known| known.eq_ignore_ascii_case(key)),
                    }
                })?;
            if values[slot].replace(value.trim()).is_some() {
                return Err(ConnectionStringError::DuplicateKey(key.to_owned()));
            }
        }
        if !any {
            return Err(ConnectionStringError::Empty);
        }
        let get = |name: &'static str| -> Result<Option<String>, ConnectionStringError> {
            let slot = KNOWN_KEYS
                .iter()
                .position(|known| *known == name)
                .expect("name is one of KNOWN_KEYS");
            match values[slot] {
                None => Ok(None),
                Some("") => Err(ConnectionStringError::EmptyValue(name)),
                Some(value) => Ok(Some(value.to_owned())),
            }
        };
        let required =
            |name: &'static str| get(name)?.ok_or(ConnectionStringError::MissingKey(name));

        let host_name = required("HostName")?;
        let device_id = required("DeviceId")?;
        let module_id = get("ModuleId")?;
        let gateway_host_name = get("GatewayHostName")?;
        let key = get("SharedAccessKey")?;
        let key_name = get("SharedAccessKeyName")?;
        let signature = get("SharedAccessSignature")?;
        let x509 = match get("x509")? {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(ConnectionStringError::BadX509),
        };

        let credentials =
            usize::from(key.is_some()) + usize::from(signature.is_some()) + usize::from(x509);
        if credentials > 1 {
            return Err(ConnectionStringError::MixedCredentials);
        }
        if key_name.is_some() && key.is_none() {
            return Err(ConnectionStringError::KeyNameWithoutKey);
        }
        let credential = if let Some(key) = key {
            base64::engine::general_purpose::STANDARD
                .decode(&key)
                .map_err(|_| ConnectionStringError::KeyNotBase64)?;
            Credential::SharedAccessKey {
                key: Secret(key),
                key_name,
            }
        } else if let Some(signature) = signature {
            Credential::SharedAccessSignature(Secret(signature))
        } else if x509 {
            Credential::X509
        } else {
            return Err(ConnectionStringError::NoCredential);
        };

        Ok(ConnectionString {
            host_name,
            device_id,
            module_id,
            gateway_host_name,
            credential,
        })
    }

    /// The host to open the TLS connection to: `GatewayHostName` when given, else `HostName`
    /// (as `azure-iot-sdk-python` `common/pipeline/pipeline_stages_mqtt.py` does).
    pub fn connect_host(&self) -> &str {
        self.gateway_host_name.as_deref().unwrap_or(&self.host_name)
    }

    /// The MQTT identity (hub, device, module) this connection string names.
    pub fn identity(&self) -> super::topics::Identity {
        super::topics::Identity {
            host_name: self.host_name.clone(),
            device_id: self.device_id.clone(),
            module_id: self.module_id.clone(),
        }
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnectionString::parse(s)
    }
}

/// The connection string again, with any key or signature shown as `<redacted>`.
impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName={};DeviceId={}", self.host_name, self.device_id)?;
        if let Some(module) = &self.module_id {
            write!(f, ";ModuleId={module}")?;
        }
        match &self.credential {
            Credential::SharedAccessKey { key, key_name } => {
                if let Some(name) = key_name {
                    write!(f, ";SharedAccessKeyName={name}")?;
                }
                write!(f, ";SharedAccessKey={key}")?;
            }
            Credential::SharedAccessSignature(signature) => {
                write!(f, ";SharedAccessSignature={signature}")?;
            }
            Credential::X509 => f.write_str(";x509=true")?,
        }
        if let Some(gateway) = &self.gateway_host_name {
            write!(f, ";GatewayHostName={gateway}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "c2VjcmV0LWtleS1ieXRlcw==";

    fn parse(s: &str) -> Result<ConnectionString, ConnectionStringError> {
        s.parse()
    }

    #[test]
    fn device_string() {
        let cs = parse(&format!(
            "HostName=hub.azure-devices.net;DeviceId=dev-1;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(cs.host_name, "hub.azure-devices.net");
        assert_eq!(cs.device_id, "dev-1");
        assert_eq!(cs.module_id, None);
        assert_eq!(cs.connect_host(), "hub.azure-devices.net");
        assert_eq!(
            cs.credential,
            Credential::SharedAccessKey {
                key: Secret::new(KEY),
                key_name: None
            }
        );
        let Credential::SharedAccessKey { key, .. } = &cs.credential else {
            unreachable!()
        };
        // The `=` padding survives: segments split on their first `=` only.
        assert_eq!(key.expose(), KEY);
    }

    #[test]
    fn module_string_with_all_optional_keys_in_any_order() {
        let cs = parse(&format!(
            " GatewayHostName=edge.local ; SharedAccessKeyName=device; ModuleId=filter;\
             SharedAccessKey={KEY};DeviceId=dev;HostName=hub.azure-devices.net;"
        ))
        .unwrap();
        assert_eq!(cs.module_id.as_deref(), Some("filter"));
        assert_eq!(cs.gateway_host_name.as_deref(), Some("edge.local"));
        assert_eq!(cs.connect_host(), "edge.local");
        assert!(matches!(
            &cs.credential,
            Credential::SharedAccessKey { key_name: Some(name), .. } if name == "device"
        ));
        let identity = cs.identity();
        assert_eq!(identity.host_name, "hub.azure-devices.net");
        assert_eq!(identity.module_id.as_deref(), Some("filter"));
    }

    #[test]
    fn x509_and_signature_credentials() {
        let cs = parse("HostName=h;DeviceId=d;x509=true").unwrap();
        assert_eq!(cs.credential, Credential::X509);
        let cs = parse("HostName=h;DeviceId=d;x509=TRUE").unwrap();
        assert_eq!(cs.credential, Credential::X509);
        let cs = parse(
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h%2Fdevices%2Fd&sig=x%3D&se=1",
        )
        .unwrap();
        let Credential::SharedAccessSignature(sig) = &cs.credential else {
            panic!("expected a signature: {cs:?}")
        };
        assert_eq!(
            sig.expose(),
            "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=x%3D&se=1"
        );
    }

    #[test]
    fn errors_name_the_key() {
        use ConnectionStringError as E;
        assert_eq!(parse(""), Err(E::Empty));
        assert_eq!(parse(" ; ;"), Err(E::Empty));
        assert_eq!(
            parse(&format!("DeviceId=d;SharedAccessKey={KEY}")),
            Err(E::MissingKey("HostName"))
        );
        assert_eq!(
            parse(&format!("HostName=h;SharedAccessKey={KEY}")),
            Err(E::MissingKey("DeviceId"))
        );
        assert_eq!(
            parse(&format!(
                "HostName=h;DeviceId=d;DeviceId=e;SharedAccessKey={KEY}"
            )),
            Err(E::DuplicateKey("DeviceId".into()))
        );
        assert_eq!(
            parse(&format!(
                "HostName=h;DeviceId=d;SharedAccessKey={KEY};Foo=1"
            )),
            Err(E::UnknownKey {
                segment: 4,
                key: Some("Foo".into()),
                suggestion: None
            })
        );
        let err = parse(&format!("hostname=h;DeviceId=d;SharedAccessKey={KEY}")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown key `hostname` in segment 1 of the connection string (did you mean `HostName`?)"
        );
        assert_eq!(parse("HostName=h;DeviceId=d"), Err(E::NoCredential));
        assert_eq!(
            parse(&format!(
                "HostName=h;DeviceId=d;SharedAccessKey={KEY};x509=true"
            )),
            Err(E::MixedCredentials)
        );
        assert_eq!(
            parse("HostName=h;DeviceId=d;x509=true;SharedAccessKeyName=p"),
            Err(E::KeyNameWithoutKey)
        );
        assert_eq!(
            parse("HostName=h;DeviceId=d;SharedAccessKey=not base64!"),
            Err(E::KeyNotBase64)
        );
        assert_eq!(parse("HostName=h;DeviceId=d;x509=yes"), Err(E::BadX509));
        assert_eq!(
            parse("HostName=h;DeviceId=;x509=true"),
            Err(E::EmptyValue("DeviceId"))
        );
        assert_eq!(
            parse("HostName=h;DeviceId=d;x509=true;ModuleId"),
            Err(E::NoEquals(4))
        );
        // x509=false is no credential at all.
        assert_eq!(
            parse("HostName=h;DeviceId=d;x509=false"),
            Err(E::NoCredential)
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_display_or_errors() {
        let signature = "SharedAccessSignature sr=h&sig=SIGNATURE-SECRET&se=1";
        for text in [
            format!("HostName=h;DeviceId=d;SharedAccessKey={KEY};SharedAccessKeyName=pol"),
            format!("HostName=h;DeviceId=d;ModuleId=m;SharedAccessSignature={signature}"),
        ] {
            let cs = parse(&text).unwrap();
            let debug = format!("{cs:?}");
            let pretty = format!("{cs:#?}");
            let display = cs.to_string();
            for shown in [&debug, &pretty, &display] {
                assert!(!shown.contains(KEY), "key leaked: {shown}");
                assert!(
                    !shown.contains("SIGNATURE-SECRET"),
                    "signature leaked: {shown}"
                );
                assert!(shown.contains("<redacted>"), "{shown}");
            }
            // Display round-trips everything but the secret.
            assert!(display.starts_with("HostName=h;DeviceId=d"), "{display}");
        }
        // A key pasted without `SharedAccessKey=` parses as an unknown key named after the key's
        // body; it is not echoed back in the error.
        let err = parse(&format!("HostName=h;DeviceId=d;{KEY}")).unwrap_err();
        assert!(
            matches!(
                err,
                ConnectionStringError::UnknownKey {
                    segment: 3,
                    key: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            !err.to_string().contains(KEY.trim_end_matches('=')),
            "{err}"
        );
        // Nor is a mistyped key name's value.
        let err = parse(&format!("HostName=h;DeviceId=d;SharedAcessKey={KEY}")).unwrap_err();
        assert!(!err.to_string().contains(KEY), "{err}");
    }
}
