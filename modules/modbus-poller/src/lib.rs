//! Example module: polls a Modbus TCP device. Every `tick-ms` it reads the holding registers
//! its configuration names and sends them, as one JSON object of name → value, on output
//! `registers`. Configuration:
//!
//! ```json
//! { "server": "10.0.0.5:502", "unit": 1, "timeout-ms": 1000,
//!   "registers": [ { "name": "temperature", "address": 0, "type": "i16", "scale": 0.1 },
//!                  { "name": "energy", "address": 10, "type": "u32" } ] }
//! ```
//!
//! `type` is `u16` (the default), `i16`, `u32`, `i32` or `f32` (two registers, high word
//! first); `scale` multiplies the value. The deployment must grant the connection:
//! `connect = ["tcp://10.0.0.5:502"]`. A device that is down or does not answer costs one
//! timeout per tick: the module logs it once, reports `connected: false` with the error in its
//! twin, sends nothing, and connects again on the next tick.

mod link;
mod modbus;

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use wedge_sdk::{Config, Module, log, telemetry, twin};

use link::Link;

const OUTPUT: &str = "registers";

#[derive(Deserialize, Clone, Copy, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    #[default]
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl Kind {
    fn width(self) -> u16 {
        match self {
            Kind::U16 | Kind::I16 => 1,
            Kind::U32 | Kind::I32 | Kind::F32 => 2,
        }
    }

    fn value(self, words: &[u16]) -> f64 {
        let long = || (u32::from(words[0]) << 16) | u32::from(words[1]);
        match self {
            Kind::U16 => f64::from(words[0]),
            Kind::I16 => f64::from(words[0] as i16),
            Kind::U32 => f64::from(long()),
            Kind::I32 => f64::from(long() as i32),
            Kind::F32 => f64::from(f32::from_bits(long())),
        }
    }
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Register {
    name: String,
    address: u16,
    #[serde(default, rename = "type")]
    kind: Kind,
    scale: Option<f64>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    server: String,
    #[serde(default = "default_unit")]
    unit: u8,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    registers: Vec<Register>,
}

fn default_unit() -> u8 {
    1
}

fn default_timeout() -> u64 {
    1000
}

impl Settings {
    fn parse(config: &Config) -> Result<Settings, String> {
        let settings: Settings =
            serde_json::from_value(config.value().clone()).map_err(|e| e.to_string())?;
        if settings.registers.is_empty() {
            return Err("`registers` names no register".into());
        }
        if let Some(r) = settings
            .registers
            .iter()
            .find(|r| u32::from(r.address) + u32::from(r.kind.width()) > 0x1_0000)
        {
            return Err(format!("register `{}` runs past address 65535", r.name));
        }
        Ok(settings)
    }

    /// The reads that cover every register: runs of at most [`modbus::MAX_REGISTERS`].
    fn blocks(&self) -> Vec<(u16, u16)> {
        let mut spans: Vec<(u16, u16)> = self
            .registers
            .iter()
            .map(|r| (r.address, r.address + (r.kind.width() - 1)))
            .collect();
        spans.sort_unstable();
        let mut blocks: Vec<(u16, u16)> = Vec::new();
        for (start, end) in spans {
            match blocks.last_mut() {
                Some((first, last)) if end - *first < modbus::MAX_REGISTERS => {
                    *last = (*last).max(end);
                }
                _ => blocks.push((start, end)),
            }
        }
        blocks.into_iter().map(|(a, b)| (a, b - a + 1)).collect()
    }
}

struct Poller {
    settings: Settings,
    link: Option<Link>,
    transaction: u16,
    /// The last error, while the device is unreachable: logged and reported once.
    down: Option<String>,
    /// Whether `connected: true` was reported since the last error.
    up: bool,
}

impl Poller {
    /// One read of every block; the registers by address.
    fn read(&mut self) -> Result<Vec<(u16, u16)>, String> {
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let link = match &mut self.link {
            Some(link) => link,
            None => self.link.insert(Link::connect(&self.settings.server, timeout)?),
        };
        let mut values = Vec::new();
        for (start, count) in self.settings.blocks() {
            self.transaction = self.transaction.wrapping_add(1);
            let id = self.transaction;
            let request = modbus::read_request(id, self.settings.unit, start, count);
            let body = link.exchange(&request, timeout, |h| modbus::body_len(h, id))?;
            let words = modbus::registers(&body, count)?;
            values.extend((start..).zip(words));
        }
        Ok(values)
    }

    fn reading(&self, words: &[(u16, u16)]) -> Value {
        let word = |address: u16| words.iter().find(|(a, _)| *a == address).map(|(_, w)| *w);
        let mut reading = Map::new();
        for r in &self.settings.registers {
            let raw: Vec<u16> = (0..r.kind.width())
                .filter_map(|i| word(r.address + i))
                .collect();
            let value = r.kind.value(&raw) * r.scale.unwrap_or(1.0);
            // Whole numbers stay integers in the JSON: register values are mostly counts.
            let value = if value.fract() == 0.0 && value.abs() < 9e15 {
                json!(value as i64)
            } else {
                json!(value)
            };
            reading.insert(r.name.clone(), value);
        }
        Value::Object(reading)
    }

    fn set_down(&mut self, error: String) {
        self.link = None;
        self.up = false;
        if self.down.as_ref() != Some(&error) {
            log::warn(&format!(
                "{}: {error}; trying again every tick",
                self.settings.server
            ));
            let _ = twin::report(&json!({"connected": false, "last-error": error}));
            self.down = Some(error);
        }
    }

    fn set_up(&mut self) {
        self.down = None;
        if !std::mem::replace(&mut self.up, true) {
            log::info(&format!("polling {}", self.settings.server));
            let _ = twin::report(&json!({"connected": true, "last-error": null}));
        }
    }
}

impl Module for Poller {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Poller {
            settings: Settings::parse(&config)?,
            link: None,
            transaction: 0,
            down: None,
            up: false,
        })
    }

    fn on_config(&mut self, config: Config) -> Result<(), String> {
        let settings = Settings::parse(&config)?;
        if settings.server != self.settings.server {
            self.link = None;
        }
        self.settings = settings;
        Ok(())
    }

    fn on_tick(&mut self) -> Result<(), String> {
        let words = match self.read() {
            Ok(words) => words,
            Err(e) => {
                self.set_down(e);
                return Ok(());
            }
        };
        self.set_up();
        telemetry::send_json(OUTPUT, &self.reading(&words))
            .map_err(|e| format!("sending on `{OUTPUT}`: {e}"))
    }
}

wedge_sdk::export!(Poller);
