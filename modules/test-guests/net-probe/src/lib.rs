//! Test guest: tries one socket operation per `probe` method call, through Rust's `std::net`
//! (which goes through `wasi:sockets`), and answers `{"ok": …}` or `{"error": "<io::ErrorKind>",
//! "message": …}`. Payload: `{"op": …, "addr": "ip:port" | "name:port"}`, op one of
//! - `tcp-connect`: connects, writes `ping\n`, reads one line back;
//! - `tcp-listen`: binds and listens, and answers the port it got;
//! - `udp-bind`: binds;
//! - `udp-send`: binds an ephemeral port, sends `ping` to `addr`, waits for one datagram back;
//! - `resolve`: resolves the name, answers the addresses;
//! - `hold` (`"n"`): opens up to n connections to `addr` and keeps them, answers how many it
//!   holds and the first error;
//! - `listen-keep`: listens on `addr` and keeps the listener; `accept` (`"n"`): accepts up to n
//!   connections on it and keeps them, answering as `hold`;
//! - `release`: closes everything kept.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

use serde_json::{Value, json};
use wedge_sdk::{Config, MethodResponse, Module};

#[derive(Default)]
struct NetProbe {
    held: Vec<TcpStream>,
    listener: Option<TcpListener>,
}

fn kind(e: &std::io::Error) -> Value {
    json!({ "error": format!("{:?}", e.kind()), "message": e.to_string() })
}

fn probe(op: &str, addr: &str) -> std::io::Result<Value> {
    match op {
        "tcp-connect" => {
            let mut stream = TcpStream::connect(addr)?;
            stream.write_all(b"ping\n")?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line)?;
            Ok(json!(line.trim_end()))
        }
        "tcp-listen" => {
            let listener = TcpListener::bind(addr)?;
            Ok(json!(listener.local_addr()?.port()))
        }
        "udp-bind" => {
            let socket = UdpSocket::bind(addr)?;
            Ok(json!(socket.local_addr()?.port()))
        }
        "udp-send" => {
            let target = addr
                .to_socket_addrs()?
                .next()
                .ok_or(std::io::ErrorKind::NotFound)?;
            let local = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let socket = UdpSocket::bind(local)?;
            socket.send_to(b"ping", target)?;
            let mut buf = [0u8; 64];
            let (n, _) = socket.recv_from(&mut buf)?;
            Ok(json!(String::from_utf8_lossy(&buf[..n])))
        }
        "resolve" => {
            let addrs: Vec<String> = addr.to_socket_addrs()?.map(|a| a.to_string()).collect();
            Ok(json!(addrs))
        }
        _ => Err(std::io::Error::other(format!("unknown op `{op}`"))),
    }
}

impl NetProbe {
    /// Keeps up to `n` more streams from `next`; how many it holds, and the first error.
    fn keep(&mut self, n: u64, mut next: impl FnMut(&Self) -> std::io::Result<TcpStream>) -> Value {
        for _ in 0..n {
            match next(self) {
                Ok(stream) => self.held.push(stream),
                Err(e) => return json!({ "held": self.held.len(), "failed": kind(&e) }),
            }
        }
        json!({ "held": self.held.len() })
    }

    /// The operations that keep what they open, if `op` is one.
    fn stateful(&mut self, op: &str, addr: &str, n: u64) -> Option<Value> {
        Some(match op {
            "hold" => self.keep(n, |_| TcpStream::connect(addr)),
            "listen-keep" => match TcpListener::bind(addr) {
                Ok(listener) => {
                    self.listener = Some(listener);
                    json!({ "ok": true })
                }
                Err(e) => kind(&e),
            },
            "accept" => self.keep(n, |me| match &me.listener {
                Some(listener) => listener.accept().map(|(stream, _)| stream),
                None => Err(std::io::Error::other("no listener")),
            }),
            "release" => {
                self.held.clear();
                self.listener = None;
                json!({ "held": 0 })
            }
            _ => return None,
        })
    }
}

impl Module for NetProbe {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(NetProbe::default())
    }

    fn on_method(&mut self, name: &str, payload: &str) -> Result<MethodResponse, String> {
        if name != "probe" {
            return Err(format!("unknown method `{name}`"));
        }
        let payload: Value = serde_json::from_str(payload).map_err(|e| e.to_string())?;
        let (Some(op), Some(addr)) = (payload["op"].as_str(), payload["addr"].as_str()) else {
            return Err("payload must be {\"op\": …, \"addr\": …}".into());
        };
        let n = payload["n"].as_u64().unwrap_or(1);
        let answer = match self.stateful(op, addr, n) {
            Some(answer) => answer,
            None => match probe(op, addr) {
                Ok(value) => json!({ "ok": value }),
                Err(e) => kind(&e),
            },
        };
        Ok(MethodResponse {
            status: 200,
            payload: answer.to_string(),
        })
    }
}

wedge_sdk::export!(NetProbe);
