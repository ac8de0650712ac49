//! [`Source`]: where a module's binary is, parsed from the string a deployment gives.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::SourceError;

/// Where a module's binary is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on the device.
    File(PathBuf),
    /// An `https://` URL, or `http://` to a loopback host.
    Http(String),
    /// An OCI artifact: the reference without `oci://`, e.g. `registry:5000/repo:tag` or
    /// `registry/repo@sha256:<64 hex>`.
    Oci(String),
}

impl Source {
    /// Parses a module source as a deployment writes it:
    ///
    /// - `oci://registry[:port]/repo:tag` or `oci://registry[:port]/repo@sha256:<64 hex>`: an
    ///   OCI artifact. The registry must be named (no implicit Docker Hub) and a tag or digest
    ///   given (no implicit `latest`).
    /// - `https://...`: a download. Credentials in the URL are refused: a deployment is no
    ///   place for a secret.
    /// - `http://...`: only when the host is loopback (127.0.0.0/8, ::1, `localhost`); plain
    ///   http to anything else is refused.
    /// - anything else is a file path: absolute, or relative to `base` (typically the
    ///   deployment file's directory); a relative path with no `base` is an error.
    pub fn parse(text: &str, base: Option<&Path>) -> Result<Source, SourceError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SourceError::Empty);
        }
        match url_scheme(text) {
            Some(scheme) if scheme.eq_ignore_ascii_case("oci") => {
                let reference = &text[scheme.len() + 3..];
                check_oci_reference(reference)?;
                Ok(Source::Oci(reference.to_string()))
            }
            Some(_) => {
                check_http_url(text)?;
                Ok(Source::Http(text.to_string()))
            }
            None => {
                let path = Path::new(text);
                if path.is_absolute() {
                    Ok(Source::File(path.to_path_buf()))
                } else if let Some(base) = base {
                    Ok(Source::File(base.join(path)))
                } else {
                    Err(SourceError::RelativeWithoutBase(text.to_string()))
                }
            }
        }
    }

    /// Whether a sha256 must accompany this source: true for [`Source::Http`] (a URL names a
    /// place, not content); false for a file and for OCI, where a digest reference is verified
    /// by its digest and a tag pull is verified against a sha256 when one is given.
    pub fn requires_sha256(&self) -> bool {
        matches!(self, Source::Http(_))
    }
}

impl fmt::Display for Source {
    /// The source as written (file sources resolved against their base). Sources with
    /// credentials are refused by [`Source::parse`], so nothing secret is ever shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Http(url) => f.write_str(&redact_userinfo(url)),
            Source::Oci(reference) => write!(f, "oci://{reference}"),
        }
    }
}

/// The scheme of `text` if it looks like `scheme://...` (RFC 3986 scheme characters).
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some(scheme)
}

/// Checks an http(s) source: it parses, has a host, carries no credentials, and is https
/// unless the host is loopback.
pub(crate) fn check_http_url(text: &str) -> Result<url::Url, SourceError> {
    let shown = redact_userinfo(text);
    let invalid = |reason: &str| SourceError::InvalidUrl {
        text: shown.clone(),
        reason: reason.to_string(),
    };
    let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials in the URL are refused (a deployment is no place for a secret)",
        ));
    }
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid(&format!(
            "unsupported scheme {:?}: use oci://, https://, http:// to a loopback host, or a file path",
            url.scheme()
        )));
    }
    let Some(host) = url.host() else {
        return Err(invalid("no host"));
    };
    if url.scheme() == "http" && !is_loopback_host(&host) {
        return Err(SourceError::PlainHttp(shown));
    }
    Ok(url)
}

/// Checks an OCI reference (without `oci://`): parses, names its registry, has a tag or a
/// sha256 digest.
pub(crate) fn check_oci_reference(text: &str) -> Result<oci_client::Reference, SourceError> {
    let invalid = |reason: String| SourceError::InvalidOciReference {
        text: text.to_string(),
        reason,
    };
    if text.is_empty() {
        return Err(invalid("empty reference".into()));
    }
    // Docker's rule for whether the first component is a registry: it has a '.' or a ':', or
    // is "localhost". Without one, the reference would silently mean Docker Hub.
    let first = text.split('/').next().unwrap_or_default();
    let names_registry = text.contains('/') && (first.contains(['.', ':']) || first == "localhost");
    if !names_registry {
        return Err(invalid(
            "name the registry, as in oci://registry.example.com/repo:tag".into(),
        ));
    }
    let reference: oci_client::Reference = text.parse().map_err(|e| invalid(format!("{e}")))?;
    match reference.digest() {
        Some(digest) => {
            let hex = digest.strip_prefix("sha256:").unwrap_or_default();
            if !is_sha256_hex(hex) {
                return Err(invalid(format!(
                    "digest {digest:?} is not sha256:<64 lowercase hex digits>"
                )));
            }
        }
        // oci-spec fills in "latest" for a missing tag, so look at what is written.
        None if !text.rsplit('/').next().unwrap_or_default().contains(':') => {
            return Err(invalid(
                "give a tag (repo:tag) or a digest (repo@sha256:...)".into(),
            ));
        }
        None => {}
    }
    Ok(reference)
}

/// Whether `s` is 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a URL host is loopback: 127.0.0.0/8, ::1 (or its IPv4-mapped form), `localhost`.
pub(crate) fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a registry (`host[:port]`, `[v6]:port`) is on a loopback host.
pub(crate) fn registry_is_loopback(registry: &str) -> bool {
    url::Url::parse(&format!("http://{registry}/"))
        .ok()
        .and_then(|u| u.host().map(|h| is_loopback_host(&h)))
        .unwrap_or(false)
}

/// `scheme://user:pass@host/...` shown as `scheme://***@host/...`, for messages about a URL
/// that was refused for carrying credentials.
fn redact_userinfo(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Source, SourceError> {
        Source::parse(text, None)
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn oci_tag_and_digest_references() {
        let s = parse("oci://127.0.0.1:5000/wedge/sensor:1.0").unwrap();
        assert_eq!(s, Source::Oci("127.0.0.1:5000/wedge/sensor:1.0".into()));
        assert_eq!(s.to_string(), "oci://127.0.0.1:5000/wedge/sensor:1.0");
        assert!(!s.requires_sha256());

        let text = format!("oci://registry.example.com/wedge/sensor@{DIGEST}");
        let s = parse(&text).unwrap();
        assert_eq!(s.to_string(), text);
        assert!(!s.requires_sha256());

        assert!(parse("oci://localhost/sensor:v2").is_ok());
        assert!(parse(&format!("oci://r.example/sensor:1.0@{DIGEST}")).is_ok());
    }

    #[test]
    fn oci_references_refused() {
        for bad in [
            "oci://",
            "oci://wedge/sensor:1.0", // no registry: would mean Docker Hub
            "oci://sensor:1.0",       // no registry
            "oci://registry.example.com/wedge/sensor", // no tag or digest
            "oci://registry.example.com/Wedge/Sensor:1", // repository must be lowercase
            "oci://registry.example.com/sensor@sha256:abc", // short digest
            "oci://registry.example.com/sensor@md5:0123456789abcdef0123456789abcdef",
            "oci://[::1]:5000/sensor:v2", // oci-spec's reference grammar has no IPv6 literals
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                matches!(err, SourceError::InvalidOciReference { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().starts_with(bad), "{bad}: {err}");
        }
        let err = parse("oci://wedge/sensor:1.0").unwrap_err().to_string();
        assert!(err.contains("name the registry"), "{err}");
    }

    #[test]
    fn https_and_loopback_http() {
        let s = parse("https://example.com/modules/sensor.wasm").unwrap();
        assert_eq!(
            s,
            Source::Http("https://example.com/modules/sensor.wasm".into())
        );
        assert!(s.requires_sha256());
        assert_eq!(s.to_string(), "https://example.com/modules/sensor.wasm");

        for ok in [
            "http://127.0.0.1:8080/x.wasm",
            "http://127.1.2.3/x.wasm",
            "http://localhost:8080/x.wasm",
            "http://LOCALHOST/x.wasm",
            "http://[::1]:8080/x.wasm",
        ] {
            let s = parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(matches!(s, Source::Http(_)) && s.requires_sha256());
        }
    }

    #[test]
    fn plain_http_elsewhere_refused() {
        for bad in [
            "http://example.com/x.wasm",
            "http://10.0.0.1/x.wasm",
            "http://128.0.0.1/x.wasm",
            "http://localhost.example.com/x.wasm",
            "http://[::2]/x.wasm",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, SourceError::PlainHttp(_)), "{bad}: {err}");
            let msg = err.to_string();
            assert!(msg.starts_with(bad) && msg.contains("use https"), "{msg}");
        }
    }

    #[test]
    fn urls_refused() {
        let err = parse("https://alice:hunter2@example.com/x.wasm").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("credentials"), "{msg}");
        assert!(!msg.contains("hunter2") && !msg.contains("alice"), "{msg}");
        assert!(msg.starts_with("https://***@example.com/x.wasm"), "{msg}");

        let err = parse("ftp://example.com/x.wasm").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme \"ftp\""), "{err}");
        let err = parse("file:///opt/x.wasm").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme"), "{err}");
        let err = parse("https://exa mple.com/x.wasm").unwrap_err();
        assert!(matches!(err, SourceError::InvalidUrl { .. }), "{err}");
    }

    #[test]
    fn file_paths() {
        assert_eq!(
            parse("/opt/wedge/sensor.wasm").unwrap(),
            Source::File("/opt/wedge/sensor.wasm".into())
        );
        let base = Path::new("/etc/wedge");
        let s = Source::parse("modules/sensor.wasm", Some(base)).unwrap();
        assert_eq!(s, Source::File("/etc/wedge/modules/sensor.wasm".into()));
        assert_eq!(s.to_string(), "/etc/wedge/modules/sensor.wasm");
        assert!(!s.requires_sha256());
        // An absolute path ignores the base.
        assert_eq!(
            Source::parse("/x.wasm", Some(base)).unwrap(),
            Source::File("/x.wasm".into())
        );
        // Whitespace around the source (as in hand-written TOML) is not part of it.
        assert_eq!(
            parse("  /x.wasm \n").unwrap(),
            Source::File("/x.wasm".into())
        );
    }

    #[test]
    fn relative_without_base_and_empty_refused() {
        let err = parse("modules/sensor.wasm").unwrap_err();
        assert!(matches!(err, SourceError::RelativeWithoutBase(_)), "{err}");
        assert!(err.to_string().starts_with("modules/sensor.wasm: "));
        assert!(matches!(parse("  ").unwrap_err(), SourceError::Empty));
    }

    #[test]
    fn loopback_registries() {
        assert!(registry_is_loopback("127.0.0.1:5000"));
        assert!(registry_is_loopback("localhost:5000"));
        assert!(registry_is_loopback("[::1]:5000"));
        assert!(!registry_is_loopback("registry.example.com"));
        assert!(!registry_is_loopback("192.168.1.2:5000"));
    }
}
