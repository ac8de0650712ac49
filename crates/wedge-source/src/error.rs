//! The two error types: [`SourceError`] for a source string or a credentials document that
//! cannot be used, [`FetchError`] for a fetch that failed. Every message says what and where,
//! and none carries a secret.

use std::path::PathBuf;
use std::time::Duration;

/// A source string, or a registry credentials document, that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The source string is empty.
    #[error("empty module source")]
    Empty,
    /// A relative file path with no base directory to resolve it against.
    #[error("{0}: a relative path needs a base directory (give an absolute path)")]
    RelativeWithoutBase(String),
    /// `http://` to a host that is not loopback.
    #[error(
        "{0}: plain http is allowed only to loopback hosts (127.0.0.0/8, ::1, localhost); use https"
    )]
    PlainHttp(String),
    /// A URL that does not parse, or is not usable as a module source.
    #[error("{text}: invalid URL: {reason}")]
    InvalidUrl {
        /// The source as written (credentials removed).
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `oci://` reference that does not parse or lacks a registry, tag or digest.
    #[error("oci://{text}: invalid OCI reference: {reason}")]
    InvalidOciReference {
        /// The reference as written, without `oci://`.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A Docker-style credentials file that cannot be read or understood.
    #[error("{}: {problem}", path.display())]
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the secret itself).
        problem: String,
    },
    /// A Docker-style credentials document in an environment variable that cannot be used.
    #[error("environment variable {var}: {problem}")]
    CredentialsEnv {
        /// The variable's name.
        var: String,
        /// What is wrong (never the secret itself).
        problem: String,
    },
}

/// A fetch that failed: `location` is where (the source as displayed, no credentials), `kind`
/// is what.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct FetchError {
    /// The source as displayed (see [`crate::Source`]'s `Display`).
    pub location: String,
    /// What went wrong.
    pub kind: FetchErrorKind,
}

impl FetchError {
    pub(crate) fn new(location: impl ToString, kind: FetchErrorKind) -> Self {
        Self {
            location: location.to_string(),
            kind,
        }
    }
}

/// What went wrong in a fetch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchErrorKind {
    /// The bytes' sha256 is not the expected one.
    #[error("sha256 mismatch: expected {expected}, got {actual}")]
    Sha256Mismatch {
        /// Lowercase hex, as given.
        expected: String,
        /// Lowercase hex of the fetched bytes.
        actual: String,
    },
    /// An http(s) source was given without a sha256; refused before any network access.
    #[error("a sha256 is required for an http(s) source")]
    Sha256Required,
    /// The expected sha256 is not 64 hex digits.
    #[error("expected sha256 {0:?} is not 64 hex digits")]
    InvalidSha256(String),
    /// The module is larger than `FetchOptions::max_bytes`.
    #[error("larger than {max} bytes")]
    TooLarge {
        /// The cap.
        max: u64,
    },
    /// The whole fetch took longer than `FetchOptions::timeout`.
    #[error("timed out after {}", display_duration(*.0))]
    TimedOut(Duration),
    /// The server or registry could not be reached (DNS, refused, TLS handshake, reset).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// A local file could not be read.
    #[error("cannot read: {}", crate::io_message(.0))]
    Read(std::io::Error),
    /// The source is not one [`crate::Source::parse`] accepts (a `Source` built directly).
    #[error("{0}")]
    InvalidSource(String),
    /// The HTTP server answered with an error status.
    #[error("HTTP status {0}")]
    HttpStatus(String),
    /// The transfer failed after it started, or redirects went wrong.
    #[error("transfer failed: {0}")]
    Transfer(String),
    /// The registry has no manifest for this tag or digest (or no such repository).
    #[error("not found in the registry: {0}")]
    NotFound(String),
    /// The registry refused the credentials (or their absence).
    #[error("not authorized by the registry ({0})")]
    Unauthorized(String),
    /// The manifest has no layer of the Wasm media type.
    #[error("no layer of media type {media_type} (layers: {layers})")]
    NoWasmLayer {
        /// The media type looked for.
        media_type: &'static str,
        /// The media types of the layers that are there.
        layers: String,
    },
    /// The manifest is not a single-artifact image manifest, or has several Wasm layers.
    #[error("not a Wasm artifact: {0}")]
    NotWasmArtifact(String),
    /// Any other registry error.
    #[error("registry error: {0}")]
    Registry(String),
    /// The TLS client could not be set up (e.g. an extra root certificate is not valid PEM).
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// "60s", "500ms", "1.5s".
fn display_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A [`SourceError`] about the source at `location`, as a kind (the location not repeated).
pub(crate) fn invalid_source(location: &str, e: &SourceError) -> FetchErrorKind {
    let msg = e.to_string();
    let reason = msg.strip_prefix(&format!("{location}: ")).unwrap_or(&msg);
    FetchErrorKind::InvalidSource(reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_display_short() {
        assert_eq!(display_duration(Duration::from_secs(60)), "60s");
        assert_eq!(display_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(display_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn fetch_error_names_where_then_what() {
        let e = FetchError::new("https://h/x.wasm", FetchErrorKind::TooLarge { max: 10 });
        assert_eq!(e.to_string(), "https://h/x.wasm: larger than 10 bytes");
    }
}
