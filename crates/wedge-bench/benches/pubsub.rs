//! Row 16: messages per second through the `pubsub-server` module (in a `wedge run` of the
//! release binary, `$WEDGE_BIN`, else `target/release/wedge`), against a native tokio server
//! speaking the same line protocol, the same way (a reader and a batching writer per client,
//! a shared topic table), in the same run. The load is the same for both: `PUBLISHERS`
//! connections each pipelining `EACH` publications of `PAYLOAD` bytes to one topic that
//! `SUBSCRIBERS` other connections subscribe to; the figure is publications per second, from
//! the first byte sent until every subscriber has received every publication. The module runs
//! once without telemetry (`output = null`: the fan-out alone) and once with every
//! publication also sent to the local hub (durable telemetry, batched per read).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use wedge_bench::{Rows, Samples, rounds, scratch};
use wedge_test_artifacts::PUBSUB_SERVER;

const PUBLISHERS: usize = 2;
const SUBSCRIBERS: usize = 2;
const EACH: usize = 50_000;
const PAYLOAD: usize = 64;
const TOPIC: &str = "bench/t";

fn main() {
    let wedge = wedge_bench::wedge_bin();
    let work = scratch();
    let native = native_server();
    let (mut bare, mut durable) = (Samples::default(), Samples::default());
    for round in 0..rounds(3) {
        for (telemetry, samples) in [(false, &mut bare), (true, &mut durable)] {
            let dir = work.path().join(format!("r{round}{}", telemetry as u8));
            let mut host = Host::start(&wedge, &dir, telemetry);
            let module = load(&host.addr);
            host.stop();
            samples.push(module, load(&native));
        }
    }
    let mut rows = Rows::new("pubsub", "17 pub/sub");
    let shape = format!(
        "{PUBLISHERS} publishers × {EACH} lines of {PAYLOAD} B to one topic, {SUBSCRIBERS} subscribers"
    );
    rows.paired(
        "pubsub-server, publications/s",
        "msg/s",
        &bare,
        "native tokio server",
        &format!("{shape}; `output = null` (fan-out only); loopback, same protocol and batching"),
    );
    rows.paired(
        "pubsub-server + telemetry, publications/s",
        "msg/s",
        &durable,
        "native tokio server (no telemetry)",
        &format!(
            "{shape}; each publication also stored in the local hub's outbox (one batch per read)"
        ),
    );
    rows.write();
}

/// Publications per second through the server at `addr`.
fn load(addr: &str) -> f64 {
    let total = PUBLISHERS * EACH;
    let ready = Arc::new(Barrier::new(PUBLISHERS + SUBSCRIBERS + 1));
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let (addr, ready) = (addr.to_string(), ready.clone());
            std::thread::spawn(move || {
                let stream = TcpStream::connect(&addr).unwrap();
                (&stream)
                    .write_all(format!("SUB {TOPIC}\n").as_bytes())
                    .unwrap();
                let mut reader = BufReader::with_capacity(1 << 16, stream);
                let mut ok = String::new();
                reader.read_line(&mut ok).unwrap();
                assert_eq!(ok, "OK\n");
                ready.wait();
                let mut lines = 0;
                let mut buf = vec![0; 1 << 16];
                while lines < total {
                    let n = reader.read(&mut buf).unwrap();
                    assert!(n > 0, "the server closed a subscriber after {lines} lines");
                    lines += buf[..n].iter().filter(|b| **b == b'\n').count();
                }
                Instant::now()
            })
        })
        .collect();
    let payload = "x".repeat(PAYLOAD);
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|_| {
            let (addr, ready) = (addr.to_string(), ready.clone());
            let lines: String = (0..EACH)
                .map(|_| format!("PUB {TOPIC} {payload}\n"))
                .collect();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(&addr).unwrap();
                ready.wait();
                stream.write_all(lines.as_bytes()).unwrap();
                stream
            })
        })
        .collect();
    ready.wait();
    let start = Instant::now();
    let last = subscribers
        .into_iter()
        .map(|s| s.join().unwrap())
        .max()
        .unwrap();
    drop(
        publishers
            .into_iter()
            .map(|p| p.join().unwrap())
            .collect::<Vec<_>>(),
    );
    total as f64 / (last - start).as_secs_f64()
}

/// A `wedge run` with only `pubsub-server`.
struct Host {
    child: Child,
    addr: String,
}

impl Host {
    fn start(wedge: &Path, dir: &Path, telemetry: bool) -> Host {
        std::fs::create_dir_all(dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let (output, routes) = match telemetry {
            true => (
                "",
                "[routes]\nm = { from = \"pubsub/messages\", to = \"$upstream\" }\n",
            ),
            false => (", output = \"\"", ""),
        };
        let toml = format!(
            "[modules.pubsub]\npath = {PUBSUB_SERVER:?}\nlisten = [\"tcp://{addr}\"]\n\
             config = {{ listen = \"{addr}\", max-queue-kb = 65536{output} }}\n{routes}"
        );
        std::fs::write(dir.join("wedge.toml"), toml).unwrap();
        let child = Command::new(wedge)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("run")
            .arg(dir.join("wedge.toml"))
            .env("WEDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wedge");
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "pubsub-server never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Host { child, addr }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The baseline: the same protocol (SUB, PUB, PING) in tokio, on a runtime of its own thread;
/// its address.
fn native_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let topics: Topics = Arc::default();
            let mut next = 0u64;
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                next += 1;
                tokio::spawn(native_client(stream, next, topics.clone()));
            }
        });
    });
    addr
}

type Frame = Arc<[u8]>;
type Topics = Arc<Mutex<HashMap<String, HashMap<u64, mpsc::UnboundedSender<Frame>>>>>;

async fn native_client(stream: tokio::net::TcpStream, id: u64, topics: Topics) {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    let writer = tokio::spawn(async move {
        let mut out = Vec::with_capacity(16 * 1024);
        while let Some(frame) = rx.recv().await {
            out.extend_from_slice(&frame);
            while out.len() < 16 * 1024 {
                match rx.try_recv() {
                    Ok(frame) => out.extend_from_slice(&frame),
                    Err(_) => break,
                }
            }
            if write.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    });
    let mut reader = tokio::io::BufReader::with_capacity(16 * 1024, read);
    let mut line = Vec::new();
    while reader
        .read_until(b'\n', &mut line)
        .await
        .is_ok_and(|n| n > 0)
    {
        if line.len() > 4097 {
            break;
        }
        let Ok(text) = std::str::from_utf8(&line) else {
            break;
        };
        let text = text.trim_end_matches('\n');
        let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
        match verb {
            "SUB" => {
                topics
                    .lock()
                    .unwrap()
                    .entry(rest.to_string())
                    .or_default()
                    .insert(id, tx.clone());
                let _ = tx.send(Frame::from(&b"OK\n"[..]));
            }
            "PUB" => {
                let (topic, payload) = rest.split_once(' ').unwrap_or((rest, ""));
                let frame = Frame::from(format!("MSG {topic} {payload}\n").into_bytes());
                if let Some(subscribers) = topics.lock().unwrap().get(topic) {
                    for (_, sub) in subscribers.iter().filter(|(sub, _)| **sub != id) {
                        let _ = sub.send(frame.clone());
                    }
                }
            }
            "PING" => {
                let _ = tx.send(Frame::from(&b"PONG\n"[..]));
            }
            _ => break,
        }
        line.clear();
    }
    for subscribers in topics.lock().unwrap().values_mut() {
        subscribers.remove(&id);
    }
    drop(tx);
    let _ = writer.await;
}
