//! Each endpoint the upstream connects to, checked as the link would reach it: the name
//! resolves, a TCP connection opens, and the TLS handshake completes with the configured trust
//! (the link's own `wedge_hub::tls`: public roots plus `ca-file`, the device certificate when
//! there is one). What fails is named as the operator would search for it: certificate host
//! mismatch, unknown issuer, expired. The certificate the server presents is kept, whether or
//! not it verified, for the clock check.
//!
//! An endpoint is a role (`upstream`, or `dps` for the provisioning service), a host, a
//! port and its trust: another endpoint is one more [`Endpoint`] given to [`check_endpoint`].

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use wedge_hub::iothub::session::ClientIdentity;

use super::certificate::{CertInfo, rfc3339, unix};
use super::{Blocked, Check, blocking, clock, seconds};

/// After a TLS 1.3 handshake the client is done before the server has looked at its
/// certificate: a server refusing it says so (an alert) right after. This long is waited for
/// that answer when a device certificate was presented.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Where a part of the upstream connects, and what it trusts there.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    /// What it is, the start of each check's name: `upstream`.
    pub role: &'static str,
    /// The host name or address dialled (and the name the certificate must have).
    pub host: String,
    /// The port.
    pub port: u16,
    /// TLS, or `None` for plain TCP.
    pub tls: Option<Trust>,
}

/// What a TLS endpoint is verified against and presented with.
#[derive(Debug, Clone)]
pub(super) struct Trust {
    /// `ca-file`: CAs trusted besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// The device certificate, when it authenticates with one.
    pub identity: Option<ClientIdentity>,
}

/// The endpoint's lines: DNS, TCP, then TLS and the clock against its certificate. A step
/// that fails ends the list (what follows cannot be tried); each waits at most `timeout`.
pub(super) async fn check_endpoint(endpoint: &Endpoint, timeout: Duration) -> Vec<Check> {
    let mut checks = Vec::new();
    let addresses = match resolve(endpoint, timeout).await {
        Ok((check, addresses)) => {
            checks.push(check);
            addresses
        }
        Err(check) => {
            checks.push(check);
            return checks;
        }
    };
    let tcp = match connect(endpoint, &addresses, timeout).await {
        Ok((check, tcp)) => {
            checks.push(check);
            tcp
        }
        Err(check) => {
            checks.push(check);
            return checks;
        }
    };
    let name = format!("{} tls", endpoint.role);
    match &endpoint.tls {
        None => checks.push(Check::warning(
            name,
            format!(
                "off: {}:{} is plain MQTT, credentials and messages travel unencrypted",
                endpoint.host, endpoint.port
            ),
            "set `tls = true` (and the broker's TLS port) unless the broker is on this device",
        )),
        Some(trust) => {
            let (check, server) = handshake(endpoint, trust, tcp, timeout).await;
            checks.push(check);
            if let Some(server) = server {
                checks.push(clock::check(endpoint.role, &server, SystemTime::now()));
            }
        }
    }
    checks
}

async fn resolve(
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<(Check, Vec<SocketAddr>), Check> {
    let name = format!("{} dns", endpoint.role);
    let host = endpoint.host.clone();
    if let Ok(ip) = host.parse::<IpAddr>() {
        let check = Check::ok(name, format!("{host} is an address, nothing to resolve"));
        return Ok((check, vec![SocketAddr::new(ip, endpoint.port)]));
    }
    let port = endpoint.port;
    let lookup = {
        let host = host.clone();
        // getaddrinfo has no deadline of its own; it runs on a thread given up on in time.
        blocking(timeout, move || {
            (host.as_str(), port)
                .to_socket_addrs()
                .map(|found| found.collect::<Vec<_>>())
        })
    };
    let remedy = "check the host name in [upstream] and the device's DNS (/etc/resolv.conf)";
    match lookup.await {
        Ok(Ok(addresses)) if !addresses.is_empty() => {
            let shown: Vec<String> = addresses.iter().map(|a| a.ip().to_string()).collect();
            Ok((
                Check::ok(name, format!("{host} resolves to {}", shown.join(", "))),
                addresses,
            ))
        }
        Ok(Ok(_)) => Err(Check::error(
            name,
            format!("{host} resolves to no address"),
            remedy,
        )),
        Ok(Err(e)) => Err(Check::error(
            name,
            format!("cannot resolve {host}: {e}"),
            remedy,
        )),
        Err(Blocked::TimedOut) => Err(Check::error(
            name,
            format!("no answer resolving {host} within {}", seconds(timeout)),
            remedy,
        )),
        Err(Blocked::Failed(e)) => {
            Err(Check::error(name, format!("resolving {host}: {e}"), remedy))
        }
    }
}

/// Tries the addresses in turn, all within `timeout`, as the link's connect does.
async fn connect(
    endpoint: &Endpoint,
    addresses: &[SocketAddr],
    timeout: Duration,
) -> Result<(Check, TcpStream), Check> {
    let name = format!("{} tcp", endpoint.role);
    let target = format!("{}:{}", endpoint.host, endpoint.port);
    let deadline = Instant::now() + timeout;
    let mut failures = Vec::new();
    let mut timed_out = false;
    for address in addresses {
        let left = deadline.saturating_duration_since(Instant::now());
        let via = if address.ip().to_string() == endpoint.host {
            String::new()
        } else {
            format!(" ({address})")
        };
        match tokio::time::timeout(left, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => {
                return Ok((
                    Check::ok(name, format!("TCP connect to {target}{via} succeeded")),
                    tcp,
                ));
            }
            Ok(Err(e)) => failures.push((format!("{via}: {e}"), e.kind())),
            Err(_) => {
                timed_out = true;
                break;
            }
        }
    }
    let refused = failures
        .iter()
        .any(|(_, kind)| *kind == std::io::ErrorKind::ConnectionRefused);
    let mut found = format!("TCP connect to {target} failed");
    for (failure, _) in &failures {
        found.push_str(failure);
    }
    let remedy = if timed_out {
        found.push_str(&format!(": no answer within {}", seconds(timeout)));
        "nothing answered: a firewall may drop the packets, or the host or port is wrong"
    } else if refused {
        "nothing listens there: check that the hub or broker runs, and the host and port in [upstream]"
    } else {
        "check the device's network and its route to the host"
    };
    Err(Check::error(name, found, remedy))
}

/// The TLS line, and the certificate the server presented (verified or not).
async fn handshake(
    endpoint: &Endpoint,
    trust: &Trust,
    tcp: TcpStream,
    timeout: Duration,
) -> (Check, Option<CertInfo>) {
    let name = format!("{} tls", endpoint.role);
    let target = format!("{}:{}", endpoint.host, endpoint.port);
    let server_name = match ServerName::try_from(endpoint.host.clone()) {
        Ok(server_name) => server_name,
        Err(e) => {
            return (
                Check::error(
                    name,
                    format!("{} cannot be a TLS server name: {e}", endpoint.host),
                    "give a DNS name or an IP address",
                ),
                None,
            );
        }
    };
    let ca_file = trust.ca_file.as_deref();
    // The device certificate when it is usable; when it is not, the credential checks say why
    // and the handshake still shows whether the server is reachable and trusted.
    let (config, presented) =
        match wedge_hub::tls::client_config_with_identity(ca_file, trust.identity.as_ref()) {
            Ok(config) => (Ok(config), trust.identity.is_some()),
            Err(_) => (
                wedge_hub::tls::client_config_with_identity(ca_file, None),
                false,
            ),
        };
    let recorder = match config
        .and_then(|config| Ok((config, wedge_hub::tls::trust_roots(ca_file)?)))
        .map(|(config, roots)| Recorder::install(config, roots))
    {
        Ok(Ok(recorder)) => recorder,
        Ok(Err(e)) => {
            return (
                Check::error(
                    name,
                    format!("cannot verify certificates: {e}"),
                    "report this as a bug",
                ),
                None,
            );
        }
        Err(e) => {
            return (
                Check::error(
                    name,
                    e.to_string(),
                    "give `ca-file` a PEM file of the CA certificates that issued the server's certificate",
                ),
                None,
            );
        }
    };
    let (config, seen) = recorder;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let outcome = tokio::time::timeout(timeout, connector.connect(server_name, tcp)).await;
    let server = seen
        .lock()
        .expect("the verifier does not panic")
        .take()
        .and_then(|der| CertInfo::parse(&der).ok());
    let failure = |error: &std::io::Error| {
        describe_failure(endpoint, trust, presented, error, server.as_ref())
    };
    let check = match outcome {
        Err(_) => Check::error(
            name,
            format!("no TLS handshake with {target} within {}", seconds(timeout)),
            "check that this port speaks TLS (MQTT over TLS is usually 8883, plain MQTT 1883)",
        ),
        Ok(Err(e)) => failure(&e),
        Ok(Ok(mut stream)) => {
            let version = stream
                .get_ref()
                .1
                .protocol_version()
                .map(|v| format!("{v:?}").replace('_', "."))
                .unwrap_or_else(|| "TLS".into());
            // A refusal of the device certificate arrives as an alert on the first read.
            let mut byte = [0u8; 1];
            let refused = match presented {
                true => tokio::time::timeout(REFUSAL_WAIT.min(timeout), stream.read(&mut byte))
                    .await
                    .ok()
                    .and_then(Result::err),
                false => None,
            };
            match refused {
                Some(e) => failure(&e),
                None => {
                    let mut found = format!("{version} handshake with {target}");
                    if let Some(server) = &server {
                        found.push_str(&format!(
                            ", certificate for {} issued by {}, valid until {}",
                            server.names.join(", "),
                            server.issuer,
                            rfc3339(server.not_after)
                        ));
                    }
                    if presented {
                        found.push_str("; device certificate presented and not refused");
                    }
                    Check::ok(name, found)
                }
            }
        }
    };
    (check, server)
}

/// The failed handshake's line, naming the certificate problem when it is one.
fn describe_failure(
    endpoint: &Endpoint,
    trust: &Trust,
    presented: bool,
    error: &std::io::Error,
    server: Option<&CertInfo>,
) -> Check {
    let name = format!("{} tls", endpoint.role);
    let role = endpoint.role;
    let target = format!("{}:{}", endpoint.host, endpoint.port);
    let names = |fallback: &[String]| match server {
        Some(server) => server.names.join(", "),
        None => fallback.join(", "),
    };
    let issuer = server.map_or_else(|| "an unknown CA".into(), |s| s.issuer.clone());
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let now = rfc3339(unix(SystemTime::now()));
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(certificate)) => match certificate {
            CertificateError::NotValidForName => Check::error(
                name,
                format!(
                    "certificate host mismatch: the {role}'s certificate is for {}, not {}",
                    names(&[]),
                    endpoint.host
                ),
                host_mismatch_remedy(endpoint),
            ),
            CertificateError::NotValidForNameContext { presented, .. } => Check::error(
                name,
                format!(
                    "certificate host mismatch: the {role}'s certificate is for {}, not {}",
                    names(presented),
                    endpoint.host
                ),
                host_mismatch_remedy(endpoint),
            ),
            CertificateError::UnknownIssuer => Check::error(
                name,
                format!(
                    "unknown issuer: the {role}'s certificate at {target} (issued by {issuer}) does not chain to a trusted CA"
                ),
                match &trust.ca_file {
                    None => "set `ca-file` to the CA that issued it (the public roots are trusted already)".to_owned(),
                    Some(path) => format!("{} does not hold the CA that issued it: add that CA", path.display()),
                },
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Check::error(
                name,
                format!(
                    "expired: the {role}'s certificate at {target} expired at {} (the clock says {now})",
                    server.map_or_else(|| "an earlier time".into(), |s| rfc3339(s.not_after))
                ),
                "renew the server's certificate; if the clock is wrong, set the clock / enable NTP",
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Check::error(
                    name,
                    format!(
                        "not valid yet: the {role}'s certificate at {target} is valid from {} (the clock says {now})",
                        server.map_or_else(|| "a later time".into(), |s| rfc3339(s.not_before))
                    ),
                    "the clock is probably behind: set the clock / enable NTP (`timedatectl set-ntp true`)",
                )
            }
            other => Check::error(
                name,
                format!("the {role}'s certificate at {target} was refused: {other}"),
                "check the server's certificate chain",
            ),
        },
        Some(rustls::Error::AlertReceived(alert)) => Check::error(
            name,
            format!("the {role} at {target} ended the TLS handshake with alert {alert:?}"),
            if presented {
                "the hub does not accept the device certificate: check that it (or its CA) is registered with the hub and that it is valid"
            } else {
                "the server may require a client certificate, or refuse this TLS version"
            },
        ),
        Some(other) => Check::error(
            name,
            format!("TLS handshake with {target} failed: {other}"),
            "check that this port speaks TLS (MQTT over TLS is usually 8883, plain MQTT 1883)",
        ),
        None => Check::error(
            name,
            format!("TLS handshake with {target} failed: {error}"),
            "check that this port speaks TLS (MQTT over TLS is usually 8883, plain MQTT 1883)",
        ),
    }
}

fn host_mismatch_remedy(endpoint: &Endpoint) -> String {
    format!(
        "connect by a name the certificate has (`GatewayHostName` in the connection string, or `host`), or give the server a certificate for {}",
        endpoint.host
    )
}

/// The link's own verifier (webpki against the same roots), which also keeps the end-entity
/// certificate the server presented: the clock check and the error lines need it, including
/// when verification fails and rustls hands back nothing else.
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

/// The configuration with a [`Recorder`] in place, and where it keeps what it saw.
type Recorded = (
    rustls::ClientConfig,
    Arc<Mutex<Option<CertificateDer<'static>>>>,
);

impl Recorder {
    fn install(
        mut config: rustls::ClientConfig,
        roots: rustls::RootCertStore,
    ) -> Result<Recorded, rustls::client::VerifierBuilderError> {
        let inner = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            config.crypto_provider().clone(),
        )
        .build()?;
        let seen = Arc::new(Mutex::new(None));
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(Recorder {
                inner,
                seen: seen.clone(),
            }));
        Ok((config, seen))
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("not poisoned") = Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
