//! The rustls client configuration that trusts a broker's per-run CA.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// A rustls [`ClientConfig`] trusting only the CA certificates in `ca_pem`, for
/// `rumqttc::TlsConfiguration::Rustls`.
///
/// The ring provider is passed explicitly rather than installed process-wide, so this works
/// whatever other crypto providers the test binary links.
pub fn client_tls_config(ca_pem: &str) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.context("parsing CA PEM")?)
            .context("adding CA certificate")?;
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(config)
}
