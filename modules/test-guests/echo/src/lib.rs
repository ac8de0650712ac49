//! Test guest: forwards every message unchanged on output `out`, answers the `ping` method,
//! `send`s what it is given (`{"bodies": ["…", …]}`: one text message each, in one batch, on
//! `out`: a source of exactly known messages),
//! `sleep`s before answering, `log`s what it is asked to, and `exit`s (`{"code": n}`, a `wasi:cli/exit`) on request.
//! With `sleep-ms` in its config it waits that long before forwarding each message: a slow,
//! healthy consumer.

use serde_json::{Value, json};
use wedge_sdk::{Config, Message, MethodResponse, Module, log, telemetry, twin};

/// Output every message is forwarded on.
const OUTPUT: &str = "out";

struct Echo {
    /// The latest configuration, reported back so tests can see what the module received.
    config: Config,
}

impl Module for Echo {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Echo { config })
    }

    fn on_config(&mut self, config: Config) -> Result<(), String> {
        // Reported first so that a failed report rejects the config instead of half-applying it.
        twin::report(&json!({"config": config.value()}))?;
        self.config = config;
        Ok(())
    }

    fn on_message(&mut self, _input: &str, msg: Message) -> Result<(), String> {
        if let Some(ms) = self.config.value()["sleep-ms"].as_u64() {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        telemetry::send(OUTPUT, &msg).map_err(|e| format!("sending on `{OUTPUT}` failed: {e}"))
    }

    fn on_method(&mut self, name: &str, payload: &str) -> Result<MethodResponse, String> {
        // Callers may send any payload; what is not JSON is echoed back as a string.
        let payload = serde_json::from_str(payload).unwrap_or_else(|_| Value::from(payload));
        match name {
            "ping" => Ok(MethodResponse {
                status: 200,
                payload: json!({"pong": payload}).to_string(),
            }),
            // Sleeps `{"ms": n}` (a WASI monotonic-clock wait, no CPU) before answering: a
            // module that answers late.
            "sleep" => {
                let ms = payload["ms"]
                    .as_u64()
                    .ok_or("payload must be {\"ms\": <n>}")?;
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(MethodResponse {
                    status: 200,
                    payload: json!({"slept-ms": ms}).to_string(),
                })
            }
            // Logs `{"level": "warn", "text": "…"}` through `log.log`, or with `"stderr": true`
            // writes the text to stderr: records for `wedge logs` to find.
            "log" => {
                let text = payload["text"].as_str().ok_or("payload must have a `text`")?;
                match (payload["stderr"] == true, payload["level"].as_str()) {
                    (true, _) => eprintln!("{text}"),
                    (false, Some("error")) => log::error(text),
                    (false, Some("warn")) => log::warn(text),
                    (false, Some("debug")) => log::debug(text),
                    (false, _) => log::info(text),
                }
                Ok(MethodResponse {
                    status: 200,
                    payload: "{}".into(),
                })
            }
            "send" => {
                let bodies = payload["bodies"]
                    .as_array()
                    .ok_or("payload must be {\"bodies\": [\"…\", …]}")?;
                let messages: Vec<Message> = bodies
                    .iter()
                    .map(|b| match b.as_str() {
                        Some(text) => Message::text(text),
                        None => Message::json(b),
                    })
                    .collect();
                telemetry::send_batch(OUTPUT, &messages)
                    .map_err(|e| format!("sending on `{OUTPUT}` failed: {e}"))?;
                Ok(MethodResponse {
                    status: 200,
                    payload: json!({"sent": messages.len()}).to_string(),
                })
            }
            // Ends the instance as a process would: status 0 is a clean stop.
            "exit" => std::process::exit(payload["code"].as_i64().unwrap_or(0) as i32),
            _ => Err(format!("method `{name}` is not implemented")),
        }
    }
}

wedge_sdk::export!(Echo);
