//! TLS for both clients: rustls with the ring provider, trusting the public CAs of
//! webpki-root-certs plus any extra roots the caller gives.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// Makes ring the process's rustls provider unless one is installed already. reqwest and
/// oci-client are built with their "no provider" TLS features (to keep aws-lc-rs and its C
/// build out), so they use the process default; oci-client offers no way to pass one.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is then installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The trusted roots as DER: webpki-root-certs' public CAs, then every certificate in each
/// of `extra_pem` (each may be a bundle).
pub(crate) fn root_certificates(extra_pem: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String> {
    let mut roots: Vec<Vec<u8>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
    for (i, pem) in extra_pem.iter().enumerate() {
        let before = roots.len();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("extra root certificate #{}: {e}", i + 1))?;
            roots.push(cert.as_ref().to_vec());
        }
        if roots.len() == before {
            return Err(format!(
                "extra root certificate #{}: no PEM CERTIFICATE in it",
                i + 1
            ));
        }
    }
    Ok(roots)
}
