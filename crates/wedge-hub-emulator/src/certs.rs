//! Per-run TLS material for the broker: a throwaway CA and a server certificate it signs.

use std::path::Path;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`.
///
/// A fresh CA per run means no test can accidentally trust a real hub, and clients must be
/// configured with [`crate::Broker::ca_pem`] exactly as they would with a private CA.
pub(crate) fn write_tls_files(dir: &Path) -> Result<()> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wedge-hub-emulator test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    // Both names: clients may dial `localhost` or the literal loopback address.
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server_key = KeyPair::generate()?;
    let server = server_params.signed_by(&server_key, &ca)?;

    for (name, contents) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server.pem()),
        ("server.key", server_key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), contents).with_context(|| format!("writing {name}"))?;
    }
    Ok(())
}
