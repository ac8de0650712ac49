//! Pulls a Wasm OCI artifact: the manifest, then its one layer of the Wasm media type.

use std::pin::Pin;
use std::task::{Context, Poll};

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciManifest, WASM_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth as OciAuth;

use crate::http::{error_chain, root_cause};
use crate::source::registry_is_loopback;
use crate::{FetchErrorKind, FetchOptions, tls};

/// Pulls the Wasm layer of `reference` (already checked by `check_oci_reference`).
pub(crate) async fn fetch(
    reference: &oci_client::Reference,
    options: &FetchOptions,
) -> Result<Vec<u8>, FetchErrorKind> {
    let registry = reference.registry();
    let client = client(registry, options)?;
    let credentials = options
        .registry_auth
        .get(registry)
        .or_else(|| options.registry_auth.get(reference.resolve_registry()));
    let auth = match credentials {
        Some((user, password)) => OciAuth::Basic(user.to_string(), password.to_string()),
        None => OciAuth::Anonymous,
    };
    let describe = |e| registry_error(e, registry, credentials.is_some());

    let (manifest, _digest) = client
        .pull_manifest(reference, &auth)
        .await
        .map_err(describe)?;
    let manifest = match manifest {
        OciManifest::Image(manifest) => manifest,
        OciManifest::ImageIndex(_) => {
            return Err(FetchErrorKind::NotWasmArtifact(
                "the reference is an image index (multi-platform), not an artifact manifest".into(),
            ));
        }
    };
    let wasm: Vec<_> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == WASM_LAYER_MEDIA_TYPE)
        .collect();
    let layer = match wasm.as_slice() {
        [layer] => *layer,
        [] => {
            let layers = manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect::<Vec<_>>();
            let layers = if layers.is_empty() {
                "none".to_string()
            } else {
                layers.join(", ")
            };
            return Err(FetchErrorKind::NoWasmLayer {
                media_type: WASM_LAYER_MEDIA_TYPE,
                layers,
            });
        }
        several => {
            return Err(FetchErrorKind::NotWasmArtifact(format!(
                "{} layers of media type {WASM_LAYER_MEDIA_TYPE}, expected one",
                several.len()
            )));
        }
    };
    let max = options.max_bytes;
    let declared = u64::try_from(layer.size).unwrap_or(0);
    if declared > max {
        return Err(FetchErrorKind::TooLarge { max });
    }
    // The declared size is not trusted further than the capacity: the writer enforces the cap.
    let mut out = CappedBuffer {
        bytes: Vec::with_capacity(usize::try_from(declared).unwrap_or(0)),
        max,
        exceeded: false,
    };
    // oci-client checks the blob against the layer's digest (and the registry's digest header).
    let pulled = client.pull_blob(reference, layer, &mut out).await;
    if out.exceeded {
        return Err(FetchErrorKind::TooLarge { max });
    }
    pulled.map_err(describe)?;
    Ok(out.bytes)
}

/// A client for one registry: plain http only when the registry is on loopback.
fn client(registry: &str, options: &FetchOptions) -> Result<oci_client::Client, FetchErrorKind> {
    tls::ensure_crypto_provider();
    let roots = tls::root_certificates(&options.extra_root_pem).map_err(FetchErrorKind::Tls)?;
    let protocol = if registry_is_loopback(registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_string()])
    } else {
        ClientProtocol::Https
    };
    let config = ClientConfig {
        protocol,
        tls_certs_only: roots
            .into_iter()
            .map(|data| Certificate {
                encoding: CertificateEncoding::Der,
                data,
            })
            .collect(),
        // A Wasm artifact is one manifest; an index is refused rather than resolved.
        platform_resolver: None,
        connect_timeout: Some(options.timeout),
        read_timeout: Some(options.timeout),
        user_agent: concat!("wedge/", env!("CARGO_PKG_VERSION")),
        ..ClientConfig::default()
    };
    oci_client::Client::try_from(config).map_err(|e| FetchErrorKind::Tls(error_chain(&e)))
}

/// An oci-client error as a kind, in the registry's own words where it gave some.
fn registry_error(
    e: OciDistributionError,
    registry: &str,
    with_credentials: bool,
) -> FetchErrorKind {
    let unauthorized = || {
        FetchErrorKind::Unauthorized(if with_credentials {
            format!("the credentials for {registry} were refused")
        } else {
            format!("no credentials for {registry}")
        })
    };
    match e {
        OciDistributionError::RequestError(e) => {
            let e = e.without_url();
            if e.is_connect() {
                FetchErrorKind::Unreachable(root_cause(&e))
            } else {
                FetchErrorKind::Transfer(error_chain(&e))
            }
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
        OciDistributionError::ImageManifestNotFoundError(message) => {
            FetchErrorKind::NotFound(message)
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes = envelope.errors.iter().map(|e| &e.code).collect::<Vec<_>>();
            let message = envelope
                .errors
                .iter()
                .map(|e| match e.message.trim() {
                    "" => format!("{:?}", e.code),
                    message => message.to_string(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                FetchErrorKind::NotFound(message)
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized()
            } else {
                FetchErrorKind::Registry(message)
            }
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            401 | 403 => unauthorized(),
            404 => FetchErrorKind::NotFound(format!("HTTP 404 {}", truncate(&message))),
            _ => FetchErrorKind::Registry(format!("HTTP {code} {}", truncate(&message))),
        },
        other => FetchErrorKind::Registry(error_chain(&other)),
    }
}

fn truncate(message: &str) -> String {
    let message = message.trim();
    match message.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message.to_string(),
    }
}

/// Collects a blob in memory, failing the write that would take it over `max` bytes.
struct CappedBuffer {
    bytes: Vec<u8>,
    max: u64,
    exceeded: bool,
}

impl tokio::io::AsyncWrite for CappedBuffer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.bytes.len() as u64 + buf.len() as u64 > self.max {
            self.exceeded = true;
            return Poll::Ready(Err(std::io::Error::other("layer larger than the cap")));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
