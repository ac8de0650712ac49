//! Per-run TLS material for the broker: a throwaway CA, a server certificate it signs, and on
//! request client certificates (X.509 device authentication) from it or from another CA.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, SigningKey,
};

/// Where the client certificates signed by the per-run CA go, inside the broker's directory.
pub(crate) const CLIENTS_DIR: &str = "clients";
/// Where client certificates of another CA go.
pub(crate) const FOREIGN_DIR: &str = "foreign";
/// Where client certificates issued on request with a chosen validity go.
const ISSUED_DIR: &str = "issued";
/// The per-run CA's private key, in the broker's directory.
const CA_KEY: &str = "ca.key";
/// The per-run CA's common name.
const TEST_CA: &str = "wedge-hub-emulator test CA";

/// Writes `ca.pem`, `server.pem` and `server.key` into `dir`, and for each of `clients` a
/// client certificate with that common name and its key, `clients/{name}.pem` and
/// `clients/{name}.key`.
///
/// A fresh CA per run means no test can accidentally trust a real hub, and clients must be
/// configured with [`crate::Broker::ca_pem`] exactly as they would with a private CA.
pub(crate) fn write_tls_files(dir: &Path, clients: &[String]) -> Result<()> {
    let ca = new_ca(TEST_CA)?;

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
        // Kept so that certificates can be issued later ([`write_server_certificate`],
        // [`write_device_certificate`]).
        (CA_KEY, ca.key().serialize_pem()),
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
    Ok(CertifiedIssuer::self_signed(
        ca_params(common_name)?,
        KeyPair::generate()?,
    )?)
}

fn ca_params(common_name: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    Ok(params)
}

/// The per-run CA of `dir` again, from its key (`ca.key`): same name, same key, so what it
/// signs chains to `ca.pem`.
fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>> {
    let path = dir.join(CA_KEY);
    let pem =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Issuer::new(ca_params(TEST_CA)?, KeyPair::from_pem(&pem)?))
}

/// `time` as rcgen wants it.
fn offset_date_time(time: SystemTime) -> Result<time::OffsetDateTime> {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs())?,
        Err(before) => -i64::try_from(before.duration().as_secs())?,
    };
    Ok(time::OffsetDateTime::from_unix_timestamp(seconds)?)
}

/// Replaces `server.pem` and `server.key` in `dir` with a certificate for `names` (DNS names
/// or IP addresses), valid over `validity`, signed by the per-run CA.
pub(crate) fn write_server_certificate(
    dir: &Path,
    names: &[&str],
    validity: Range<SystemTime>,
) -> Result<()> {
    let ca = load_ca(dir)?;
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    params.not_before = offset_date_time(validity.start)?;
    params.not_after = offset_date_time(validity.end)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    std::fs::write(dir.join("server.pem"), cert.pem()).context("writing server.pem")?;
    std::fs::write(dir.join("server.key"), key.serialize_pem()).context("writing server.key")?;
    Ok(())
}

/// Writes a client certificate with common name `name`, valid over `validity`, signed by the
/// per-run CA of `dir`, into `dir/issued/`; returns the certificate and key paths (named
/// after `name` and the end of the validity, so several may be issued for one name).
pub(crate) fn write_device_certificate(
    dir: &Path,
    name: &str,
    validity: Range<SystemTime>,
) -> Result<(PathBuf, PathBuf)> {
    let ca = load_ca(dir)?;
    let not_after = offset_date_time(validity.end)?;
    let files = format!("{name}-{}", not_after.unix_timestamp());
    let mut params = client_params(name)?;
    params.not_before = offset_date_time(validity.start)?;
    params.not_after = not_after;
    write_signed(&dir.join(ISSUED_DIR), &files, params, &ca)
}

fn client_params(name: &str) -> Result<CertificateParams> {
    if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
        bail!("{name:?} cannot name a client certificate file");
    }
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// A TLS client certificate with common name `name` (what Mosquitto's
/// `use_identity_as_username` takes as the username), signed by `ca`.
fn write_client(
    dir: &Path,
    name: &str,
    ca: &Issuer<'_, impl SigningKey>,
) -> Result<(PathBuf, PathBuf)> {
    write_signed(dir, name, client_params(name)?, ca)
}

/// Signs `params` with `ca` and writes `dir/{name}.pem` and `dir/{name}.key`.
fn write_signed(
    dir: &Path,
    name: &str,
    params: CertificateParams,
    ca: &Issuer<'_, impl SigningKey>,
) -> Result<(PathBuf, PathBuf)> {
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
