//! Test guest: a module that misbehaves in the way its config names, so the host's limits can be
//! tested against a real component. `mode`:
//!
//! - `log-flood`: every tick logs `per-tick` bytes (lines of `line` bytes) through `log.log`,
//!   until `bytes` have been attempted in all;
//! - `stderr-flood`: the same with `eprintln!` (WASI stderr);
//! - `memory-bomb`: every tick allocates (and touches) 1 MiB more until the allocator fails;
//! - `panic`: panics in `on-tick` with [`PANIC_MESSAGE`];
//! - `slow-sends`: on the first tick sends `sends` messages `{"i": n}` on `out`, one `send`
//!   each (each waits for the host's fsync), then nothing;
//! - `handle-hoard`: every tick opens 10 000 more WASI handles (clock pollables) and keeps
//!   them all: host memory that `memory-mb` does not count.
//!
//! The `progress` method answers what was attempted so far: `{"bytes", "lines", "sent", "done"}`.

use serde_json::json;
use wedge_sdk::{Config, Message, MethodResponse, Module, log, telemetry};

/// What `panic` mode panics with.
pub const PANIC_MESSAGE: &str = "hostile: panic on purpose";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    LogFlood,
    StderrFlood,
    MemoryBomb,
    Panic,
    SlowSends,
    HandleHoard,
}

struct Hostile {
    mode: Mode,
    /// Bytes to attempt in all (floods).
    bytes: u64,
    /// Bytes per tick (floods).
    per_tick: u64,
    /// One flood line, without its newline.
    line: String,
    /// Messages to send (`slow-sends`).
    sends: u64,
    attempted_bytes: u64,
    attempted_lines: u64,
    sent: u64,
    /// Memory held by `memory-bomb`, so that it only grows.
    hoard: Vec<Vec<u8>>,
    /// Handles held by `handle-hoard`.
    handles: Vec<wasip2::io::poll::Pollable>,
}

impl Hostile {
    fn flood(&mut self) {
        let end = (self.attempted_bytes + self.per_tick).min(self.bytes);
        while self.attempted_bytes < end {
            match self.mode {
                Mode::LogFlood => log::info(&self.line),
                _ => eprintln!("{}", self.line),
            }
            self.attempted_bytes += self.line.len() as u64 + 1;
            self.attempted_lines += 1;
        }
    }
}

impl Module for Hostile {
    fn init(config: Config) -> Result<Self, String> {
        let value = config.value();
        let mode = match value["mode"].as_str() {
            Some("log-flood") => Mode::LogFlood,
            Some("stderr-flood") => Mode::StderrFlood,
            Some("memory-bomb") => Mode::MemoryBomb,
            Some("panic") => Mode::Panic,
            Some("slow-sends") => Mode::SlowSends,
            Some("handle-hoard") => Mode::HandleHoard,
            other => return Err(format!("unknown mode {other:?}")),
        };
        let line_len = value["line"].as_u64().unwrap_or(1000).max(1);
        Ok(Hostile {
            mode,
            bytes: value["bytes"].as_u64().unwrap_or(100 << 20),
            per_tick: value["per-tick"].as_u64().unwrap_or(10 << 20),
            line: "x".repeat(line_len as usize),
            sends: value["sends"].as_u64().unwrap_or(500),
            attempted_bytes: 0,
            attempted_lines: 0,
            sent: 0,
            hoard: Vec::new(),
            handles: Vec::new(),
        })
    }

    fn on_tick(&mut self) -> Result<(), String> {
        match self.mode {
            Mode::LogFlood | Mode::StderrFlood => self.flood(),
            Mode::MemoryBomb => loop {
                // Touched, so that the memory is really committed, not just reserved.
                self.hoard.push(vec![0xa5; 1 << 20]);
                std::hint::black_box(&self.hoard);
            },
            Mode::Panic => panic!("{PANIC_MESSAGE}"),
            Mode::HandleHoard => {
                for _ in 0..10_000 {
                    let hour = 3_600_000_000_000;
                    self.handles
                        .push(wasip2::clocks::monotonic_clock::subscribe_duration(hour));
                }
            }
            Mode::SlowSends => {
                while self.sent < self.sends {
                    let msg = Message::json(&json!({ "i": self.sent }));
                    telemetry::send("out", &msg).map_err(|e| format!("send failed: {e}"))?;
                    self.sent += 1;
                }
            }
        }
        Ok(())
    }

    fn on_method(&mut self, name: &str, _payload: &str) -> Result<MethodResponse, String> {
        match name {
            "progress" => Ok(MethodResponse {
                status: 200,
                payload: json!({
                    "bytes": self.attempted_bytes,
                    "lines": self.attempted_lines,
                    "sent": self.sent,
                    "handles": self.handles.len(),
                    "done": self.attempted_bytes >= self.bytes || self.sent >= self.sends,
                })
                .to_string(),
            }),
            _ => Err(format!("method `{name}` is not implemented")),
        }
    }
}

wedge_sdk::export!(Hostile);
