//! Example module: forwards messages whose JSON field exceeds a threshold.
//!
//! A message on any input whose body has a number at `field` greater than `threshold` goes out
//! unchanged on output `alerts`, with the extra property `filter-seen`: how many messages this
//! instance has received since `init`. That count lives in memory only, so it shows whether the
//! host restarted the module.

use serde::Deserialize;
use serde_json::json;
use wedge_sdk::{Config, Message, Module, log, telemetry, twin};

/// Output matching messages are sent on.
const OUTPUT: &str = "alerts";

#[derive(Debug, Deserialize)]
struct Settings {
    threshold: f64,
    #[serde(default = "default_field")]
    field: String,
}

fn default_field() -> String {
    "temperature".to_string()
}

impl Settings {
    fn from_config(config: &Config) -> Result<Settings, String> {
        config.parse()
    }

    /// Tells the twin which settings are in effect. Reporting is best effort: the settings are
    /// valid and applied either way, so a failure is logged rather than rejecting them.
    fn report(&self) {
        let patch = json!({"threshold": self.threshold, "field": self.field});
        if let Err(e) = twin::report(&patch) {
            log::warn(&format!("cannot report settings to the twin: {e}"));
        }
    }
}

struct Filter {
    settings: Settings,
    /// Messages received since `init`, matching or not.
    seen: u64,
}

impl Module for Filter {
    fn init(config: Config) -> Result<Self, String> {
        let settings = Settings::from_config(&config)?;
        settings.report();
        Ok(Filter { settings, seen: 0 })
    }

    fn on_config(&mut self, config: Config) -> Result<(), String> {
        // Parsed in full before anything changes, so a rejected config leaves the old one.
        let settings = Settings::from_config(&config)?;
        settings.report();
        self.settings = settings;
        Ok(())
    }

    fn on_message(&mut self, input: &str, msg: Message) -> Result<(), String> {
        self.seen += 1;
        let field = &self.settings.field;
        let body: serde_json::Value = msg
            .body_json()
            .map_err(|e| format!("message on input `{input}`: {e}"))?;
        let value = match body.get(field) {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(other) => {
                return Err(format!(
                    "message on input `{input}`: field `{field}` is not a number: {other}"
                ));
            }
            None => {
                return Err(format!(
                    "message on input `{input}`: body has no field `{field}`"
                ));
            }
        };
        if !value.is_some_and(|v| v > self.settings.threshold) {
            return Ok(());
        }
        let msg = msg.with_property("filter-seen", self.seen.to_string());
        telemetry::send(OUTPUT, &msg).map_err(|e| format!("sending on `{OUTPUT}` failed: {e}"))
    }
}

wedge_sdk::export!(Filter);
