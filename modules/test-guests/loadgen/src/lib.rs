//! Test guest for benchmarks: each tick sends up to `per-tick` messages of `size` bytes on
//! output `out`, one `telemetry.send` per message when `batch` is 1, else `send-batch`es of
//! `batch`, until `limit` messages were accepted. Unlike `counter` it keeps no durable state
//! and builds no JSON per message, so what is measured is the host's path, not the guest's.
//! A refused send (`full`) ends the tick; the same messages are tried again next tick.
//! Messages it receives are only counted (the host's `messages_in`).

use wedge_sdk::{Config, Message, Module, telemetry};

const OUTPUT: &str = "out";

struct Loadgen {
    sent: u64,
    limit: u64,
    per_tick: u64,
    batch: usize,
    message: Message,
}

fn number(config: &Config, key: &str, default: u64, max: u64) -> Result<u64, String> {
    let n = config.value()[key].as_u64().unwrap_or(default);
    match (1..=max).contains(&n) {
        true => Ok(n),
        false => Err(format!("{key} must be 1-{max}, got {n}")),
    }
}

impl Module for Loadgen {
    fn init(config: Config) -> Result<Self, String> {
        let size = number(&config, "size", 256, 256 * 1024)? as usize;
        Ok(Loadgen {
            sent: 0,
            limit: number(&config, "limit", u64::MAX, u64::MAX)?,
            per_tick: number(&config, "per-tick", 1000, 1_000_000)?,
            batch: number(&config, "batch", 1, 1024)? as usize,
            message: Message::text(&"x".repeat(size)),
        })
    }

    fn on_tick(&mut self) -> Result<(), String> {
        let end = self.limit.min(self.sent.saturating_add(self.per_tick));
        while self.sent < end {
            let n = (self.batch as u64).min(end - self.sent) as usize;
            let sent = match n {
                1 => telemetry::send(OUTPUT, &self.message),
                n => telemetry::send_batch(OUTPUT, &vec![self.message.clone(); n]),
            };
            match sent {
                Ok(()) => self.sent += n as u64,
                // Full: the host asks to try again later; the next tick does.
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn on_message(&mut self, _input: &str, _msg: Message) -> Result<(), String> {
        Ok(())
    }
}

wedge_sdk::export!(Loadgen);
