//! Test guest: reports whether it can read and write files, to check the host's sandboxing.
//!
//! `init` tries to read `path` and, if `write` is set, to write `probe` to it, then reports both
//! outcomes to the twin as `{"read": ..., "write": ...}`. It succeeds either way: the outcome
//! is the result. With `init-ms`, `init` first spins that long (a module slow to start).

use serde::Deserialize;
use serde_json::{Value, json};
use wedge_sdk::{Config, Module, twin};

#[derive(Deserialize)]
struct Settings {
    #[serde(default = "default_path")]
    path: String,
    #[serde(default)]
    write: Option<String>,
    #[serde(default, rename = "init-ms")]
    init_ms: u64,
}

fn default_path() -> String {
    "/etc/hostname".to_string()
}

struct FsProbe;

impl Module for FsProbe {
    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < u128::from(settings.init_ms) {
            std::hint::spin_loop();
        }
        let read = match std::fs::read(&settings.path) {
            Ok(bytes) => format!("ok {} bytes", bytes.len()),
            Err(e) => format!("error: {e}"),
        };
        let write = match &settings.write {
            None => Value::Null,
            Some(path) => match std::fs::write(path, b"probe") {
                Ok(()) => Value::from("ok"),
                Err(e) => Value::from(format!("error: {e}")),
            },
        };
        twin::report(&json!({"read": read, "write": write}))?;
        Ok(FsProbe)
    }
}

wedge_sdk::export!(FsProbe);
