//! Fetching a module's binary from where a deployment says it is: a file on the device, an
//! https download (pinned by sha256), or a Wasm OCI artifact in a registry.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use wedge_source::{FetchOptions, RegistryAuth, Source, fetch};
//!
//! let source = Source::parse("oci://registry.example.com/wedge/sensor:1.0", None)?;
//! let options = FetchOptions {
//!     registry_auth: RegistryAuth::from_docker_config_file(Path::new("/etc/wedge/auth.json"))?,
//!     ..FetchOptions::default()
//! };
//! let fetched = fetch(&source, None, &options).await?;
//! println!("{source}: {} bytes, sha256 {}", fetched.bytes.len(), fetched.sha256);
//! # Ok(()) }
//! ```
//!
//! Transport security: https everywhere, trusting the public CAs of `webpki-root-certs` (plus
//! [`FetchOptions::extra_root_pem`]); plain http only to loopback hosts, for an http URL and
//! for a registry alike (a registry on loopback is always spoken to over plain http). TLS is
//! rustls with the ring provider, installed as the process's default provider when none is.
#![deny(missing_docs)]

mod auth;
mod error;
mod http;
mod oci;
mod source;
mod tls;

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

pub use auth::RegistryAuth;
pub use error::{FetchError, FetchErrorKind, SourceError};
pub use source::Source;

/// The media type of the layer that holds the module in a Wasm OCI artifact.
pub const WASM_LAYER_MEDIA_TYPE: &str = oci_client::manifest::WASM_LAYER_MEDIA_TYPE;

/// Limits and credentials for [`fetch`].
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Larger modules are refused, and their transfer stopped. Default 64 MiB.
    pub max_bytes: u64,
    /// Bound on the whole fetch (connect, redirects, registry round trips, body). Default 60 s.
    pub timeout: Duration,
    /// Credentials for OCI registries. Default anonymous.
    pub registry_auth: RegistryAuth,
    /// PEM root certificates trusted in addition to the public CAs (each entry may hold
    /// several), e.g. a private registry's CA. Default none.
    pub extra_root_pem: Vec<Vec<u8>>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(60),
            registry_auth: RegistryAuth::anonymous(),
            extra_root_pem: Vec::new(),
        }
    }
}

/// A fetched module.
#[derive(Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The module's bytes.
    pub bytes: Vec<u8>,
    /// Lowercase hex sha256 of `bytes`.
    pub sha256: String,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("len", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// Fetches `source` and verifies it.
///
/// `expected_sha256` (64 hex digits, optionally prefixed `sha256:`), when given, must be the
/// sha256 of the bytes. An http(s) source without it is refused before any network access.
/// More than `options.max_bytes` is refused without being buffered (a file's size is checked
/// first; a download is streamed and stopped). The whole fetch is bounded by
/// `options.timeout`. An OCI pull is verified by oci-client against the layer's digest.
pub async fn fetch(
    source: &Source,
    expected_sha256: Option<&str>,
    options: &FetchOptions,
) -> Result<Fetched, FetchError> {
    let location = source.to_string();
    let fail = |kind| FetchError::new(&location, kind);
    let expected = match expected_sha256 {
        Some(text) => Some(
            normalize_sha256(text)
                .ok_or_else(|| fail(FetchErrorKind::InvalidSha256(text.to_string())))?,
        ),
        None => None,
    };
    if source.requires_sha256() && expected.is_none() {
        return Err(fail(FetchErrorKind::Sha256Required));
    }
    let bytes = match tokio::time::timeout(options.timeout, fetch_bytes(source, options)).await {
        Ok(result) => result.map_err(fail)?,
        Err(_) => return Err(fail(FetchErrorKind::TimedOut(options.timeout))),
    };
    let sha256 = sha256_hex(&bytes);
    if let Some(expected) = expected
        && expected != sha256
    {
        return Err(fail(FetchErrorKind::Sha256Mismatch {
            expected,
            actual: sha256,
        }));
    }
    Ok(Fetched { bytes, sha256 })
}

async fn fetch_bytes(source: &Source, options: &FetchOptions) -> Result<Vec<u8>, FetchErrorKind> {
    match source {
        Source::File(path) => read_file(path, options.max_bytes).await,
        Source::Http(url) => http::fetch(url, options).await,
        Source::Oci(text) => {
            // Checked again: a `Source` may have been built without `Source::parse`.
            let reference = source::check_oci_reference(text)
                .map_err(|e| error::invalid_source(&source.to_string(), &e))?;
            oci::fetch(&reference, options).await
        }
    }
}

/// Reads a file, refusing one over `max` bytes by its size first (and by what is read, in
/// case it grows meanwhile).
async fn read_file(path: &std::path::Path, max: u64) -> Result<Vec<u8>, FetchErrorKind> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(FetchErrorKind::Read)?;
    let len = file.metadata().await.map_err(FetchErrorKind::Read)?.len();
    if len > max {
        return Err(FetchErrorKind::TooLarge { max });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .await
        .map_err(FetchErrorKind::Read)?;
    if bytes.len() as u64 > max {
        return Err(FetchErrorKind::TooLarge { max });
    }
    Ok(bytes)
}

/// "sha256:AB12…" or "ab12…" to "ab12…"; None when not 64 hex digits.
fn normalize_sha256(text: &str) -> Option<String> {
    let text = text.trim();
    let hex = text
        .strip_prefix("sha256:")
        .unwrap_or(text)
        .to_ascii_lowercase();
    source::is_sha256_hex(&hex).then_some(hex)
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An io error's message without the " (os error N)" suffix.
pub(crate) fn io_message(e: &std::io::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" (os error ") {
        Some(at) if msg.ends_with(')') => msg[..at].to_string(),
        _ => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_forms() {
        let hex = sha256_hex(b"abc");
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(normalize_sha256(&hex).as_deref(), Some(hex.as_str()));
        let prefixed = format!("sha256:{}", hex.to_ascii_uppercase());
        assert_eq!(normalize_sha256(&prefixed).as_deref(), Some(hex.as_str()));
        assert_eq!(normalize_sha256("abc"), None);
        assert_eq!(normalize_sha256(&format!("{hex}0")), None);
    }

    #[test]
    fn io_messages_drop_the_os_error_number() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_message(&e), "No such file or directory");
    }
}
