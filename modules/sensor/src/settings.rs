//! The sensor's configuration.

use serde::Deserialize;
use wedge_sdk::Config;

use crate::rng::XorShift;

/// A closed range of values to simulate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    min: f64,
    max: f64,
}

impl Range {
    /// A value uniform in the range, rounded to 2 decimals.
    pub fn sample(&self, rng: &mut XorShift) -> f64 {
        let value = self.min + rng.next_f64() * (self.max - self.min);
        // Rounding could step past a bound that has more than 2 decimals.
        ((value * 100.0).round() / 100.0).clamp(self.min, self.max)
    }
}

/// Validated settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub temperature: Range,
    pub pressure: Range,
    pub seed: u64,
}

/// The configuration as written: every key is optional.
#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    temperature: RawRange,
    #[serde(default)]
    pressure: RawRange,
    seed: Option<u64>,
}

#[derive(Default, Deserialize)]
struct RawRange {
    min: Option<f64>,
    max: Option<f64>,
}

impl Settings {
    /// Reads the configuration, filling in defaults and rejecting ranges with `min > max`.
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        let raw: Raw = config.parse()?;
        Ok(Settings {
            temperature: range("temperature", raw.temperature, 20.0, 35.0)?,
            pressure: range("pressure", raw.pressure, 990.0, 1030.0)?,
            seed: raw.seed.unwrap_or(1),
        })
    }
}

fn range(name: &str, raw: RawRange, min: f64, max: f64) -> Result<Range, String> {
    let range = Range {
        min: raw.min.unwrap_or(min),
        max: raw.max.unwrap_or(max),
    };
    if range.min > range.max {
        return Err(format!(
            "config field `{name}`: min ({}) is greater than max ({})",
            range.min, range.max
        ));
    }
    Ok(range)
}
