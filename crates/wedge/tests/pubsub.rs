//! The `pubsub-server` example module end to end, over real loopback TCP: three clients
//! publish and subscribe and every publication reaches each other subscriber and the hub
//! exactly once; a client sending garbage, invalid UTF-8 or a 100 MB line is cut off while the
//! others carry on; a thousand idle connections leave the host's CPU near idle (measured).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;
use support::process::cpu_time;
use support::{Host, free_port, module, wait_for};
use wedge_test_artifacts::PUBSUB_SERVER;

const TIMEOUT: Duration = Duration::from_secs(30);
const TOPIC: &str = "plant/line1";

/// A host running `pubsub` on a free loopback port (granted), its publications to the hub;
/// `extra` is added to its config. Returns once the server accepts connections.
fn start(extra: &str, shell: &str) -> (Host, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let host = Host::start_with(
        &format!(
            "{}
[routes]
messages = {{ from = \"pubsub/messages\", to = \"$upstream\" }}
",
            module(
                "pubsub",
                PUBSUB_SERVER,
                &format!("listen = [\"tcp://{addr}\"]\nconfig = {{ listen = \"{addr}\"{extra} }}"),
            )
        ),
        None,
        shell,
    );
    wait_for("the server to listen", TIMEOUT, || {
        TcpStream::connect(&addr).ok()
    });
    (host, addr)
}

/// A line-protocol client.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// The next line, without its newline; `None` at the end of the stream.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).unwrap() {
            0 => None,
            _ => Some(line.trim_end_matches('\n').to_string()),
        }
    }

    fn subscribe(&mut self, topic: &str) {
        self.send(&format!("SUB {topic}"));
        assert_eq!(self.line().as_deref(), Some("OK"));
    }

    /// Sends `PING` and returns the lines that came before its `PONG`.
    fn ping(&mut self) -> Vec<String> {
        self.send("PING");
        let mut before = Vec::new();
        loop {
            match self.line().expect("the connection stays open") {
                pong if pong == "PONG" => return before,
                line => before.push(line),
            }
        }
    }
}

fn publications(host: &Host) -> Vec<(String, String)> {
    host.telemetry()
        .iter()
        .filter(|r| r["output"] == "messages")
        .map(|r| {
            let body = r["body"].as_str().unwrap().to_string();
            (body, r["properties"]["topic"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The publications in the hub once there are at least `n` (the local hub writes them out a
/// moment after they are stored).
fn wait_publications(host: &Host, n: usize) -> Vec<(String, String)> {
    wait_for(&format!("{n} publications in the hub"), TIMEOUT, || {
        let stored = publications(host);
        (stored.len() >= n).then_some(stored)
    })
}

#[test]
fn three_clients_get_every_other_clients_publication_once_and_so_does_the_hub() {
    let (host, addr) = start("", "");
    const EACH: usize = 25;
    let names: [&'static str; 3] = ["a", "b", "c"];
    let subscribed = Arc::new(Barrier::new(names.len()));
    let published = Arc::new(Barrier::new(names.len()));
    let clients: Vec<_> = names
        .into_iter()
        .map(|name| {
            let (addr, subscribed, published) =
                (addr.clone(), subscribed.clone(), published.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(&addr);
                client.subscribe(TOPIC);
                subscribed.wait();
                for i in 0..EACH {
                    client.send(&format!("PUB {TOPIC} {name}-{i} with spaces"));
                }
                // Its PONG: the server has handled all its publications (and queued them for
                // the others); once everyone has one, a second PONG follows every delivery.
                let mut got = client.ping();
                published.wait();
                got.extend(client.ping());
                got
            })
        })
        .collect();
    let received: Vec<Vec<String>> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    for (name, got) in names.iter().zip(&received) {
        let mut expected: Vec<String> = names
            .iter()
            .filter(|other| *other != name)
            .flat_map(|other| {
                (0..EACH).map(move |i| format!("MSG {TOPIC} {other}-{i} with spaces"))
            })
            .collect();
        let mut got = got.clone();
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "client {name}");
    }

    // The hub has each publication once, with its topic.
    let mut stored = wait_publications(&host, names.len() * EACH);
    stored.sort();
    let mut expected: Vec<(String, String)> = names
        .iter()
        .flat_map(|name| {
            (0..EACH).map(move |i| (format!("{name}-{i} with spaces"), TOPIC.to_string()))
        })
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
}

#[test]
fn thousands_of_publications_in_one_write_all_reach_the_hub() {
    // More in one read than the host takes in one `send-batch` (1024).
    let (host, addr) = start("", "");
    let mut publisher = Client::connect(&addr);
    let lines: String = (0..3000).map(|i| format!("PUB t {i}\n")).collect();
    publisher.writer.write_all(lines.as_bytes()).unwrap();
    assert!(publisher.ping().is_empty());
    let stored = wait_publications(&host, 3000);
    let expected: Vec<(String, String)> = (0..3000).map(|i| (i.to_string(), "t".into())).collect();
    assert_eq!(stored.len(), expected.len());
    assert!(stored == expected, "every publication once, in order");
}

#[test]
fn a_client_breaking_the_protocol_is_cut_off_and_the_others_carry_on() {
    let (host, addr) = start(", max-line = 4096", "");
    let mut subscriber = Client::connect(&addr);
    subscriber.subscribe(TOPIC);
    let mut publisher = Client::connect(&addr);

    // Garbage, and a publication that is not UTF-8: an `ERR` line, then the end.
    for (garbage, why) in [
        (&b"HELLO there\n"[..], "ERR unknown command `HELLO`"),
        (b"PUB plant/line1 \xff\xfe\n", "ERR the line is not UTF-8"),
    ] {
        let mut bad = Client::connect(&addr);
        bad.writer.write_all(garbage).unwrap();
        let answer = bad.line().unwrap();
        assert!(answer.starts_with(why), "{answer}");
        assert_eq!(bad.line(), None, "disconnected after {answer}");
    }

    // A 100 MB line: cut off long before it is sent, its connection reset.
    let big = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream
                .write_all(format!("PUB {TOPIC} ").as_bytes())
                .unwrap();
            let chunk = vec![b'x'; 1 << 20];
            let mut sent = 0usize;
            for _ in 0..100 {
                if stream.write_all(&chunk).is_err() {
                    return sent;
                }
                sent += chunk.len();
            }
            panic!("the server took a 100 MB line");
        }
    });
    let sent = big.join().unwrap();
    assert!(sent < 50 << 20, "{sent} bytes went in before the cut");

    // The others never noticed: a publication goes through, and nothing of the bad ones did.
    publisher.send(&format!("PUB {TOPIC} still here"));
    assert!(publisher.ping().is_empty());
    assert_eq!(
        subscriber.ping(),
        [format!("MSG {TOPIC} still here")],
        "only the good publication"
    );
    assert_eq!(
        wait_publications(&host, 1),
        [("still here".to_string(), TOPIC.to_string())]
    );
    let status = host.module_status("pubsub");
    assert_eq!(
        (status["state"].as_str(), status["restarts"].as_u64()),
        (Some("running"), Some(0)),
        "{status}"
    );
}

/// The soft limit of open files of this process, raised to `at_least` when it is lower.
fn raise_nofile(at_least: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if soft < at_least {
        let status = std::process::Command::new("prlimit")
            .args(["--pid", &std::process::id().to_string()])
            .arg(format!("--nofile={at_least}:{at_least}"))
            .status()
            .unwrap();
        assert!(status.success(), "cannot raise RLIMIT_NOFILE to {at_least}");
    }
}

#[test]
fn a_thousand_idle_connections_leave_the_host_idle() {
    const IDLE: usize = 1000;
    raise_nofile(4096);
    let (host, addr) = start(
        ", max-clients = 1100",
        "[ \"$(ulimit -n)\" -ge 4096 ] || ulimit -n 4096",
    );
    let mut clients: Vec<Client> = (0..IDLE)
        .map(|i| {
            let mut client = Client::connect(&addr);
            client.subscribe(&format!("idle/{i}"));
            client
        })
        .collect();

    // A measurement window, with nothing to wait for: the server blocks in `poll`.
    let pid = host.pid();
    let (cpu, wall) = (cpu_time(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (cpu_time(pid) - cpu).as_secs_f64() / wall.elapsed().as_secs_f64();
    eprintln!(
        "host CPU {:.2}% of a core with {IDLE} idle connections",
        share * 100.0
    );
    assert!(
        share < 0.05,
        "host CPU {:.1}% of a core with {IDLE} idle connections",
        share * 100.0
    );

    // And it still serves all of them: one publication reaches the one subscriber of its topic.
    let mut publisher = Client::connect(&addr);
    publisher.send("PUB idle/737 wake up");
    assert!(publisher.ping().is_empty());
    assert_eq!(clients[737].ping(), ["MSG idle/737 wake up"]);
    assert_eq!(host.module_status("pubsub")["state"], json!("running"));
}

#[test]
fn clients_past_max_clients_are_refused_until_one_leaves() {
    let (_host, addr) = start(", max-clients = 2", "");
    let mut first = Client::connect(&addr);
    let mut second = Client::connect(&addr);
    assert!(first.ping().is_empty() && second.ping().is_empty());
    let mut third = Client::connect(&addr);
    assert_eq!(third.line().as_deref(), Some("ERR too many clients"));
    assert_eq!(third.line(), None);
    drop(first);
    let mut again = wait_for("a place once a client left", TIMEOUT, || {
        let mut client = Client::connect(&addr);
        client.send("PING");
        (client.line().as_deref() == Some("PONG")).then_some(client)
    });
    assert!(again.ping().is_empty());
    assert!(second.ping().is_empty());
}
