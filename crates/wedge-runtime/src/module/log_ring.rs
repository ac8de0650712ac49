//! A module's recent log records, kept in memory in a ring of bounded size, for `wedge logs`
//! and the `wedge.get-logs` direct method (edgeAgent's `GetModuleLogs` in spirit). Only records
//! the module's rate limit let through arrive here, so a flood costs the ring what it costs
//! the log: its size, never more, and the oldest records make room.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Default size of a module's ring (record text plus a small overhead per record).
pub const DEFAULT_LOG_KB: u64 = 64;
/// What one record costs in the ring besides its text.
const RECORD_OVERHEAD: usize = 64;

/// Severity of a record, ordered from the least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `log.trace`.
    Trace,
    /// `log.debug`.
    Debug,
    /// `log.info` and stdout.
    Info,
    /// `log.warn`, stderr, and the host's "suppressed N lines" records.
    Warn,
    /// `log.error`.
    Error,
}

impl From<tracing::Level> for LogLevel {
    fn from(level: tracing::Level) -> Self {
        match level {
            tracing::Level::TRACE => LogLevel::Trace,
            tracing::Level::DEBUG => LogLevel::Debug,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::WARN => LogLevel::Warn,
            tracing::Level::ERROR => LogLevel::Error,
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LogLine {
    /// Increases by one per record of this module since the host started: a follower asks for
    /// what comes after the last one it saw.
    pub seq: u64,
    /// When it was logged.
    #[serde(with = "rfc3339")]
    pub time: SystemTime,
    /// Its severity.
    pub level: LogLevel,
    /// `log`, `stdout`, `stderr`, or `host` for the host's records about the module.
    pub stream: String,
    /// The text.
    pub text: String,
}

/// Which records to return.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogQuery {
    /// Only records at this level or more severe.
    #[serde(default)]
    pub level: Option<LogLevel>,
    /// Only records logged at or after this time.
    #[serde(default, with = "rfc3339::option")]
    pub since: Option<SystemTime>,
    /// Only records after this `seq` (for following).
    #[serde(default)]
    pub after: Option<u64>,
    /// At most this many, the latest.
    #[serde(default)]
    pub tail: Option<usize>,
}

/// What a query returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct LogPage {
    /// The records selected, oldest first.
    pub lines: Vec<LogLine>,
    /// The `seq` of the module's latest record (selected or not; 0 for none yet): a follower
    /// asks for what comes after it.
    pub last_seq: u64,
}

/// The ring.
pub(crate) struct LogRing {
    inner: Mutex<Ring>,
}

struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
    max_bytes: usize,
    next_seq: u64,
}

fn cost(line: &LogLine) -> usize {
    line.text.len() + line.stream.len() + RECORD_OVERHEAD
}

impl LogRing {
    pub(crate) fn new(max_bytes: usize) -> Self {
        LogRing {
            inner: Mutex::new(Ring {
                lines: VecDeque::new(),
                bytes: 0,
                max_bytes,
                next_seq: 1,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Every change leaves the ring whole before anything can panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a record, dropping the oldest until it fits.
    pub(crate) fn push(&self, level: LogLevel, stream: &str, text: &str) {
        let mut ring = self.lock();
        let line = LogLine {
            seq: ring.next_seq,
            time: SystemTime::now(),
            level,
            stream: stream.to_string(),
            text: text.to_string(),
        };
        ring.next_seq += 1;
        ring.bytes += cost(&line);
        ring.lines.push_back(line);
        ring.shrink();
    }

    /// Changes the size; the oldest records go if it shrinks.
    pub(crate) fn resize(&self, max_bytes: usize) {
        let mut ring = self.lock();
        ring.max_bytes = max_bytes;
        ring.shrink();
    }

    /// The records `query` selects, oldest first.
    pub(crate) fn query(&self, query: &LogQuery) -> LogPage {
        let ring = self.lock();
        let selected: Vec<&LogLine> = ring
            .lines
            .iter()
            .filter(|l| query.level.is_none_or(|level| l.level >= level))
            .filter(|l| query.since.is_none_or(|since| l.time >= since))
            .filter(|l| query.after.is_none_or(|after| l.seq > after))
            .collect();
        let skip = query
            .tail
            .map_or(0, |tail| selected.len().saturating_sub(tail));
        LogPage {
            lines: selected.into_iter().skip(skip).cloned().collect(),
            last_seq: ring.next_seq - 1,
        }
    }
}

impl Ring {
    fn shrink(&mut self) {
        // The newest record stays even if it alone is over the size (it is cut to 4 KiB).
        while self.bytes > self.max_bytes && self.lines.len() > 1 {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= cost(&old);
            }
        }
    }
}

/// Times as RFC 3339 text (`2026-12-01T13:30:00.123Z`), as `wedge status` shows them.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text).map_err(D::Error::custom)
    }

    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            time: &Option<SystemTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => super::serialize(time, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| humantime::parse_rfc3339_weak(&text).map_err(D::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn queries_travel_as_json() {
        let query = LogQuery {
            level: Some(LogLevel::Warn),
            since: Some(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_764_595_800_123),
            ),
            after: None,
            tail: Some(5),
        };
        let text = serde_json::to_string(&query).unwrap();
        assert!(
            text.contains("\"since\":\"2025-12-01T13:30:00.123Z\""),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<LogQuery>(&text).unwrap(), query);
    }

    #[test]
    fn the_ring_keeps_the_latest_within_its_size_and_filters() {
        let ring = LogRing::new(4 * (10 + 3 + RECORD_OVERHEAD));
        for i in 0..10 {
            let level = if i % 2 == 0 {
                LogLevel::Info
            } else {
                LogLevel::Warn
            };
            ring.push(level, "log", &format!("line {i:05}"));
        }
        let page = ring.query(&LogQuery::default());
        assert_eq!(page.last_seq, 10);
        let all = page.lines;
        assert_eq!(
            texts(&all),
            ["line 00006", "line 00007", "line 00008", "line 00009"]
        );
        assert_eq!(all[0].seq, 7);
        let warn = LogQuery {
            level: Some(LogLevel::Warn),
            ..LogQuery::default()
        };
        assert_eq!(
            texts(&ring.query(&warn).lines),
            ["line 00007", "line 00009"]
        );
        let tail = LogQuery {
            tail: Some(1),
            ..LogQuery::default()
        };
        assert_eq!(texts(&ring.query(&tail).lines), ["line 00009"]);
        let after = LogQuery {
            after: Some(8),
            ..LogQuery::default()
        };
        assert_eq!(
            texts(&ring.query(&after).lines),
            ["line 00008", "line 00009"]
        );
        let future = LogQuery {
            since: Some(SystemTime::now() + std::time::Duration::from_secs(60)),
            ..LogQuery::default()
        };
        assert!(ring.query(&future).lines.is_empty());
        ring.resize(1);
        assert_eq!(
            texts(&ring.query(&LogQuery::default()).lines),
            ["line 00009"]
        );
    }
}
