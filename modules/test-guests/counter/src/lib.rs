//! Test guest: every tick sends the next `batch` numbers `{"seq": n}` on output `counts` (with
//! `send-batch` when `batch` > 1), and only once the host accepted them records in its durable
//! state how far it got. So after any crash, every number below the recorded one was accepted
//! by the host, and the module carries on from there (re-sending at most the batch that was in
//! flight). Stops after `limit` numbers if configured. The `next` method answers with the next
//! number to send. `pad` adds that many bytes to each body (for benchmarks).

use serde_json::json;
use wedge_sdk::{Config, Message, MethodResponse, Module, state, telemetry};

/// Output the numbers are sent on.
const OUTPUT: &str = "counts";
/// State key: the next number to send, as decimal text.
const NEXT_KEY: &str = "next";

struct Counter {
    next: u64,
    settings: Settings,
}

struct Settings {
    batch: u64,
    limit: Option<u64>,
    pad: String,
}

impl Settings {
    fn new(config: &Config) -> Result<Settings, String> {
        let value = config.value();
        let batch = value["batch"].as_u64().unwrap_or(1);
        if !(1..=1024).contains(&batch) {
            return Err(format!("batch must be 1-1024, got {batch}"));
        }
        let pad = value["pad"].as_u64().unwrap_or(0);
        if pad > 64 * 1024 {
            return Err(format!("pad must be at most 65536, got {pad}"));
        }
        Ok(Settings {
            batch,
            limit: value["limit"].as_u64(),
            pad: "x".repeat(pad as usize),
        })
    }
}

impl Module for Counter {
    fn init(config: Config) -> Result<Self, String> {
        let settings = Settings::new(&config)?;
        let next = state::get(NEXT_KEY)
            .map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .parse::<u64>()
                    .map_err(|e| format!("state `{NEXT_KEY}` is damaged: {e}"))
            })
            .transpose()?
            .unwrap_or(1);
        Ok(Counter { next, settings })
    }

    fn on_config(&mut self, config: Config) -> Result<(), String> {
        self.settings = Settings::new(&config)?;
        Ok(())
    }

    fn on_tick(&mut self) -> Result<(), String> {
        let Settings { batch, limit, pad } = &self.settings;
        let end = match limit {
            Some(limit) => (self.next + batch).min(limit + 1),
            None => self.next + batch,
        };
        if end <= self.next {
            return Ok(());
        }
        let messages: Vec<Message> = (self.next..end)
            .map(|seq| match pad.is_empty() {
                true => Message::json(&json!({ "seq": seq })),
                false => Message::json(&json!({ "seq": seq, "pad": pad })),
            })
            .collect();
        let sent = match messages.as_slice() {
            [one] => telemetry::send(OUTPUT, one),
            many => telemetry::send_batch(OUTPUT, many),
        };
        // Refused (e.g. `full`): try the same numbers again next tick.
        sent.map_err(|e| format!("sending {}..{end} failed: {e}", self.next))?;
        state::set(NEXT_KEY, end.to_string().as_bytes())?;
        self.next = end;
        Ok(())
    }

    fn on_method(&mut self, name: &str, _payload: &str) -> Result<MethodResponse, String> {
        match name {
            "next" => Ok(MethodResponse {
                status: 200,
                payload: json!({ "next": self.next }).to_string(),
            }),
            _ => Err(format!("method `{name}` is not implemented")),
        }
    }
}

wedge_sdk::export!(Counter);
