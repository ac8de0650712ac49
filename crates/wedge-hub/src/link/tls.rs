//! TLS for upstream connections: the public roots plus an optional CA file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("ca-file {path}: {reason}")]
pub struct CaFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// A client configuration trusting the public roots (IoT Hub's certificates chain to them) and
/// the certificates of `ca_file`.
///
/// # Errors
/// The file cannot be read, holds no certificate, or a certificate is malformed.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, CaFileError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let error = |reason: String| CaFileError {
            path: path.to_path_buf(),
            reason,
        };
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .map_err(|e| error(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| error(e.to_string()))?;
        if certs.is_empty() {
            return Err(error("no certificates in the file".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| error(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth())
}
