//! Example module: a publish/subscribe server for local TCP clients (the line protocol is in
//! `protocol.rs` and the README), each published line also sent as telemetry on `output` with
//! its topic as the `topic` property.
//!
//! A long-running module: `run` (its own instance) serves the socket; the `module` side only
//! checks configurations, and one it accepts restarts `run` with it.
//!
//! Configuration:
//! - `listen` (required): the address to listen on, `"127.0.0.1:5020"`; the deployment must
//!   grant it (`listen = ["tcp://127.0.0.1:5020"]`);
//! - `max-line` (4096): longest line in bytes; a client sending a longer one is disconnected;
//! - `max-clients` (1000): more connections are refused with `ERR too many clients` (the
//!   deployment's `sockets` limit, default 1024, counts them and the listener too);
//! - `max-subscriptions` (64) per client;
//! - `max-queue-kb` (256): lines waiting for a slow subscriber; what does not fit is dropped
//!   for that subscriber;
//! - `output` (`"messages"`): where publications go as telemetry; `""` (or `null`) for none.

mod hub;
mod protocol;
mod server;
mod socket;

use serde::Deserialize;
use wedge_sdk::{Config, Module, Service};

/// A message's body limit on the host, which a publication becomes.
const MAX_MESSAGE: usize = 256 * 1024;

#[derive(Deserialize, Clone)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Settings {
    listen: String,
    #[serde(default = "default_max_line")]
    max_line: usize,
    #[serde(default = "default_max_clients")]
    max_clients: usize,
    #[serde(default = "default_max_subscriptions")]
    max_subscriptions: usize,
    #[serde(default = "default_max_queue_kb")]
    max_queue_kb: usize,
    #[serde(default = "default_output")]
    output: Option<String>,
}

fn default_max_line() -> usize {
    4096
}
/// Below the host's default `sockets` limit (1024), which counts the listener too.
fn default_max_clients() -> usize {
    1000
}
fn default_max_subscriptions() -> usize {
    64
}
fn default_max_queue_kb() -> usize {
    256
}
fn default_output() -> Option<String> {
    Some("messages".into())
}

impl Settings {
    fn parse(config: &Config) -> Result<Settings, String> {
        let mut settings: Settings = config.parse()?;
        if settings.output.as_deref() == Some("") {
            settings.output = None;
        }
        settings
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("config field `listen`: `{}`: {e}", settings.listen))?;
        if settings.max_line == 0 || settings.max_line > MAX_MESSAGE {
            return Err(format!(
                "config field `max-line`: 1 to {MAX_MESSAGE} bytes (a message's limit)"
            ));
        }
        if settings.max_clients == 0 || settings.max_subscriptions == 0 {
            return Err("config fields `max-clients` and `max-subscriptions`: at least 1".into());
        }
        if settings.max_queue_kb * 1024 < settings.max_line + protocol::MAX_TOPIC + 6 {
            return Err("config field `max-queue-kb`: must hold a line of `max-line`".into());
        }
        Ok(settings)
    }
}

struct PubSub {
    settings: Settings,
}

impl Module for PubSub {
    fn init(config: Config) -> Result<Self, String> {
        Ok(PubSub {
            settings: Settings::parse(&config)?,
        })
    }

    fn on_config(&mut self, config: Config) -> Result<(), String> {
        self.settings = Settings::parse(&config)?;
        Ok(())
    }
}

impl Service for PubSub {
    fn run(&mut self) -> Result<(), String> {
        wstd::runtime::block_on(server::run(self.settings.clone()))
    }
}

wedge_sdk::export!(PubSub, service);
