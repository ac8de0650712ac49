//! `wasi:sockets` reaches only what a module's `connect` and `listen` grant: a module without
//! grants can neither connect, listen, bind nor resolve (TCP and UDP, IPv4 and IPv6 loopback),
//! and a grant for one port opens no other. Real sockets on loopback, the real `net-probe`
//! guest going through Rust's `std::net`.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::process::Command;

use serde_json::{Value, json};
use support::{Deployment, Host, WEDGE, module, run_refused};
use wedge_test_artifacts::NET_PROBE;

/// A TCP server answering `pong` to each line, counting the connections it accepted.
struct TcpPong {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl TcpPong {
    fn start(ip: &str) -> TcpPong {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                        let _ = (&stream).write_all(b"pong\n");
                        line.clear();
                    }
                });
            }
        });
        TcpPong { addr, accepted }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A UDP socket answering `pong` to each datagram, counting what it received.
struct UdpPong {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
}

impl UdpPong {
    fn start(ip: &str) -> UdpPong {
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        let addr = socket.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((_, from)) = socket.recv_from(&mut buf) {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = socket.send_to(b"pong", from);
            }
        });
        UdpPong { addr, received }
    }
}

fn probe(host: &Host, module: &str, op: &str, addr: &str) -> Value {
    host.call(module, "probe", &json!({"op": op, "addr": addr}))
}

#[track_caller]
fn assert_denied(answer: &Value, what: &str) {
    assert_eq!(answer["error"], "PermissionDenied", "{what}: {answer}");
}

/// A port nobody listens on right now.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_module_without_grants_can_neither_connect_listen_bind_nor_resolve() {
    let (tcp4, tcp6) = (TcpPong::start("127.0.0.1"), TcpPong::start("::1"));
    let (udp4, udp6) = (UdpPong::start("127.0.0.1"), UdpPong::start("::1"));
    let host = Host::start(&module("closed", NET_PROBE, ""));

    for (op, addr) in [
        ("tcp-connect", tcp4.addr.to_string()),
        ("tcp-connect", tcp6.addr.to_string()),
        ("tcp-listen", "127.0.0.1:0".into()),
        ("tcp-listen", "[::1]:0".into()),
        ("tcp-listen", format!("0.0.0.0:{}", closed_port())),
        ("udp-bind", "127.0.0.1:0".into()),
        ("udp-bind", "[::1]:0".into()),
        ("udp-send", udp4.addr.to_string()),
        ("udp-send", udp6.addr.to_string()),
        ("resolve", "localhost:80".into()),
    ] {
        assert_denied(&probe(&host, "closed", op, &addr), &format!("{op} {addr}"));
    }
    assert_eq!(
        (tcp4.accepted(), tcp6.accepted()),
        (0, 0),
        "no connection got through"
    );
    assert_eq!(
        (
            udp4.received.load(Ordering::SeqCst),
            udp6.received.load(Ordering::SeqCst)
        ),
        (0, 0),
        "no datagram got through"
    );

    let status = host.module_status("closed");
    assert_eq!(status["network-denied"], 10, "{status}");
    assert_eq!(
        status["state"], "running",
        "a refusal is an answer, not a failure"
    );
    let log = host.log();
    assert!(
        log.contains(
            "creating a tcp socket denied: not in the module's `connect` or `listen` grants"
        ),
        "{log}"
    );
}

#[test]
fn a_grant_opens_its_address_and_port_and_nothing_else() {
    let (granted4, other4) = (TcpPong::start("127.0.0.1"), TcpPong::start("127.0.0.1"));
    let (granted6, other6) = (TcpPong::start("::1"), TcpPong::start("::1"));
    let (udp_granted, udp_other) = (UdpPong::start("127.0.0.1"), UdpPong::start("127.0.0.1"));
    let listen = closed_port();
    let toml = module(
        "probe",
        NET_PROBE,
        &format!(
            "connect = [\"tcp://{}\", \"tcp://{}\", \"udp://{}\"]\nlisten = [\"tcp://127.0.0.1:{listen}\"]",
            granted4.addr, granted6.addr, udp_granted.addr
        ),
    );
    let host = Host::start(&toml);
    let call = |op: &str, addr: &str| probe(&host, "probe", op, addr);

    assert_eq!(
        call("tcp-connect", &granted4.addr.to_string())["ok"],
        "pong"
    );
    assert_eq!(
        call("tcp-connect", &granted6.addr.to_string())["ok"],
        "pong"
    );
    assert_denied(
        &call("tcp-connect", &other4.addr.to_string()),
        "another IPv4 port",
    );
    assert_denied(
        &call("tcp-connect", &other6.addr.to_string()),
        "another IPv6 port",
    );
    assert_eq!((other4.accepted(), other6.accepted()), (0, 0));
    assert_eq!((granted4.accepted(), granted6.accepted()), (1, 1));

    assert_eq!(
        call("tcp-listen", &format!("127.0.0.1:{listen}"))["ok"],
        listen
    );
    assert_denied(
        &call("tcp-listen", &format!("127.0.0.1:{}", listen + 1)),
        "another port",
    );
    assert_denied(
        &call("tcp-listen", &format!("[::1]:{listen}")),
        "the IPv6 address",
    );
    assert_denied(&call("tcp-listen", "127.0.0.1:0"), "an ephemeral listener");

    assert_eq!(
        call("udp-send", &udp_granted.addr.to_string())["ok"],
        "pong"
    );
    assert_denied(
        &call("udp-send", &udp_other.addr.to_string()),
        "another UDP port",
    );
    assert_eq!(udp_other.received.load(Ordering::SeqCst), 0);
    assert_denied(
        &call("udp-bind", &format!("127.0.0.1:{listen}")),
        "UDP is not listen",
    );

    assert_denied(&call("resolve", "localhost:80"), "a name no grant holds");
}

#[test]
fn a_granted_host_name_resolves_and_connects_on_its_port_only() {
    let server = TcpPong::start("127.0.0.1");
    let other = TcpPong::start("127.0.0.1");
    let port = server.addr.port();
    let toml = module(
        "probe",
        NET_PROBE,
        &format!("connect = [\"tcp://LocalHost:{port}\"]"),
    );
    let host = Host::start(&toml);
    let call = |op: &str, addr: &str| probe(&host, "probe", op, addr);

    let resolved = call("resolve", &format!("localhost:{port}"));
    assert!(
        resolved["ok"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(format!("127.0.0.1:{port}")))),
        "{resolved}"
    );
    assert_eq!(
        call("tcp-connect", &format!("localhost:{port}"))["ok"],
        "pong"
    );
    assert_denied(
        &call("tcp-connect", &format!("localhost:{}", other.addr.port())),
        "the name's address on another port",
    );
    assert_denied(&call("resolve", "localhost.localdomain:80"), "another name");
    assert_eq!(other.accepted(), 0);
}

#[test]
fn two_modules_cannot_be_granted_the_same_listen_address() {
    let port = closed_port();
    let a = module(
        "a",
        NET_PROBE,
        &format!("listen = [\"tcp://0.0.0.0:{port}\"]"),
    );
    let b = module(
        "b",
        NET_PROBE,
        &format!("listen = [\"tcp://127.0.0.1:{port}\"]"),
    );
    let error = run_refused(&format!("{a}{b}"), &[]);
    assert!(
        error.contains(&format!(
            "modules.b.listen: `tcp://127.0.0.1:{port}` overlaps `tcp://0.0.0.0:{port}` in module a's `listen`"
        )),
        "{error}"
    );

    // The same from the cloud: refused whole, module a keeps its grant and keeps running.
    let host = Host::start(&a);
    for (module, needle) in [
        (
            json!({"source": NET_PROBE, "listen": [format!("tcp://127.0.0.1:{port}")]}),
            "modules.b.listen",
        ),
        (
            json!({"source": NET_PROBE, "http-listen": format!("127.0.0.1:{port}")}),
            "modules.b.http-listen",
        ),
        (
            json!({"source": NET_PROBE, "connect": ["tcp://10.0.0.5"]}),
            "modules.b.connect: `tcp://10.0.0.5`: a port is required",
        ),
    ] {
        let error = host
            .deploy(&json!({"modules": {"b": module}}))
            .expect_err("refused");
        assert!(error.contains(needle), "`{error}` should name `{needle}`");
    }
    let listened = probe(&host, "a", "tcp-listen", &format!("127.0.0.1:{port}"));
    assert_eq!(listened["ok"], port, "{listened}");
}

#[test]
fn a_port_below_1024_without_the_capability_is_refused_and_says_what_to_grant() {
    let deployment = Deployment::new(&module(
        "modbus",
        NET_PROBE,
        "listen = [\"tcp://127.0.0.1:502\"]",
    ));
    // The test may run as root: take the capability away from this one wedge. A wedge that
    // wrongly started is ended by `timeout`, and the test fails on its output.
    let out = Command::new("timeout")
        .args(["30", "setpriv"])
        .args([
            "--bounding-set=-net_bind_service",
            "--inh-caps=-net_bind_service",
        ])
        .arg(WEDGE)
        .arg("--data-dir")
        .arg(deployment.dir.path().join("data"))
        .arg("run")
        .arg(&deployment.path)
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for needle in [
        "modules.modbus.listen: `tcp://127.0.0.1:502`: port 502 is below 1024",
        "lacks CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ] {
        assert!(stderr.contains(needle), "`{stderr}` should say `{needle}`");
    }
}

#[test]
fn grants_come_and_go_with_the_cloud_deployment() {
    let server = TcpPong::start("127.0.0.1");
    let host = Host::start(&module("p", NET_PROBE, ""));
    let addr = server.addr.to_string();
    assert_denied(&probe(&host, "p", "tcp-connect", &addr), "before the grant");

    let granted =
        json!({"modules": {"p": {"source": NET_PROBE, "connect": [format!("tcp://{addr}")]}}});
    host.deploy(&granted).unwrap();
    assert_eq!(probe(&host, "p", "tcp-connect", &addr)["ok"], "pong");

    host.deploy(&json!({"modules": {"p": {"source": NET_PROBE, "connect": []}}}))
        .unwrap();
    assert_denied(
        &probe(&host, "p", "tcp-connect", &addr),
        "after the grant is taken away",
    );
    assert_eq!(server.accepted(), 1);
}

#[test]
fn a_module_holds_at_most_its_sockets_limit_created_or_accepted() {
    let server = TcpPong::start("127.0.0.1");
    let listen = closed_port();
    let toml = module(
        "p",
        NET_PROBE,
        &format!(
            "sockets = 4\nconnect = [\"tcp://{}\"]\nlisten = [\"tcp://127.0.0.1:{listen}\"]",
            server.addr
        ),
    );
    let host = Host::start(&toml);
    let call = |op: &str, addr: &str, n: u64| {
        host.call("p", "probe", &json!({"op": op, "addr": addr, "n": n}))
    };
    let addr = server.addr.to_string();

    // Connections: four, then the fifth is refused before anything reaches the server.
    let held = call("hold", &addr, 6);
    assert_eq!(held["held"], 4, "{held}");
    assert!(held["failed"]["message"].is_string(), "{held}");
    support::wait_for("the server to accept four", Duration::from_secs(10), || {
        (server.accepted() == 4).then_some(())
    });
    assert_eq!(host.module_status("p")["network-denied"], 1);
    // Closed ones make room again.
    assert_eq!(call("release", "", 0)["held"], 0);
    assert_eq!(call("hold", &addr, 2)["held"], 2);
    assert_eq!(call("release", "", 0)["held"], 0);

    // Accepted connections count too: the listener and three clients; the fourth client is
    // closed by the host at once, and the module keeps running.
    let local = format!("127.0.0.1:{listen}");
    assert_eq!(call("listen-keep", &local, 0)["ok"], true);
    let clients: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(&local).unwrap())
        .collect();
    let accepted = call("accept", &local, 4);
    assert_eq!(accepted["held"], 3, "{accepted}");
    // The kernel queues connections in order: the last one is the one the host closed.
    let last = &clients[3];
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let read = (&*last).read(&mut [0u8; 1]);
    assert!(
        matches!(&read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the fourth client was not closed: {read:?}"
    );
    assert_eq!(host.module_status("p")["state"], "running");
}
