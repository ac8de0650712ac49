//! The rustls client configurations that trust a broker's per-run CA.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// A rustls [`ClientConfig`] trusting only the CA certificates in `ca_pem`, for
/// `rumqttc::TlsConfiguration::Rustls`.
///
/// The ring provider is passed explicitly rather than installed process-wide, so this works
/// whatever other crypto providers the test binary links.
pub fn client_tls_config(ca_pem: &str) -> Result<ClientConfig> {
    Ok(builder(ca_pem)?.with_no_client_auth())
}

/// Like [`client_tls_config`], presenting the client certificate (chain) `cert_pem` with its
/// private key `key_pem`, for a broker that requires client certificates.
pub fn client_tls_config_with_cert(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<ClientConfig> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing the client certificate PEM")?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("parsing the client key PEM")?;
    builder(ca_pem)?
        .with_client_auth_cert(certs, key)
        .context("using the client certificate")
}

fn builder(
    ca_pem: &str,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.context("parsing CA PEM")?)
            .context("adding CA certificate")?;
    }
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots),
    )
}
