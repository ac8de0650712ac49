//! Per-run TLS material for the broker: a throwaway CA, a server certificate it signs, and on
//! request client certificates (X.509 device authentication) from it or from another CA.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SigningKey,
};

/// Where the client certificates signed by the per-run CA go, inside the broker's directory.
pub(crate) const CLIENTS_DIR: &str = "clients";
/// Where client certificates of another CA go.
pub(crate) const FOREIGN_DIR: &str = "foreign";

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`, and for each of `clients` a
/// client certificate with that common name and its key, `clients/{name}.pem` and
/// `clients/{name}.key`.
///
/// A fresh CA per run means no test can accidentally trust a real hub, and clients must be
/// configured with [`crate::Broker::ca_pem`] exactly as they would with a private CA.
pub(crate) fn write_tls_files(dir: &Path, clients: &[String]) -> Result<()> {
    let ca = new_ca("wedge-hub-emulator test CA")?;

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
    for name in clients {
        write_client(&dir.join(CLIENTS_DIR), name, &ca)?;
    }
    Ok(())
}

/// Writes a client certificate for `name` signed by a CA of its own (one the broker does not
/// trust) into `dir/foreign/`; returns the certificate and key paths.
pub(crate) fn write_foreign_client(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let ca = new_ca("wedge-hub-emulator foreign CA")?;
    write_client(&dir.join(FOREIGN_DIR), name, &ca)
}

/// The paths `dir/{name}.pem` and `dir/{name}.key`.
pub(crate) fn client_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )
}

fn new_ca(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

/// A TLS client certificate with common name `name` (what Mosquitto's
/// `use_identity_as_username` takes as the username), signed by `ca`.
fn write_client(
    dir: &Path,
    name: &str,
    ca: &Issuer<'_, impl SigningKey>,
) -> Result<(PathBuf, PathBuf)> {
    if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
        bail!("{name:?} cannot name a client certificate file");
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (cert_path, key_path) = client_paths(dir, name);
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    std::fs::write(&key_path, key.serialize_pem())
        .with_context(|| format!("writing {}", key_path.display()))?;
    Ok((cert_path, key_path))
}
