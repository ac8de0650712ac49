//! Http sources against a real loopback server (a few lines of tokio, so each test decides
//! exactly what the server does), and file sources.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wedge_source::{FetchErrorKind, FetchOptions, Source, fetch, sha256_hex};

/// What the test server does with each connection.
#[derive(Clone)]
enum Behaviour {
    /// 200 with this body and its Content-Length.
    Serve(Vec<u8>),
    /// 200 without Content-Length, then up to this many bytes until the client goes away.
    Stream(u64),
    /// Answers with this status line and no body.
    Status(&'static str),
    /// 302 to this path on the same server.
    Redirect(&'static str),
    /// Reads the request and never answers.
    Silent,
}

struct Server {
    addr: std::net::SocketAddr,
    /// Body bytes written so far (for `Stream`).
    sent: Arc<AtomicU64>,
    /// Connections accepted so far.
    accepted: Arc<AtomicU64>,
}

impl Server {
    /// Serves `routes` (path, behaviour); any other path is 404.
    async fn start(routes: Vec<(&'static str, Behaviour)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let accepted = Arc::new(AtomicU64::new(0));
        let connections = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::Relaxed);
                let routes = routes.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &routes, &counter).await;
                });
            }
        });
        Server {
            addr,
            sent,
            accepted,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn serve(
    mut stream: TcpStream,
    routes: &[(&'static str, Behaviour)],
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("/");
    let behaviour = routes
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, b)| b.clone())
        .unwrap_or(Behaviour::Status("404 Not Found"));
    match behaviour {
        Behaviour::Serve(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
        }
        Behaviour::Stream(total) => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                .await?;
            let chunk = vec![0xA5u8; 64 * 1024];
            while sent.load(Ordering::Relaxed) < total {
                stream.write_all(&chunk).await?;
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
        Behaviour::Status(status) => {
            let head =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
        }
        Behaviour::Redirect(to) => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await?;
        }
        Behaviour::Silent => {
            // Holds the connection open; ends when the client gives up and closes it.
            let mut rest = [0u8; 64];
            while stream.read(&mut rest).await? > 0 {}
        }
    }
    stream.shutdown().await
}

fn module() -> Vec<u8> {
    // Any bytes: the fetcher does not parse wasm.
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend((0..10_000u32).map(|i| (i % 251) as u8));
    bytes
}

fn source(url: &str) -> Source {
    Source::parse(url, None).unwrap()
}

#[tokio::test]
async fn http_with_the_right_sha256() {
    let body = module();
    let server = Server::start(vec![("/m.wasm", Behaviour::Serve(body.clone()))]).await;
    let sha = sha256_hex(&body);
    let fetched = fetch(
        &source(&server.url("/m.wasm")),
        Some(&sha),
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(fetched.bytes, body);
    assert_eq!(fetched.sha256, sha);
    // "sha256:" prefix and upper case are accepted too.
    let prefixed = format!("sha256:{}", sha.to_uppercase());
    let fetched = fetch(
        &source(&server.url("/m.wasm")),
        Some(&prefixed),
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(fetched.sha256, sha);
}

#[tokio::test]
async fn http_with_a_wrong_sha256_is_refused_naming_both() {
    let body = module();
    let server = Server::start(vec![("/m.wasm", Behaviour::Serve(body.clone()))]).await;
    let wrong = sha256_hex(b"something else");
    let url = server.url("/m.wasm");
    let err = fetch(&source(&url), Some(&wrong), &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::Sha256Mismatch { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{url}: sha256 mismatch: expected {wrong}, got {}",
            sha256_hex(&body)
        )
    );
}

#[tokio::test]
async fn http_without_sha256_is_refused_before_any_request() {
    let server = Server::start(vec![("/m.wasm", Behaviour::Stream(u64::MAX))]).await;
    let url = server.url("/m.wasm");
    let err = fetch(&source(&url), None, &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err.kind, FetchErrorKind::Sha256Required), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{url}: a sha256 is required for an http(s) source")
    );
    assert_eq!(server.accepted.load(Ordering::Relaxed), 0);

    let err = fetch(&source(&url), Some("not-a-sha"), &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::InvalidSha256(_)),
        "{err}"
    );
}

#[tokio::test]
async fn http_over_max_bytes_by_content_length_is_refused() {
    let body = module();
    let server = Server::start(vec![("/m.wasm", Behaviour::Serve(body.clone()))]).await;
    let url = server.url("/m.wasm");
    let options = FetchOptions {
        max_bytes: body.len() as u64 - 1,
        ..FetchOptions::default()
    };
    let err = fetch(&source(&url), Some(&sha256_hex(&body)), &options)
        .await
        .unwrap_err();
    assert!(matches!(err.kind, FetchErrorKind::TooLarge { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{url}: larger than {} bytes", body.len() - 1)
    );

    // Exactly the cap is fine.
    let options = FetchOptions {
        max_bytes: body.len() as u64,
        ..FetchOptions::default()
    };
    fetch(&source(&url), Some(&sha256_hex(&body)), &options)
        .await
        .unwrap();
}

#[tokio::test]
async fn http_streamed_over_max_bytes_is_stopped() {
    // No Content-Length: the server would send 1 GiB; the client must stop at the cap.
    let total = 1 << 30;
    let server = Server::start(vec![("/big.wasm", Behaviour::Stream(total))]).await;
    let options = FetchOptions {
        max_bytes: 100_000,
        ..FetchOptions::default()
    };
    let err = fetch(
        &source(&server.url("/big.wasm")),
        Some(&sha256_hex(b"")),
        &options,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::TooLarge { max: 100_000 }),
        "{err}"
    );
    // The client closed the connection: the server's writes fail long before 1 GiB (what it
    // got out is the cap plus the socket buffers).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = server.sent.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = server.sent.load(Ordering::Relaxed);
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    assert!(last < total / 4, "the server sent {last} bytes");
}

#[tokio::test]
async fn http_unreachable_port_is_refused() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/m.wasm");
    let err = fetch(
        &source(&url),
        Some(&sha256_hex(b"")),
        &FetchOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.kind, FetchErrorKind::Unreachable(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{url}: unreachable: connection refused")
    );
}

#[tokio::test]
async fn http_server_that_never_answers_times_out() {
    let server = Server::start(vec![("/m.wasm", Behaviour::Silent)]).await;
    let url = server.url("/m.wasm");
    let options = FetchOptions {
        timeout: Duration::from_millis(500),
        ..FetchOptions::default()
    };
    let started = Instant::now();
    let err = fetch(&source(&url), Some(&sha256_hex(b"")), &options)
        .await
        .unwrap_err();
    assert!(matches!(err.kind, FetchErrorKind::TimedOut(_)), "{err}");
    assert_eq!(err.to_string(), format!("{url}: timed out after 500ms"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn http_error_status_is_refused() {
    let server = Server::start(vec![]).await;
    let url = server.url("/missing.wasm");
    let err = fetch(
        &source(&url),
        Some(&sha256_hex(b"")),
        &FetchOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), format!("{url}: HTTP status 404 Not Found"));
}

#[tokio::test]
async fn http_redirects_are_followed_and_bounded() {
    let body = module();
    let server = Server::start(vec![
        ("/old.wasm", Behaviour::Redirect("/m.wasm")),
        ("/m.wasm", Behaviour::Serve(body.clone())),
        ("/loop", Behaviour::Redirect("/loop")),
    ])
    .await;
    let sha = sha256_hex(&body);
    let fetched = fetch(
        &source(&server.url("/old.wasm")),
        Some(&sha),
        &FetchOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(fetched.bytes, body);

    let url = server.url("/loop");
    let err = fetch(&source(&url), Some(&sha), &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err.kind, FetchErrorKind::Transfer(_)), "{err}");
    assert!(err.to_string().contains("more than 10 redirects"), "{err}");
}

#[tokio::test]
async fn http_source_built_directly_still_obeys_the_plain_http_rule() {
    let source = Source::Http("http://example.com/m.wasm".into());
    let err = fetch(&source, Some(&sha256_hex(b"")), &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::InvalidSource(_)),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("http://example.com/m.wasm: plain http is allowed only"),
        "{err}"
    );
}

#[tokio::test]
async fn extra_root_pem_must_hold_a_certificate() {
    let server = Server::start(vec![]).await;
    let options = FetchOptions {
        extra_root_pem: vec![b"not a pem".to_vec()],
        ..FetchOptions::default()
    };
    let err = fetch(
        &source(&server.url("/m.wasm")),
        Some(&sha256_hex(b"")),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err.kind, FetchErrorKind::Tls(_)), "{err}");
    assert!(
        err.to_string().contains("extra root certificate #1"),
        "{err}"
    );
}

#[tokio::test]
async fn file_sources() {
    let dir = tempfile::tempdir().unwrap();
    let body = module();
    std::fs::write(dir.path().join("m.wasm"), &body).unwrap();

    let source = Source::parse("m.wasm", Some(dir.path())).unwrap();
    let fetched = fetch(&source, None, &FetchOptions::default())
        .await
        .unwrap();
    assert_eq!(fetched.bytes, body);
    assert_eq!(fetched.sha256, sha256_hex(&body));
    fetch(&source, Some(&sha256_hex(&body)), &FetchOptions::default())
        .await
        .unwrap();

    let wrong = sha256_hex(b"x");
    let err = fetch(&source, Some(&wrong), &FetchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::Sha256Mismatch { .. }),
        "{err}"
    );

    let small = FetchOptions {
        max_bytes: 100,
        ..FetchOptions::default()
    };
    let err = fetch(&source, None, &small).await.unwrap_err();
    let path = dir.path().join("m.wasm");
    assert_eq!(
        err.to_string(),
        format!("{}: larger than 100 bytes", path.display())
    );

    let missing = dir.path().join("x.wasm");
    let err = fetch(
        &Source::File(missing.clone()),
        None,
        &FetchOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: cannot read: No such file or directory",
            missing.display()
        )
    );
}
