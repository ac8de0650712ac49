//! The HTTP trigger end to end: the `webhook` example module turns POSTed JSON into telemetry
//! at the local hub, and the host's limits (body size, concurrency, timeout) and failures (a
//! trap, an address in use, a component without the handler) show as they should, with the
//! `http-probe` test guest where the webhook cannot misbehave on purpose. Real HTTP/1.1 over
//! loopback TCP, written by hand so that each byte on the wire is the test's.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Host, free_port, module, run_refused, wait_for};
use wedge_test_artifacts::{ECHO, HTTP_BOTH, HTTP_PROBE, WEBHOOK};

/// One answer: status and what followed the head.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a new
/// connection, `Connection: close`, and reads the answer to its end.
fn exchange(port: u16, head: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!("{head}\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The host may answer (413) and close before it reads a body it refused.
    let _ = stream.write_all(body);
    read_answer(&mut stream)
}

fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut bytes = Vec::new();
    if let Err(e) = stream.read_to_end(&mut bytes) {
        assert!(!bytes.is_empty(), "no answer: {e}");
    }
    let text = String::from_utf8_lossy(&bytes).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Answer { status, body }
}

/// The data of a chunked body (what a guest streaming its answer sends).
fn dechunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        data.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    data
}

fn request(port: u16, method: &str, path: &str, body: &str) -> Answer {
    let head = format!("{method} {path} HTTP/1.1\r\nContent-Length: {}", body.len());
    exchange(port, &head, body.as_bytes())
}

fn post(port: u16, path: &str, body: &str) -> Answer {
    request(port, "POST", path, body)
}

/// Waits until something accepts connections on `port`.
fn wait_listening(port: u16) {
    wait_for(
        &format!("a listener on port {port}"),
        Duration::from_secs(30),
        || TcpStream::connect(("127.0.0.1", port)).ok(),
    );
}

/// The webhook on `port` with `limits` (TOML lines), its events going to the hub.
fn webhook(port: u16, limits: &str) -> String {
    format!(
        "{}\n[routes]\nevents = {{ from = \"webhook/events\", to = \"$upstream\" }}\n",
        module(
            "webhook",
            WEBHOOK,
            &format!("http-listen = \"127.0.0.1:{port}\"\n{limits}")
        )
    )
}

/// The probe on `port` with `limits`.
fn probe(port: u16, limits: &str) -> String {
    module(
        "probe",
        HTTP_PROBE,
        &format!("http-listen = \"127.0.0.1:{port}\"\n{limits}"),
    )
}

#[test]
fn posted_json_becomes_telemetry_and_other_requests_are_refused() {
    let (port, metrics) = (free_port(), free_port());
    let host = Host::start(&format!(
        "{}{}",
        support::metrics::metrics_table(metrics, 60),
        webhook(port, "")
    ));
    wait_listening(port);

    let answer = post(port, "/doors/3", r#"{"door":"open","at":12}"#);
    assert_eq!(answer.status, 202, "{answer:?}");
    let record = wait_for("the event at the hub", Duration::from_secs(10), || {
        host.telemetry().into_iter().next()
    });
    assert_eq!(record["module"], "webhook");
    assert_eq!(record["output"], "events");
    assert_eq!(record["content-type"], "application/json");
    assert_eq!(record["properties"]["path"], "/doors/3");
    assert_eq!(support::body(&record)["door"], "open");

    let answer = post(port, "/doors/3", "door open");
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("not JSON"), "{answer:?}");
    let answer = request(port, "GET", "/doors/3", "");
    assert_eq!(answer.status, 405, "{answer:?}");
    assert_eq!(host.telemetry().len(), 1, "refused requests sent nothing");

    let http = host.module_status("webhook")["http"].clone();
    assert_eq!(
        (http["ok"].as_u64(), http["other"].as_u64()),
        (Some(1), Some(2)),
        "{http}"
    );
    assert_eq!(host.module_status("webhook")["state"], "running");
    let table = String::from_utf8(host.cli(&["status"]).stdout).unwrap();
    assert!(
        table.contains("http webhook: 0 in flight; answered 2xx 1, 5xx 0, other 2"),
        "{table}"
    );
    let scrape = support::metrics::Scrape::take(metrics);
    for (outcome, n) in [("ok", 1.0), ("other", 2.0), ("too_large", 0.0)] {
        let sample = format!(
            "wedge_module_http_requests_total{{module_name=\"webhook\",outcome=\"{outcome}\"}}"
        );
        assert_eq!(scrape.get(&sample), n, "{sample}");
    }
}

#[test]
fn an_oversize_body_gets_413_and_the_module_keeps_serving() {
    let port = free_port();
    let host = Host::start(&webhook(port, "http-body-kb = 1"));
    wait_listening(port);

    // Declared too large: refused from the head alone, before a byte of the body is sent.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n"
    )
    .unwrap();
    let answer = read_answer(&mut stream);
    assert_eq!(answer.status, 413, "{answer:?}");

    // Chunked, so the size shows only as it arrives: counted, and refused at the limit.
    let chunk = format!("[{}]", "1,".repeat(1000) + "1");
    let chunked = format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    let answer = exchange(
        port,
        "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked",
        chunked.as_bytes(),
    );
    assert_eq!(answer.status, 413, "{answer:?}");

    // The module never saw either, and serves the next one.
    let answer = post(port, "/small", r#"{"ok":true}"#);
    assert_eq!(answer.status, 202, "{answer:?}");
    let records = wait_for("the small event", Duration::from_secs(10), || {
        let records = host.telemetry();
        (!records.is_empty()).then_some(records)
    });
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["properties"]["path"], "/small");
    let status = host.module_status("webhook");
    assert_eq!(status["http"]["too-large"], 2, "{status}");
    assert_eq!(status["state"], "running", "{status}");
}

#[test]
fn requests_over_the_concurrency_limit_get_503_at_once() {
    let port = free_port();
    let host = Host::start(&probe(port, "http-concurrency = 2"));
    wait_listening(port);

    let sleepers: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || request(port, "GET", "/sleep/3000", "")))
        .collect();
    wait_for("two requests in flight", Duration::from_secs(10), || {
        (host.module_status("probe")["http"]["in-flight"] == 2).then_some(())
    });
    let started = Instant::now();
    let answer = request(port, "GET", "/", "");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("http-concurrency"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not after a slot freed: {:?}",
        started.elapsed()
    );
    for sleeper in sleepers {
        assert_eq!(sleeper.join().unwrap().status, 200);
    }
    assert_eq!(request(port, "GET", "/", "").status, 200);
    let http = host.module_status("probe")["http"].clone();
    assert_eq!(
        (http["busy"].as_u64(), http["ok"].as_u64()),
        (Some(1), Some(3)),
        "{http}"
    );
}

#[test]
fn a_handler_that_spins_gets_504_within_the_timeout_and_a_trap_500_and_the_next_works() {
    let port = free_port();
    let host = Host::start(&probe(port, "http-timeout-ms = 300"));
    wait_listening(port);

    let started = Instant::now();
    let answer = request(port, "GET", "/spin", "");
    assert_eq!(answer.status, 504, "{answer:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Its instance is dropped: nothing is left in flight, and the next request is served.
    wait_for("the spinning instance gone", Duration::from_secs(5), || {
        (host.module_status("probe")["http"]["in-flight"] == 0).then_some(())
    });
    assert_eq!(request(port, "GET", "/", "").status, 200);

    let answer = request(port, "GET", "/trap", "");
    assert_eq!(answer.status, 500, "{answer:?}");
    assert_eq!(
        request(port, "POST", "/", "12345").body.trim_end(),
        "read 5 bytes"
    );

    let status = host.module_status("probe");
    let http = &status["http"];
    assert_eq!(
        (http["timed-out"].as_u64(), http["failed"].as_u64()),
        (Some(1), Some(1)),
        "{status}"
    );
    assert!(
        status["last-error"]
            .as_str()
            .unwrap()
            .contains("asked to trap"),
        "the trap is named: {status}"
    );
    assert_eq!(status["state"], "running", "{status}");

    // Clients decide how often a handler traps: the host's log does not grow with them.
    for _ in 0..20 {
        assert_eq!(request(port, "GET", "/trap", "").status, 500);
    }
    let logged = host.log().matches("HTTP request trapped").count();
    assert!((1..=5).contains(&logged), "{logged} traps logged of 21");
    assert_eq!(host.module_status("probe")["http"]["failed"], 21);
}

#[test]
fn an_address_in_use_is_the_modules_clear_error_and_a_shared_one_is_refused() {
    // Another program holds the port: the module fails, saying why; the host runs on.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port();
    let host = Host::start(&probe(busy, ""));
    let status = wait_for("probe failed", Duration::from_secs(10), || {
        let status = host.module_status("probe");
        (status["state"] == "failed").then_some(status)
    });
    let error = status["last-error"].as_str().unwrap();
    assert!(
        error.contains(&format!("http-listen 127.0.0.1:{busy}: cannot listen"))
            && error.contains("in use"),
        "{status}"
    );

    // Two modules given one address: the deployment is refused before either starts.
    let shared = free_port();
    let listen = format!("http-listen = \"127.0.0.1:{shared}\"");
    let error = support::run_refused(
        &format!(
            "{}{}",
            module("a", HTTP_PROBE, &listen),
            module("b", HTTP_PROBE, &listen)
        ),
        &[],
    );
    assert!(
        error.contains(&format!(
            "modules.b.http-listen: `tcp://127.0.0.1:{shared}` overlaps `tcp://127.0.0.1:{shared}` in module a's `http-listen`"
        )),
        "{error}"
    );
}

#[test]
fn a_full_destination_gets_503_and_nothing_is_sent() {
    // The events go to a stopped module's inbox of one, which refuses when full.
    let port = free_port();
    let toml = format!(
        "{}{}\n[routes]\nevents = {{ from = \"webhook/events\", to = \"echo/in\", when-full = \"reject\" }}\n",
        module(
            "webhook",
            WEBHOOK,
            &format!("http-listen = \"127.0.0.1:{port}\"")
        ),
        module("echo", ECHO, "inbox = 1"),
    );
    let host = Host::start(&toml);
    deploy(
        &host,
        &serde_json::json!({"modules": {"echo": {"status": "stopped"}}}),
    );
    wait_for("echo stopped", Duration::from_secs(10), || {
        (host.module_status("echo")["state"] == "stopped").then_some(())
    });
    wait_listening(port);
    assert_eq!(post(port, "/a", "1").status, 202);
    let answer = post(port, "/b", "2");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.body.contains("full"), "{answer:?}");
    assert_eq!(host.module_status("echo")["queued"], 1);
}

#[test]
fn a_component_with_both_exports_is_a_module_and_a_handler_sharing_its_state() {
    let port = free_port();
    let host = Host::start(&module(
        "both",
        HTTP_BOTH,
        &format!("http-listen = \"127.0.0.1:{port}\""),
    ));
    wait_listening(port);
    for n in 1..=3 {
        let answer = request(port, "GET", "/", "");
        assert_eq!(
            (answer.status, answer.body.trim()),
            (200, n.to_string().as_str())
        );
    }
    // The module's own instance (its `init` ran, its methods answer) sees what they stored.
    assert_eq!(host.call("both", "hits", &serde_json::json!({}))["hits"], 3);
}

/// Runs `wedge deploy` on `deployment` (a desired document merged over the file's).
fn deploy(host: &Host, deployment: &serde_json::Value) {
    let file = host.deployment.dir.path().join("deployment.json");
    std::fs::write(&file, deployment.to_string()).unwrap();
    let out = host.cli(&["deploy", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// POSTs a small JSON body on the open connection `stream`, keeping it open; the status.
fn keep_alive_post(stream: &mut TcpStream, port: u16) -> u16 {
    write!(
        stream,
        "POST /kept HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    .unwrap();
    // Read one answer: its head, then a body of Content-Length bytes or chunks up to the last.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let head = head.to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse::<usize>().ok());
            let done = match length {
                Some(length) => body.len() >= length,
                None => body.ends_with("0\r\n\r\n"),
            };
            if done {
                return head.split(' ').nth(1).unwrap().parse().unwrap();
            }
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed: {text:?}");
        bytes.extend_from_slice(&buf[..n]);
    }
}

fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn the_trigger_moves_stops_and_starts_with_the_deployment() {
    let (first, second) = (free_port(), free_port());
    let host = Host::start(&webhook(first, ""));
    wait_listening(first);
    assert_eq!(post(first, "/a", "1").status, 202);

    // A new address: the old one is let go, the new one served, with the same telemetry.
    let moved =
        serde_json::json!({"modules": {"webhook": {"http-listen": format!("127.0.0.1:{second}")}}});
    deploy(&host, &moved);
    wait_listening(second);
    wait_for("the first address let go", Duration::from_secs(10), || {
        refused(first).then_some(())
    });
    assert_eq!(post(second, "/b", "2").status, 202);
    wait_for("both events at the hub", Duration::from_secs(10), || {
        (host.telemetry().len() == 2).then_some(())
    });

    // Another setting (read by each request afresh) keeps the trigger and its connections.
    let mut kept = TcpStream::connect(("127.0.0.1", second)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(keep_alive_post(&mut kept, second), 202);
    let starts = host.module_status("webhook")["starts"].clone();
    deploy(
        &host,
        &serde_json::json!({"modules": {"webhook": {"limits": {"memory-mb": 32}}}}),
    );
    wait_for("the module updated", Duration::from_secs(10), || {
        (host.module_status("webhook")["starts"] != starts).then_some(())
    });
    assert_eq!(
        keep_alive_post(&mut kept, second),
        202,
        "the same connection"
    );

    // Stopped: nothing listens. Running again: served again.
    deploy(
        &host,
        &serde_json::json!({"modules": {"webhook": {"status": "stopped"}}}),
    );
    wait_for("the address let go", Duration::from_secs(10), || {
        refused(second).then_some(())
    });
    assert_eq!(host.module_status("webhook")["state"], "stopped");
    deploy(
        &host,
        &serde_json::json!({"modules": {"webhook": {"status": "running"}}}),
    );
    wait_listening(second);
    assert_eq!(post(second, "/c", "3").status, 202);
}

#[test]
fn http_listen_needs_a_component_with_the_handler_and_a_handler_needs_http_listen() {
    let port = free_port();
    let error = run_refused(
        &module("echo", ECHO, &format!("http-listen = \"127.0.0.1:{port}\"")),
        &[],
    );
    assert!(
        error.contains("modules.echo")
            && error.contains("`http-listen` is set")
            && error.contains("wasi:http/incoming-handler"),
        "{error}"
    );

    let error = run_refused(&module("probe", HTTP_PROBE, ""), &[]);
    assert!(
        error.contains("modules.probe") && error.contains("set `http-listen`"),
        "{error}"
    );
}
