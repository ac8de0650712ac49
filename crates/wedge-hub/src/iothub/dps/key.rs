//! The DPS credentials of a symmetric-key attestation: the device key of a group enrollment and
//! the SAS token that is the MQTT password.
//!
//! - Group enrollments (Microsoft, "How to provision devices using symmetric key enrollment
//!   groups"): the device key is base64(HMAC-SHA256(base64-decoded group key, registration id)),
//!   so a fleet ships one image with the group key and each device derives its own.
//! - The token ("Communicate with DPS using the MQTT protocol"): resource URI
//!   `{idScope}/registrations/{registrationId}`, key name (`skn`) `registration`, otherwise
//!   built as IoT Hub's (`sas.rs`).

use std::time::{Duration, SystemTime};

use super::super::connection_string::Secret;
use super::super::sas::{self, SasError, SasToken};

/// The key name DPS documents for device tokens.
pub const KEY_NAME: &str = "registration";

/// The device key of `registration_id` in a group enrollment with `group_key` (base64).
///
/// # Errors
/// [`SasError::KeyNotBase64`].
pub fn derive_device_key(group_key: &str, registration_id: &str) -> Result<Secret, SasError> {
    sas::sign(group_key, registration_id).map(Secret::new)
}

/// `{idScope}/registrations/{registrationId}`, not yet encoded.
pub fn resource_uri(id_scope: &str, registration_id: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}")
}

/// The MQTT password for DPS at `now`: a token signed with the device key, valid for `ttl`.
///
/// # Errors
/// [`SasError::KeyNotBase64`].
pub fn password(
    id_scope: &str,
    registration_id: &str,
    device_key: &Secret,
    now: SystemTime,
    ttl: Duration,
) -> Result<SasToken, SasError> {
    let expires_at = sas::unix_seconds(now).saturating_add(ttl.as_secs());
    sas::token(
        device_key.expose(),
        &resource_uri(id_scope, registration_id),
        Some(KEY_NAME),
        expires_at,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_derive_as_an_independent_computation() {
        // The worked example of Microsoft's "provision devices using symmetric key enrollment
        // groups" page, recomputed:
        // python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(base64.b64decode(
        //   "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="),
        //   b"sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", hashlib.sha256).digest()).decode())'
        let key = derive_device_key(
            "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
            "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
        )
        .unwrap();
        assert_eq!(key.expose(), "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=");
        // python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(base64.b64decode(
        //   "O8p1PHAGNdwXwq9ZQmvJ6xK1V5C3RxxjXBdGz4pNxQmOXCnEkMH8U8m2C5qX6Jqv9V0n6jDv2HkD/Cb5OZeK6g=="),
        //   b"wedge-device-01", hashlib.sha256).digest()).decode())'
        let key = derive_device_key(
            "O8p1PHAGNdwXwq9ZQmvJ6xK1V5C3RxxjXBdGz4pNxQmOXCnEkMH8U8m2C5qX6Jqv9V0n6jDv2HkD/Cb5OZeK6g==",
            "wedge-device-01",
        )
        .unwrap();
        assert_eq!(key.expose(), "nFGI/0EmOumbmw7W0D12HHud8YyUZlnjmXyIPzV6EgU=");
        assert_eq!(
            derive_device_key("***", "x").unwrap_err(),
            SasError::KeyNotBase64
        );
    }

    #[test]
    fn the_dps_token_names_the_registration_and_the_key_name() {
        // python3 -c 'import hmac,hashlib,base64,urllib.parse as u;
        //   key="nFGI/0EmOumbmw7W0D12HHud8YyUZlnjmXyIPzV6EgU=";
        //   sr=u.quote("0ne00000A0A/registrations/wedge-device-01",safe=""); se=1700000000;
        //   sig=u.quote(base64.b64encode(hmac.new(base64.b64decode(key),(sr+"\n"+str(se)).encode(),
        //   hashlib.sha256).digest()).decode(),safe="");
        //   print(f"SharedAccessSignature sr={sr}&sig={sig}&se={se}&skn=registration")'
        let expected = "SharedAccessSignature sr=0ne00000A0A%2Fregistrations%2Fwedge-device-01\
            &sig=c9FRVj%2BkBzLHw2DruycCFxV91JbGt1A%2FynF2%2FAE2c6U%3D&se=1700000000&skn=registration";
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 - 3600);
        let key = Secret::new("nFGI/0EmOumbmw7W0D12HHud8YyUZlnjmXyIPzV6EgU=");
        let token = password(
            "0ne00000A0A",
            "wedge-device-01",
            &key,
            now,
            sas::DEFAULT_TTL,
        )
        .unwrap();
        assert_eq!(token.expose(), expected);
    }
}
