//! Shared access signature (SAS) tokens, the MQTT password of a device or module with a
//! symmetric key, and when to renew them.
//!
//! The token, as built by `azure-sdk-for-c` `sdk/src/azure/iot/az_iot_hub_client_sas.c`
//! (`az_iot_hub_client_sas_get_signature`, `az_iot_hub_client_sas_get_password`) and
//! `azure-iot-sdk-python` `common/auth/sastoken.py` (`RenewableSasToken._build_token`) with
//! `common/auth/signing_mechanism.py`:
//!
//! 1. resource URI `{host}/devices/{device}` or `{host}/devices/{device}/modules/{module}`
//!    (Python `iothub/abstract_clients.py` `_form_sas_uri`), URL-encoded whole, `/` included:
//!    `hub.azure-devices.net%2Fdevices%2Fdev-1`;
//! 2. string to sign: `{encoded_uri}\n{expiry}`, the expiry in Unix seconds;
//! 3. signature: HMAC-SHA256 keyed with the base64-*decoded* key, base64-encoded, then
//!    URL-encoded;
//! 4. token: `SharedAccessSignature sr={encoded_uri}&sig={signature}&se={expiry}`, plus
//!    `&skn={key name}` when a key name is given. Fields in exactly this order in both SDKs.
//!
//! The Microsoft MQTT page shows the fields as `sig=…&se=…&sr=…`; the SDKs' order is used here.
//!
//! IoT Hub cannot take a new token on an open MQTT connection: renewing means reconnecting
//! (`azure-iot-sdk-c` `iothubtransport_mqtt_common.c` disconnects once 80% of the token's
//! lifetime has passed, `SAS_REFRESH_MULTIPLIER .8`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::connection_string::{ConnectionString, Credential, Secret};
use super::url_encode;

/// Default token lifetime: one hour, as `azure-iot-sdk-python` (`sastoken_ttl` 3600) and
/// `azure-iot-sdk-c` (`DEFAULT_SAS_TOKEN_EXPIRY_TIME_SECS` 3600).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// Renew this long before expiry at the latest: `azure-iot-sdk-python`
/// `common/pipeline/pipeline_stages_base.py` `SasTokenStage.DEFAULT_TOKEN_UPDATE_MARGIN` (120 s).
pub const RENEW_MARGIN_SECS: u64 = 120;

/// Why no token could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    /// The shared access key is not base64.
    #[error("the shared access key is not valid base64")]
    KeyNotBase64,
    /// A ready-made `SharedAccessSignature` has no numeric `se=` field.
    #[error("the SharedAccessSignature has no numeric `se=` (expiry) field")]
    NoExpiry,
}

/// A SAS token. `Debug` and `Display` redact it: it is a bearer credential until it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct SasToken {
    token: Secret,
    expires_at: u64,
}

impl SasToken {
    /// The token: the MQTT password.
    pub fn expose(&self) -> &str {
        self.token.expose()
    }

    /// When it expires, in Unix seconds (its `se` field).
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl fmt::Debug for SasToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasToken")
            .field("token", &self.token)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The resource URI a device or module token is for, not yet encoded:
/// `{host}/devices/{device}[/modules/{module}]`.
pub fn resource_uri(host: &str, device: &str, module: Option<&str>) -> String {
    match module {
        Some(module) => format!("{host}/devices/{device}/modules/{module}"),
        None => format!("{host}/devices/{device}"),
    }
}

/// The string that is signed: `{url-encoded resource URI}\n{expiry}`.
pub fn string_to_sign(resource_uri: &str, expires_at: u64) -> String {
    format!("{}\n{expires_at}", url_encode(resource_uri))
}

/// Base64 of HMAC-SHA256 over `message`, keyed with the base64-decoded `key_base64`. Not yet
/// URL-encoded.
///
/// # Errors
/// [`SasError::KeyNotBase64`].
pub fn sign(key_base64: &str, message: &str) -> Result<String, SasError> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(key_base64)
        .map_err(|_| SasError::KeyNotBase64)?;
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SasError::KeyNotBase64)?;
    mac.update(message.as_bytes());
    Ok(engine.encode(mac.finalize().into_bytes()))
}

/// A token for `resource_uri` (as [`resource_uri`] makes it) valid until `expires_at` (Unix
/// seconds), with `skn={key_name}` when given.
///
/// # Errors
/// [`SasError::KeyNotBase64`].
pub fn token(
    key_base64: &str,
    resource_uri: &str,
    key_name: Option<&str>,
    expires_at: u64,
) -> Result<SasToken, SasError> {
    let encoded_uri = url_encode(resource_uri);
    let signature = sign(key_base64, &format!("{encoded_uri}\n{expires_at}"))?;
    let mut token = format!(
        "SharedAccessSignature sr={encoded_uri}&sig={}&se={expires_at}",
        url_encode(&signature)
    );
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.push_str(name);
    }
    Ok(SasToken {
        token: Secret::new(token),
        expires_at,
    })
}

/// The MQTT password for `cs` at `now`: a fresh token valid for `ttl` when it has a key, the
/// given token when it carries a `SharedAccessSignature`, none for X.509.
///
/// # Errors
/// [`SasError::KeyNotBase64`]; [`SasError::NoExpiry`] for a given token without `se=`.
pub fn password(
    cs: &ConnectionString,
    now: SystemTime,
    ttl: Duration,
) -> Result<Option<SasToken>, SasError> {
    match &cs.credential {
        Credential::SharedAccessKey { key, key_name } => {
            let uri = resource_uri(&cs.host_name, &cs.device_id, cs.module_id.as_deref());
            let expires_at = unix_seconds(now).saturating_add(ttl.as_secs());
            token(key.expose(), &uri, key_name.as_deref(), expires_at).map(Some)
        }
        Credential::SharedAccessSignature(given) => {
            let expires_at = signature_expiry(given.expose()).ok_or(SasError::NoExpiry)?;
            Ok(Some(SasToken {
                token: given.clone(),
                expires_at,
            }))
        }
        Credential::X509 => Ok(None),
    }
}

/// The `se=` field of a token: `SharedAccessSignature sr=…&sig=…&se=1700000000`.
pub fn signature_expiry(token: &str) -> Option<u64> {
    let fields = token
        .strip_prefix("SharedAccessSignature ")
        .unwrap_or(token);
    fields
        .split('&')
        .find_map(|field| field.trim().strip_prefix("se="))
        .and_then(|se| se.parse().ok())
}

/// `time` in whole Unix seconds (0 before 1970).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// When to renew a token issued at `issued_at` that expires at `expires_at` (Unix seconds):
/// after 80% of its lifetime (`azure-iot-sdk-c`), but at least [`RENEW_MARGIN_SECS`] before it
/// expires (`azure-iot-sdk-python`); the margin never pulls renewal before half the lifetime, so a
/// short-lived token is not renewed in a loop.
pub fn renew_at(issued_at: u64, expires_at: u64) -> u64 {
    let lifetime = expires_at.saturating_sub(issued_at);
    let at_80_percent = lifetime / 5 * 4 + lifetime % 5 * 4 / 5;
    let with_margin = lifetime.saturating_sub(RENEW_MARGIN_SECS).max(lifetime / 2);
    issued_at + at_80_percent.min(with_margin)
}

/// Whether a token issued at `issued_at` expiring at `expires_at` should be renewed at `now`
/// (all Unix seconds). See [`renew_at`].
pub fn needs_renewal(issued_at: u64, expires_at: u64, now: u64) -> bool {
    now >= renew_at(issued_at, expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_token_matches_an_independent_computation() {
        // python3 -c 'import hmac,hashlib,base64,urllib.parse as u; key="c2VjcmV0LWtleS1ieXRlcw==";
        //   sr=u.quote("contoso.azure-devices.net/devices/dev-1",safe=""); se=1700000000;
        //   sig=u.quote(base64.b64encode(hmac.new(base64.b64decode(key),(sr+"\n"+str(se)).encode(),
        //   hashlib.sha256).digest()).decode(),safe="");
        //   print(f"SharedAccessSignature sr={sr}&sig={sig}&se={se}")'
        let expected = "SharedAccessSignature sr=contoso.azure-devices.net%2Fdevices%2Fdev-1\
                        &sig=R%2Ff0CeLJv9aLcYF3fYiNukVYehcWiNWXSZnt2CWqPrM%3D&se=1700000000";
        let uri = resource_uri("contoso.azure-devices.net", "dev-1", None);
        assert_eq!(uri, "contoso.azure-devices.net/devices/dev-1");
        let token = token("c2VjcmV0LWtleS1ieXRlcw==", &uri, None, 1_700_000_000).unwrap();
        assert_eq!(token.expose(), expected);
        assert_eq!(token.expires_at(), 1_700_000_000);
        assert_eq!(
            string_to_sign(&uri, 1_700_000_000),
            "contoso.azure-devices.net%2Fdevices%2Fdev-1\n1700000000"
        );
    }

    #[test]
    fn module_token_with_key_name_and_characters_to_encode() {
        // python3 -c 'import hmac,hashlib,base64,urllib.parse as u;
        //   key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        //   sr=u.quote("hub.azure-devices.net/devices/my device:1/modules/$edge",safe="");
        //   se=4102444800; sig=u.quote(base64.b64encode(hmac.new(base64.b64decode(key),
        //   (sr+"\n"+str(se)).encode(),hashlib.sha256).digest()).decode(),safe="");
        //   print(f"SharedAccessSignature sr={sr}&sig={sig}&se={se}&skn=device")'
        let expected = "SharedAccessSignature \
            sr=hub.azure-devices.net%2Fdevices%2Fmy%20device%3A1%2Fmodules%2F%24edge\
            &sig=Yd%2FFYQ62HyZ7hE%2B5UU1GIaMNA%2B8KSkM94b67B%2F8qLsw%3D&se=4102444800&skn=device";
        let uri = resource_uri("hub.azure-devices.net", "my device:1", Some("$edge"));
        let token = token(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            &uri,
            Some("device"),
            4_102_444_800,
        )
        .unwrap();
        assert_eq!(token.expose(), expected);
    }

    #[test]
    fn password_from_connection_strings() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000 - 3600);
        let cs: ConnectionString =
            "HostName=contoso.azure-devices.net;DeviceId=dev-1;SharedAccessKey=c2VjcmV0LWtleS1ieXRlcw=="
                .parse()
                .unwrap();
        let token = password(&cs, now, DEFAULT_TTL).unwrap().unwrap();
        assert_eq!(token.expires_at(), 1_700_000_000);
        assert!(
            token
                .expose()
                .contains("&sig=R%2Ff0CeLJv9aLcYF3fYiNukVYehcWiNWXSZnt2CWqPrM%3D&")
        );
        assert!(!format!("{token:?}").contains("R%2Ff0"), "{token:?}");

        let cs: ConnectionString = "HostName=h;DeviceId=d;x509=true".parse().unwrap();
        assert_eq!(password(&cs, now, DEFAULT_TTL), Ok(None));

        let given = "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=abc%3D&se=1800000000";
        let cs: ConnectionString = format!("HostName=h;DeviceId=d;SharedAccessSignature={given}")
            .parse()
            .unwrap();
        let token = password(&cs, now, DEFAULT_TTL).unwrap().unwrap();
        assert_eq!(token.expose(), given);
        assert_eq!(token.expires_at(), 1_800_000_000);

        let cs: ConnectionString =
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h&sig=x"
                .parse()
                .unwrap();
        assert_eq!(password(&cs, now, DEFAULT_TTL), Err(SasError::NoExpiry));
    }

    #[test]
    fn bad_key_is_an_error() {
        assert_eq!(
            token("***", "h/devices/d", None, 1),
            Err(SasError::KeyNotBase64)
        );
    }

    #[test]
    fn renewal_time() {
        // One hour: 80% (2880 s) comes before the 120 s margin (3480 s).
        assert_eq!(renew_at(1000, 4600), 1000 + 2880);
        // Five minutes: the margin wins (180 s < 240 s).
        assert_eq!(renew_at(0, 300), 180);
        // Three minutes: the margin would leave 60 s, less than half; renew at half.
        assert_eq!(renew_at(0, 180), 90);
        // A day: 80%.
        assert_eq!(renew_at(0, 86_400), 69_120);
        // 80% of a lifetime that is not a multiple of 5 rounds down: 2880.8 s.
        assert_eq!(renew_at(0, 3601), 2880);
        // Already expired or inverted: renew right away.
        assert_eq!(renew_at(500, 400), 500);
        assert_eq!(renew_at(u64::MAX - 10, u64::MAX), u64::MAX - 10 + 5);

        assert!(!needs_renewal(1000, 4600, 3879));
        assert!(needs_renewal(1000, 4600, 3880));
        assert!(needs_renewal(1000, 4600, 10_000));
    }

    #[test]
    fn expiry_field_parsing() {
        assert_eq!(
            signature_expiry("SharedAccessSignature sr=a&sig=b&se=42"),
            Some(42)
        );
        assert_eq!(
            signature_expiry("SharedAccessSignature se=7&sr=a&sig=b"),
            Some(7)
        );
        assert_eq!(
            signature_expiry("SharedAccessSignature sr=a&sig=b&se=x"),
            None
        );
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }
}
