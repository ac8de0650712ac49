//! Test guest: a long-running module (`service.run`) doing what its config's `mode` says.
//!
//! - `serve` (the default): counts its starts in state (`runs`), logs, sends `started` (with
//!   the config's `tag` as a property) on `events`, then `beats` messages `beat` 20 ms apart
//!   (timers through `wasi:io/poll`), then sleeps for ever;
//! - `spin`: a busy loop that never returns, for the CPU rate;
//! - `trap`: sends `started`, then panics; `fail`: sends `started`, then returns an error;
//!   `exit`: sends `started`, then returns `Ok`.
//!
//! The `module` side answers `ping` with `pong` and the `runs` count it reads from state (the
//! two instances share only what goes through the host).

use std::time::Duration;

use serde::Deserialize;
use wedge_sdk::{Config, Message, MethodResponse, Module, Service};

#[derive(Deserialize, Default, PartialEq, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    #[default]
    Serve,
    Spin,
    Trap,
    Fail,
    Exit,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    beats: u32,
}

struct Runner {
    settings: Settings,
}

fn runs() -> u64 {
    wedge_sdk::state::get("runs")
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn send(text: &str, tag: &str) -> Result<(), String> {
    let msg = Message::text(text).with_property("tag", tag);
    wedge_sdk::telemetry::send("events", &msg).map_err(|e| e.to_string())
}

impl Module for Runner {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Runner {
            settings: config.parse()?,
        })
    }

    fn on_config(&mut self, config: Config) -> Result<(), String> {
        self.settings = config.parse()?;
        Ok(())
    }

    fn on_method(&mut self, name: &str, _payload: &str) -> Result<MethodResponse, String> {
        match name {
            "ping" => Ok(MethodResponse {
                status: 200,
                payload: format!(r#"{{"pong":true,"runs":{}}}"#, runs()),
            }),
            other => Err(format!("no method `{other}`")),
        }
    }
}

impl Service for Runner {
    fn run(&mut self) -> Result<(), String> {
        let tag = self.settings.tag.clone();
        if self.settings.mode == Mode::Spin {
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        let runs = runs() + 1;
        wedge_sdk::state::set("runs", runs.to_string().as_bytes())?;
        wedge_sdk::log::info(&format!("run {runs} started with tag `{tag}`"));
        send("started", &tag)?;
        match self.settings.mode {
            Mode::Trap => panic!("run panicked on purpose"),
            Mode::Fail => return Err("run gave up on purpose".into()),
            Mode::Exit => return Ok(()),
            Mode::Serve | Mode::Spin => {}
        }
        let beats = self.settings.beats;
        wstd::runtime::block_on(async move {
            for _ in 0..beats {
                wstd::task::sleep(Duration::from_millis(20).into()).await;
                send("beat", &tag)?;
            }
            loop {
                wstd::task::sleep(Duration::from_secs(3600).into()).await;
            }
        })
    }
}

wedge_sdk::export!(Runner, service);
