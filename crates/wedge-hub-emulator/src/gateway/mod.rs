//! The front door of the emulated services: a TLS listener that reads each client's MQTT
//! CONNECT, checks its credential as the service would (a SAS token signed with the device's
//! key, or the TLS client certificate's CN), and then either refuses it with a CONNACK, as IoT
//! Hub and DPS do, or connects it to the real Mosquitto with a broker user of the gateway's and
//! pipes the rest of the connection through unread.
//!
//! Mosquitto's password file can only compare a password with a fixed string, and a device
//! that signs its own tokens (a DPS-provisioned device always does) makes a new one with a new
//! expiry at every connect; hence a gateway in front. Client certificates are verified against
//! the broker's per-run CA; one is optional, so SAS and X.509 clients share the endpoint.

pub(crate) mod connect;

use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::Broker;
use crate::tls::client_tls_config;
pub(crate) use connect::{Connect, NOT_AUTHORIZED};

/// What a client presented.
pub(crate) struct Login<'a> {
    pub(crate) connect: &'a Connect,
    /// The common name of the client certificate, verified against the per-run CA.
    pub(crate) certificate_cn: Option<String>,
}

/// The gateway's decision about one connection.
pub(crate) enum Verdict {
    /// Connect to the broker as `user` with `password`; `guard` is dropped when the connection
    /// ends (what the service keeps about live connections).
    Accept {
        user: String,
        password: String,
        guard: Option<Box<dyn Send>>,
    },
    /// Refuse with this CONNACK return code.
    Refuse(u8),
}

/// Decides about each connection.
pub(crate) type Authenticate = Arc<dyn Fn(&Login<'_>) -> Verdict + Send + Sync>;

/// A running gateway; stops accepting when dropped.
pub(crate) struct Gateway {
    port: u16,
    task: JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    /// Listens on a free loopback port in front of `broker` (which must speak TLS without
    /// requiring client certificates: the gateway checks those itself).
    pub(crate) async fn start(broker: &Broker, authenticate: Authenticate) -> Result<Gateway> {
        if !broker.tls() || broker.requires_client_certificates() {
            bail!("the gateway needs a TLS broker that does not require client certificates");
        }
        let ca_pem = broker.ca_pem();
        let acceptor = TlsAcceptor::from(Arc::new(server_config(broker, &ca_pem)?));
        let connector = TlsConnector::from(Arc::new(client_tls_config(&ca_pem)?));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let broker_port = broker.port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, connector, authenticate) =
                    (acceptor.clone(), connector.clone(), authenticate.clone());
                tokio::spawn(async move {
                    if let Err(e) =
                        serve(stream, acceptor, connector, broker_port, authenticate).await
                    {
                        tracing::debug!("gateway connection: {e:#}");
                    }
                });
            }
        });
        Ok(Gateway { port, task })
    }

    /// The loopback port devices connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

async fn serve(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    broker_port: u16,
    authenticate: Authenticate,
) -> Result<()> {
    let mut device = acceptor.accept(stream).await.context("TLS handshake")?;
    let certificate_cn = device
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| common_name(leaf));
    let connect = connect::read(&mut device).await?;
    let verdict = authenticate(&Login {
        connect: &connect,
        certificate_cn,
    });
    let (user, password, _guard) = match verdict {
        Verdict::Accept {
            user,
            password,
            guard,
        } => (user, password, guard),
        Verdict::Refuse(code) => {
            device.write_all(&connect::connack(code)).await?;
            device.shutdown().await?;
            return Ok(());
        }
    };
    let tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, broker_port)).await?;
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let mut upstream = connector.connect(name, tcp).await?;
    upstream
        .write_all(&connect.encode_as(&user, &password))
        .await?;
    // Ends when either side closes; the guard goes with it.
    let _ = tokio::io::copy_bidirectional(&mut device, &mut upstream).await;
    Ok(())
}

/// The broker's server certificate, and client certificates optional but verified against the
/// per-run CA when given.
fn server_config(broker: &Broker, ca_pem: &str) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let (cert, key) = broker.server_pem_paths();
    let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key)?;
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?)
}

/// The subject's common name of a DER certificate.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
