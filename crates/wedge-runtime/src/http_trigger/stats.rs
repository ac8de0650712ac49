//! What a module's HTTP trigger counts: the guest's answers by class, the host's own refusals,
//! and requests in flight. Kept in the module's stats, across instances and servers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A snapshot of a module's HTTP trigger for status displays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HttpCounts {
    /// Requests being handled now.
    pub in_flight: u64,
    /// Answers of the guest with a 2xx status.
    pub ok: u64,
    /// Answers of the guest with a 1xx, 3xx or 4xx status.
    pub other: u64,
    /// Answers of the guest with a 5xx status.
    pub server_errors: u64,
    /// Requests refused with 413: a body over `http-body-kb`.
    pub too_large: u64,
    /// Requests refused with 503: `http-concurrency` requests were in flight.
    pub busy: u64,
    /// Requests answered 504 (or 408 while the body was still arriving): not answered within
    /// `http-timeout-ms`.
    pub timed_out: u64,
    /// Requests answered 500 because the handler trapped or returned no response.
    pub failed: u64,
    /// Why the trigger does not listen, when it cannot (the address is in use, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How one request ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The guest answered with this status.
    Answered(u16),
    TooLarge,
    Busy,
    TimedOut,
    Failed,
}

#[derive(Default)]
pub(crate) struct HttpStats {
    in_flight: AtomicU64,
    ok: AtomicU64,
    other: AtomicU64,
    server_errors: AtomicU64,
    too_large: AtomicU64,
    busy: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
    error: Mutex<Option<String>>,
}

impl HttpStats {
    pub(crate) fn count(&self, ending: Ending) {
        let counter = match ending {
            Ending::Answered(200..=299) => &self.ok,
            Ending::Answered(500..) => &self.server_errors,
            Ending::Answered(_) => &self.other,
            Ending::TooLarge => &self.too_large,
            Ending::Busy => &self.busy,
            Ending::TimedOut => &self.timed_out,
            Ending::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A request is being handled, until [`HttpStats::leave`].
    pub(crate) fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// The trigger cannot listen (`Some`), or listens again (`None`).
    pub(crate) fn set_error(&self, error: Option<String>) {
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Why the trigger does not listen, if it does not.
    pub(crate) fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn counts(&self) -> HttpCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        HttpCounts {
            in_flight: load(&self.in_flight),
            ok: load(&self.ok),
            other: load(&self.other),
            server_errors: load(&self.server_errors),
            too_large: load(&self.too_large),
            busy: load(&self.busy),
            timed_out: load(&self.timed_out),
            failed: load(&self.failed),
            error: self.error(),
        }
    }
}
