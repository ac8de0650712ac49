//! Https sources against a real loopback TLS server with a self-signed certificate: trusted
//! only through `FetchOptions::extra_root_pem`.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};
use wedge_source::{FetchErrorKind, FetchOptions, Source, fetch, sha256_hex};

/// Serves `body` over https on 127.0.0.1 (certificate for 127.0.0.1 and localhost); returns
/// the port and the certificate's PEM.
async fn start_https(body: Vec<u8>) -> (u16, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                // A client that distrusts the certificate ends the handshake: that is fine.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, pem)
}

#[tokio::test]
async fn https_with_an_extra_root_certificate() {
    let body = b"\0asm\x0d\0\x01\0 over tls".to_vec();
    let (port, pem) = start_https(body.clone()).await;
    let sha = sha256_hex(&body);
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{port}/m.wasm");
        let source = Source::parse(&url, None).unwrap();

        // Public CAs only: the self-signed certificate is refused.
        let err = fetch(&source, Some(&sha), &FetchOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err.kind, FetchErrorKind::Unreachable(_)), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{url}: unreachable: TLS: invalid peer certificate: UnknownIssuer")
        );

        let options = FetchOptions {
            extra_root_pem: vec![pem.clone().into_bytes()],
            ..FetchOptions::default()
        };
        let fetched = fetch(&source, Some(&sha), &options).await.unwrap();
        assert_eq!(fetched.bytes, body);
    }
}
