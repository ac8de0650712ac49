//! TLS for upstream connections: the public roots plus an optional CA file, and optionally a
//! client certificate (X.509 authentication).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file (CA certificates, client certificate or private key) that cannot be used. The
/// message names the deployment field and the file; it never holds the file's contents.
#[derive(Debug, thiserror::Error)]
#[error("{field} {path}: {reason}")]
pub struct TlsFileError {
    /// The deployment field the file came from: `ca-file`, `cert-file` or `key-file`.
    pub field: &'static str,
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// A CA file that cannot be used (a [`TlsFileError`] with `field` `ca-file`).
pub type CaFileError = TlsFileError;

/// The device's certificate and private key for TLS client authentication (IoT Hub's X.509
/// authentication). Both PEM; they may be the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate chain, the device's own certificate first.
    pub cert_file: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

impl ClientIdentity {
    /// Reads and checks both files.
    ///
    /// # Errors
    /// A file cannot be read, holds no certificate or no key, or does not parse. The key's
    /// bytes never appear in the error.
    pub fn load(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsFileError> {
        let certs = read_certificates("cert-file", &self.cert_file)?;
        let error = |reason: String| TlsFileError {
            field: "key-file",
            path: self.key_file.clone(),
            reason,
        };
        // `from_pem_file` takes the first private key of any PEM kind; its errors describe
        // the file (I/O, no key, bad base64), not the key.
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                error("no private key in the file (expected a PEM `PRIVATE KEY` block)".into())
            }
            other => error(other.to_string()),
        })?;
        Ok((certs, key))
    }
}

/// The certificates of the PEM file `path`, at least one.
fn read_certificates(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let error = |reason: String| TlsFileError {
        field,
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error(
            "no certificates in the file (expected PEM `CERTIFICATE` blocks)".into(),
        ));
    }
    Ok(certs)
}

/// A client configuration trusting the public roots (IoT Hub's certificates chain to them) and
/// the certificates of `ca_file`, without a client certificate.
///
/// # Errors
/// As [`client_config_with_identity`].
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsFileError> {
    client_config_with_identity(ca_file, None)
}

/// What the upstream connections trust: the public roots (IoT Hub's certificates chain to
/// them) and the certificates of `ca_file`. `wedge check` verifies servers against exactly this.
///
/// # Errors
/// `ca_file` cannot be read, holds no certificate, or one is malformed.
pub fn trust_roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, TlsFileError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_certificates("ca-file", path)? {
            roots.add(cert).map_err(|e| TlsFileError {
                field: "ca-file",
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// Like [`client_config`], presenting `identity`'s certificate when the server asks for one.
///
/// # Errors
/// A file cannot be read, holds no certificate (or key), a certificate is malformed, or the key
/// does not suit the certificate.
pub fn client_config_with_identity(
    ca_file: Option<&Path>,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, TlsFileError> {
    let roots = trust_roots(ca_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => {
            let (certs, key) = identity.load()?;
            // Checks that the key is usable and matches the certificate's public key.
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsFileError {
                    field: "key-file",
                    path: identity.key_file.clone(),
                    reason: format!(
                        "unusable with the certificate of {}: {e}",
                        identity.cert_file.display()
                    ),
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Throwaway test material, made with
    // `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=dev1`
    // (certificate and key) and `openssl genpkey -algorithm EC` (another key).
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBdTCCARugAwIBAgIUJJquZPgujPPl/jBrQKXReqNxsWwwCgYIKoZIzj0EAwIw
DzENMAsGA1UEAwwEZGV2MTAgFw0yNjExMjUxNTI4NTJaGA8yMTI2MTEwMTE1Mjg1
MlowDzENMAsGA1UEAwwEZGV2MTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMG2
7x/cWekaJVXz0YfWvT6j2yU8BmWtNoi10DcxrDSocKSqkVW7Y6QJF7iDGuuUHOL0
z7fE1IaUXhuxr06j+dijUzBRMB0GA1UdDgQWBBRps0y21iTdfy1/AC9HJVuTOzRT
CDAfBgNVHSMEGDAWgBRps0y21iTdfy1/AC9HJVuTOzRTCDAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMCA0gAMEUCIQDW+gJgg4kFqP6Md7Zbv+3kj9TIVC7uIknV
glM9bSCnzAIgHSKs4Z0xJPIvCFlsNKicsqxUp3ABckyJflvCMf9YAxk=
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8BTS15EWGYM2IXR7
XdjfKI8FwJOQySF3b1yUbfEmaeuhRANCAATBtu8f3FnpGiVV89GH1r0+o9slPAZl
rTaItdA3Maw0qHCkqpFVu2OkCRe4gxrrlBzi9M+3xNSGlF4bsa9Oo/nY
-----END PRIVATE KEY-----
";
    const OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPlzQqG8HvncDEkfZ
HVPle5fSt6rLSkIi5IyXgye4+fOhRANCAAQOHNuCdReq55+uFs3rEr3j/WiuhwZL
HLsBxY7fiCKhy2jQzcDKpqm086Vds/sPB7Wy+/5rSYNouw1VW6kWVgwc
-----END PRIVATE KEY-----
";

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn errors_name_the_field_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty.pem", "");
        let missing = dir.path().join("missing.pem");

        let err = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("ca-file {}: no certificates", empty.display())),
            "{err}"
        );

        let identity = ClientIdentity {
            cert_file: missing.clone(),
            key_file: empty.clone(),
        };
        let err = client_config_with_identity(None, Some(&identity))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("cert-file {}:", missing.display())),
            "{err}"
        );

        let cert = write(dir.path(), "cert.pem", CERT);
        let identity = ClientIdentity {
            cert_file: cert,
            key_file: empty.clone(),
        };
        let err = client_config_with_identity(None, Some(&identity))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("key-file {}: no private key", empty.display())),
            "{err}"
        );
    }

    #[test]
    fn a_matching_key_is_taken_and_another_refused_without_showing_it() {
        let dir = tempfile::tempdir().unwrap();
        let cert = write(dir.path(), "cert.pem", CERT);
        let key = write(dir.path(), "key.pem", KEY);
        let other = write(dir.path(), "other.pem", OTHER_KEY);
        let both = write(dir.path(), "both.pem", &format!("{CERT}{KEY}"));

        let identity = |cert_file: &Path, key_file: &Path| ClientIdentity {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
        };
        let config = client_config_with_identity(None, Some(&identity(&cert, &key))).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        // One file holding both, as the C SDK's samples use.
        client_config_with_identity(None, Some(&identity(&both, &both))).unwrap();
        assert!(
            !client_config(None)
                .unwrap()
                .client_auth_cert_resolver
                .has_certs()
        );

        let err = client_config_with_identity(None, Some(&identity(&cert, &other)))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("key-file {}: unusable", other.display())),
            "{err}"
        );
        let body: String = OTHER_KEY.lines().nth(1).unwrap().chars().take(16).collect();
        assert!(!err.contains(&body), "{err}");
    }
}
