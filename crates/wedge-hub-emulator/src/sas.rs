//! Checking a SAS token as IoT Hub and DPS do, written independently of wedge's signer: the
//! string to sign is the token's own `sr` field as sent (URL-encoded), a newline and its `se`;
//! the signature is base64(HMAC-SHA256(base64-decoded key, that string)), URL-encoded.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use sha2::Sha256;

/// Checks `token` for `resource` (not encoded, e.g. `scope/registrations/dev1`) against the
/// base64 `key`; `skn` lists the key names accepted (`None` for a token without `skn`).
pub(crate) fn verify(
    token: &str,
    resource: &str,
    key: &str,
    skn: &[Option<&str>],
    now_unix: u64,
) -> Result<(), String> {
    let fields = token
        .strip_prefix("SharedAccessSignature ")
        .ok_or("not a SharedAccessSignature")?;
    let field = |name: &str| {
        fields
            .split('&')
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
    };
    let sr = field("sr").ok_or("no sr")?;
    let sig = field("sig").ok_or("no sig")?;
    let se = field("se").ok_or("no se")?;
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    if !decode(sr).eq_ignore_ascii_case(resource) {
        return Err(format!("token is for {:?}, not {resource:?}", decode(sr)));
    }
    if !skn.contains(&field("skn")) {
        return Err(format!("key name {:?} not accepted", field("skn")));
    }
    let expiry: u64 = se.parse().map_err(|_| "se is not a number")?;
    if expiry <= now_unix {
        return Err("token expired".into());
    }
    if decode(sig) != sign(key, &format!("{sr}\n{se}"))? {
        return Err("signature does not match the key".into());
    }
    Ok(())
}

/// base64(HMAC-SHA256(base64-decoded `key`, `message`)).
pub(crate) fn sign(key: &str, message: &str) -> Result<String, String> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let key = engine.decode(key).map_err(|_| "key is not base64")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(message.as_bytes());
    Ok(engine.encode(mac.finalize().into_bytes()))
}

/// The current time in Unix seconds.
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_a_token_computed_independently() {
        // python3 -c 'import hmac,hashlib,base64,urllib.parse as u; key="c2VjcmV0LWtleS1ieXRlcw==";
        //   sr=u.quote("contoso.azure-devices.net/devices/dev-1",safe=""); se=1700000000;
        //   sig=u.quote(base64.b64encode(hmac.new(base64.b64decode(key),(sr+"\n"+str(se)).encode(),
        //   hashlib.sha256).digest()).decode(),safe="");
        //   print(f"SharedAccessSignature sr={sr}&sig={sig}&se={se}")'
        let token = "SharedAccessSignature sr=contoso.azure-devices.net%2Fdevices%2Fdev-1\
                     &sig=R%2Ff0CeLJv9aLcYF3fYiNukVYehcWiNWXSZnt2CWqPrM%3D&se=1700000000";
        let key = "c2VjcmV0LWtleS1ieXRlcw==";
        let resource = "contoso.azure-devices.net/devices/dev-1";
        assert_eq!(verify(token, resource, key, &[None], 1_600_000_000), Ok(()));
        assert!(verify(token, resource, key, &[None], 1_700_000_000).is_err());
        assert!(
            verify(
                token,
                "contoso.azure-devices.net/devices/dev-2",
                key,
                &[None],
                0
            )
            .is_err()
        );
        assert!(verify(token, resource, "b3RoZXI=", &[None], 0).is_err());
        assert!(verify(token, resource, key, &[Some("registration")], 0).is_err());
    }
}
