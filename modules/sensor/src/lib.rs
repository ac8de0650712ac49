//! Example module: simulates a temperature/pressure sensor.
//!
//! Every tick sends one JSON reading `{"seq", "temperature", "pressure"}` on output `readings`.
//! `seq` is kept in the module's state store, so it continues where it left off after a restart.

mod rng;
mod settings;

use serde::Serialize;
use wedge_sdk::{Config, Message, Module, state, telemetry};

use rng::XorShift;
use settings::Settings;

/// Output the readings are sent on.
const OUTPUT: &str = "readings";
/// State key holding the last sequence number sent, as decimal text.
const SEQ_KEY: &str = "seq";

struct Sensor {
    settings: Settings,
    rng: XorShift,
    /// Sequence number of the last reading sent.
    seq: u64,
}

#[derive(Serialize)]
struct Reading {
    seq: u64,
    temperature: f64,
    pressure: f64,
}

impl Module for Sensor {
    fn init(config: Config) -> Result<Self, String> {
        let settings = Settings::from_config(&config)?;
        Ok(Sensor {
            rng: XorShift::new(settings.seed),
            settings,
            seq: last_seq(),
        })
    }

    fn on_config(&mut self, config: Config) -> Result<(), String> {
        let settings = Settings::from_config(&config)?;
        // Restart the sequence of values only when asked to: a range change alone keeps the
        // generator going.
        if settings.seed != self.settings.seed {
            self.rng = XorShift::new(settings.seed);
        }
        self.settings = settings;
        Ok(())
    }

    fn on_tick(&mut self) -> Result<(), String> {
        let seq = self.seq + 1;
        let reading = Reading {
            seq,
            temperature: self.settings.temperature.sample(&mut self.rng),
            pressure: self.settings.pressure.sample(&mut self.rng),
        };
        let msg = Message::json(&reading)
            .with_property("units-temperature", "celsius")
            .with_property("units-pressure", "hPa");
        telemetry::send(OUTPUT, &msg)
            .map_err(|e| format!("sending reading {seq} on `{OUTPUT}` failed: {e}"))?;
        // Counted only once sent, so the readings that reach the hub have no gaps.
        self.seq = seq;
        state::set(SEQ_KEY, seq.to_string().as_bytes())
            .map_err(|e| format!("cannot persist sequence number {seq}: {e}"))
    }
}

/// The last sequence number persisted by a previous run, or 0. Unreadable state is logged and
/// ignored rather than failing `init`, which would keep the module down for good.
fn last_seq() -> u64 {
    let Some(bytes) = state::get(SEQ_KEY) else {
        return 0;
    };
    match std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seq) => seq,
        None => {
            wedge_sdk::log::warn("stored `seq` is not a decimal number; starting again at 1");
            0
        }
    }
}

wedge_sdk::export!(Sensor);
