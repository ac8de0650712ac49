//! Counters and health of one module, read by `wedge status` and reported to the hub.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;
use wedge_core::DesiredStatus;
use wedge_core::doc::RuntimeStatus;
use wedge_core::truncate;

use super::operator_metrics::{OperatorMetric, OperatorMetrics, OperatorSeries};

/// Upper bounds of the call-duration buckets, in seconds: 10 µs (a call that does nothing) to
/// 1 s (the default CPU budget per call), then a last one for calls that waited in the host.
const CALL_BUCKETS: [f64; 13] = [
    1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1, 1.0, 10.0,
];

/// Longest error text kept as a module's last error.
const MAX_ERROR_LEN: usize = 1024;

/// A snapshot of one module for status displays.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModuleStatus {
    /// The module's name.
    pub name: String,
    /// Its health.
    pub state: RuntimeStatus,
    /// What the deployment wants it to be.
    pub desired: DesiredStatus,
    /// The sha256 of the binary it runs.
    pub sha256: String,
    /// Messages delivered to `on-message`.
    pub messages_in: u64,
    /// Messages accepted by `telemetry.send`.
    pub messages_out: u64,
    /// Calls that returned an error or trapped, and sends that were refused.
    pub errors: u64,
    /// Messages waiting in its inbox.
    pub queued: u64,
    /// Messages its inbox dropped to make room (`when-full`), ever.
    pub dropped: u64,
    /// Times the module was restarted after a failure or on request.
    pub restarts: u64,
    /// Instances started, the first included.
    pub starts: u64,
    /// Direct methods invoked (answered, timed out or refused).
    pub methods: u64,
    /// Linear memory of its current instance, in bytes (0 while it has none).
    pub memory_bytes: u64,
    /// Log records (`log.log`, stdout and stderr lines) dropped because the module logged
    /// more than its rate.
    pub logs_suppressed: u64,
    /// Uses of the network it was refused: HTTP requests outside `allowed-hosts`, sockets
    /// outside `connect` and `listen`.
    pub network_denied: u64,
    /// When its current (or last) instance started.
    #[serde(serialize_with = "rfc3339")]
    pub last_start: Option<SystemTime>,
    /// When its last instance ended.
    #[serde(serialize_with = "rfc3339")]
    pub last_exit: Option<SystemTime>,
    /// The latest error, if any.
    pub last_error: Option<String>,
    /// The configuration the module runs with (deployment config overlaid with the desired
    /// configuration it accepted).
    pub config: serde_json::Value,
    /// What an Azure IoT Operations operator recorded through its `metrics` import.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operator_metrics: Vec<OperatorSeries>,
}

/// `error` as one line of at most [`MAX_ERROR_LEN`] bytes: status displays show one line per
/// module, and a guest's refusal may hold newlines.
fn one_line(error: &str) -> String {
    let line = error
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    truncate(&line, MAX_ERROR_LEN).to_string()
}

fn rfc3339<S: serde::Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => s.serialize_str(&humantime::format_rfc3339_millis(*time).to_string()),
        None => s.serialize_none(),
    }
}

pub(crate) struct ModuleStats {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub send_errors: AtomicU64,
    pub call_errors: AtomicU64,
    pub restarts: AtomicU64,
    pub logs_suppressed: AtomicU64,
    /// Refused uses of the network; the instances' HTTP hooks and socket policies count them.
    pub network_denied: Arc<AtomicU64>,
    pub starts: AtomicU64,
    pub methods: AtomicU64,
    /// Linear memory of the current instance; the instance's memory limiter keeps it.
    pub memory_bytes: Arc<AtomicU64>,
    /// How long each call into the module took (`init`, `on-message`, `on-tick`,
    /// `on-config`, `on-method`), kept across instances.
    pub call_seconds: Histogram,
    /// An operator's own metrics.
    operator_metrics: OperatorMetrics,
    health: Mutex<Health>,
    /// Bumped at every change of health, so that a reporter can wait for one.
    changes: watch::Sender<u64>,
}

struct Health {
    state: RuntimeStatus,
    sha256: String,
    last_start: Option<SystemTime>,
    last_exit: Option<SystemTime>,
    last_error: Option<String>,
    /// Whether its first start has come to an end: an instance up (`init` returned), or the
    /// start failed, or it is stopped as desired. What "the modules run" means for readiness.
    settled: bool,
}

impl ModuleStats {
    pub(crate) fn new(sha256: String, changes: watch::Sender<u64>) -> Self {
        ModuleStats {
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            call_errors: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            logs_suppressed: AtomicU64::new(0),
            network_denied: Arc::default(),
            starts: AtomicU64::new(0),
            methods: AtomicU64::new(0),
            memory_bytes: Arc::default(),
            call_seconds: Histogram::new(CALL_BUCKETS.iter().copied()),
            operator_metrics: OperatorMetrics::default(),
            health: Mutex::new(Health {
                state: RuntimeStatus::Running,
                sha256,
                last_start: None,
                last_exit: None,
                last_error: None,
                settled: false,
            }),
            changes,
        }
    }

    /// Changes the health and tells whoever watches.
    fn change(&self, f: impl FnOnce(&mut Health)) {
        f(&mut self.health.lock().unwrap_or_else(|e| e.into_inner()));
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// An instance of the binary `sha256` is being started.
    pub(crate) fn starting(&self, sha256: &str) {
        self.starts.fetch_add(1, Ordering::Relaxed);
        // A new instance: the old one's memory is gone (its limiter counts from 0 again).
        self.memory_bytes.store(0, Ordering::Relaxed);
        self.change(|h| {
            h.state = RuntimeStatus::Running;
            h.sha256 = sha256.to_string();
            h.last_start = Some(SystemTime::now());
        });
    }

    /// The instance started: `init` returned.
    pub(crate) fn up(&self) {
        self.change(|h| h.settled = true);
    }

    /// Whether the module's first start has come to an end (see [`Health::settled`]).
    pub(crate) fn settled(&self) -> bool {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .settled
    }

    /// The instance ended; `state` says what comes next (`error` why, if it failed).
    pub(crate) fn exited(&self, state: RuntimeStatus, error: Option<&str>) {
        self.memory_bytes.store(0, Ordering::Relaxed);
        if error.is_some() {
            self.call_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.change(|h| {
            h.settled = true;
            h.state = state;
            h.last_exit = Some(SystemTime::now());
            if let Some(error) = error {
                h.last_error = Some(one_line(error));
            }
        });
    }

    /// The module answered a call with an error; it keeps running.
    pub(crate) fn call_refused(&self, error: &str) {
        self.call_errors.fetch_add(1, Ordering::Relaxed);
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error = Some(one_line(error));
    }

    /// A call into the module took `elapsed`.
    pub(crate) fn called(&self, elapsed: Duration) {
        self.call_seconds.observe(elapsed.as_secs_f64());
    }

    /// An operator recorded `metric` (see [`OperatorMetrics::record`]).
    pub(crate) fn operator_metric(&self, metric: OperatorMetric) -> Result<(), String> {
        self.operator_metrics.record(metric)
    }

    /// A restart after a failure or on request.
    pub(crate) fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(
        &self,
        name: &str,
        desired: DesiredStatus,
        config: serde_json::Value,
        inbox: &crate::inbox::Inbox,
    ) -> ModuleStatus {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        ModuleStatus {
            name: name.to_string(),
            state: health.state,
            desired,
            sha256: health.sha256.clone(),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            errors: self.call_errors.load(Ordering::Relaxed)
                + self.send_errors.load(Ordering::Relaxed),
            queued: inbox.len() as u64,
            dropped: inbox.dropped(),
            restarts: self.restarts.load(Ordering::Relaxed),
            starts: self.starts.load(Ordering::Relaxed),
            methods: self.methods.load(Ordering::Relaxed),
            memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
            logs_suppressed: self.logs_suppressed.load(Ordering::Relaxed),
            network_denied: self.network_denied.load(Ordering::Relaxed),
            last_start: health.last_start,
            last_exit: health.last_exit,
            last_error: health.last_error.clone(),
            config,
            operator_metrics: self.operator_metrics.snapshot(),
        }
    }
}
