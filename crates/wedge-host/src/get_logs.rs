//! The `wedge.get-logs` direct method: a module's recent log records, for an operator in the
//! cloud (edgeAgent's `GetModuleLogs` in spirit). The payload is
//! `{"module": "filter", "since": "10m", "tail": 100, "level": "warn"}` (all but `module`
//! optional; `since` a duration ago or an RFC 3339 time); the answer
//! `{"module": …, "lines": [{seq, time, level, stream, text}, …], "truncated": bool}`, cut to
//! the latest lines that fit IoT Hub's method payload limit.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Value, json};
use wedge_core::MAX_METHOD_PAYLOAD_BYTES;
use wedge_runtime::{LogLevel, LogLine, LogQuery, Runtime, RuntimeError};

/// Room kept for the answer's envelope around the lines.
const ENVELOPE: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    module: String,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    tail: Option<usize>,
    #[serde(default)]
    level: Option<LogLevel>,
}

/// Answers the method: a status and a JSON payload.
pub(crate) fn get_logs(runtime: &Runtime, payload: &str) -> (u16, String) {
    let error = |status: u16, message: String| (status, json!({ "error": message }).to_string());
    let payload: Payload = match serde_json::from_str(payload) {
        Ok(payload) => payload,
        Err(e) => {
            let shape = r#"{"module": "<name>", "since": "10m", "tail": 100, "level": "warn"}"#;
            return error(400, format!("payload must be {shape}: {e}"));
        }
    };
    let since = match payload.since.as_deref().map(parse_since).transpose() {
        Ok(since) => since,
        Err(e) => return error(400, e),
    };
    let query = LogQuery {
        level: payload.level,
        since,
        after: None,
        tail: payload.tail,
    };
    match runtime.logs(&payload.module, &query) {
        Ok(page) => {
            let (lines, truncated) = fit(page.lines, MAX_METHOD_PAYLOAD_BYTES - ENVELOPE);
            let answer =
                json!({ "module": payload.module, "lines": lines, "truncated": truncated });
            (200, answer.to_string())
        }
        Err(e @ RuntimeError::UnknownModule(_)) => error(404, e.to_string()),
        Err(e) => error(500, e.to_string()),
    }
}

/// `10m` ago, or an RFC 3339 time.
fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(SystemTime::now() - ago);
    }
    humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!("`since` is `{text}`: expected a duration (`10m`) or an RFC 3339 time")
    })
}

/// The latest of `lines` whose JSON fits in `budget` bytes, and whether any were left out.
fn fit(lines: Vec<LogLine>, budget: usize) -> (Vec<Value>, bool) {
    let mut kept = Vec::new();
    let mut used = 0;
    for line in lines.into_iter().rev() {
        let value = json!(line);
        let size = value.to_string().len() + 1;
        if used + size > budget {
            kept.reverse();
            return (kept, true);
        }
        used += size;
        kept.push(value);
    }
    kept.reverse();
    (kept, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, text: &str) -> LogLine {
        LogLine {
            seq,
            time: SystemTime::now(),
            level: LogLevel::Info,
            stream: "log".into(),
            text: text.into(),
        }
    }

    #[test]
    fn the_latest_lines_that_fit_are_kept() {
        let lines: Vec<LogLine> = (1..=10).map(|i| line(i, &"x".repeat(100))).collect();
        let one = json!(lines[0]).to_string().len() + 1;
        // Room for three (seq 10 is a digit longer than seq 1), not four.
        let (kept, truncated) = fit(lines.clone(), 3 * one + 3);
        assert!(truncated);
        let seqs: Vec<u64> = kept.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [8, 9, 10]);
        let (all, truncated) = fit(lines, usize::MAX);
        assert_eq!((all.len(), truncated), (10, false));
    }

    #[test]
    fn since_is_a_duration_or_a_time() {
        assert!(parse_since("10m").unwrap() < SystemTime::now());
        assert!(parse_since("2026-12-01T13:30:00Z").is_ok());
        assert!(parse_since("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
