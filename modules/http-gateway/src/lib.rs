//! Example module: delivers every message to an HTTP endpoint.
//!
//! Each message's body is POSTed to the configured `url` through outbound `wasi:http`, with the
//! message's content type and a header `x-wedge-input` naming the input it arrived on. The host
//! only lets the request through if the url's host is in the module's `allowed-hosts`.

mod post;

use serde::Deserialize;
use serde_json::json;
use wedge_sdk::{Config, Message, Module, log, twin};
use wstd::http::Uri;

#[derive(Deserialize)]
struct Settings {
    url: String,
}

impl Settings {
    /// Reads the configuration and checks the url is absolute, so a typo shows up as a rejected
    /// configuration instead of as a failure on every message.
    fn from_config(config: &Config) -> Result<Settings, String> {
        let settings: Settings = config.parse()?;
        let uri: Uri = settings
            .url
            .parse()
            .map_err(|e| format!("config field `url`: `{}` is not a URL: {e}", settings.url))?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(format!(
                "config field `url`: `{}` is not an absolute http(s) URL",
                settings.url
            ));
        }
        Ok(settings)
    }
}

struct Gateway {
    settings: Settings,
    /// Messages delivered since `init`.
    delivered: u64,
}

impl Module for Gateway {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Gateway {
            settings: Settings::from_config(&config)?,
            delivered: 0,
        })
    }

    fn on_config(&mut self, config: Config) -> Result<(), String> {
        self.settings = Settings::from_config(&config)?;
        Ok(())
    }

    fn on_message(&mut self, input: &str, msg: Message) -> Result<(), String> {
        let url = &self.settings.url;
        match post::post(url, input, msg) {
            Ok(()) => {
                self.delivered += 1;
                report(&json!({"delivered": self.delivered}));
                Ok(())
            }
            Err(error) => {
                let error = format!("POST {url} failed: {error}");
                log::warn(&error);
                report(&json!({"last-error": error, "delivered": self.delivered}));
                Err(error)
            }
        }
    }
}

/// Reports to the twin. The delivery outcome matters more than its report, so a failure to
/// report is only logged.
fn report(patch: &serde_json::Value) {
    if let Err(e) = twin::report(patch) {
        log::warn(&format!("cannot report to the twin: {e}"));
    }
}

wedge_sdk::export!(Gateway);
