//! The device twin as an I/O-free state machine: inputs in (connected, disconnected, a received
//! twin message, a reported patch, the clock), [`Action`]s out (publish this, apply that
//! configuration, log this), in the manner of rumqttc's `state.rs`.
//!
//! Desired properties (Microsoft page "Communicate with an IoT hub using the MQTT protocol",
//! sections "Retrieving a device twin's properties" and "Receiving desired properties update
//! notifications"):
//! - after connecting (and subscribing to
//!   [`TWIN_RESPONSE_FILTER`](super::topics::TWIN_RESPONSE_FILTER) and
//!   [`TWIN_DESIRED_FILTER`](super::topics::TWIN_DESIRED_FILTER)),
//!   GET the whole document with a fresh `$rid`: the page's "device reconnection flow", since the
//!   hub sends patches only while the device is connected;
//! - a patch carries the desired `$version` it produces; it is applied (RFC 7396 merge) only on
//!   top of the version just before it. Older ones are stale and ignored; a newer one means some
//!   were missed, so it is kept and the document is fetched again;
//! - a GET answer replaces the document; patches kept meanwhile that are newer are then applied
//!   in order, older ones dropped.
//!
//! What wedge reads from the desired section is its `wedge` member, the desired deployment
//! ([`Action::Desired`]).
//!
//! Reported properties ("Update device twin's reported properties"): one PATCH in flight at a
//! time; patches reported meanwhile are composed into one where a single merge patch can say the
//! same (up to 32 KiB, IoT Hub's limit for the reported section), queued otherwise (at most 16;
//! past that, and over 32 KiB, a report is refused to the reporter, see `twin/reported.rs`).
//! A 2xx answer (the hub sends 204) completes it; 429 and 5xx (`az_iot_status_retriable` in
//! `azure-sdk-for-c` `az_iot_common.h`) and a timeout retry it with exponential backoff; any
//! other status (400 malformed, 413 too large, …) drops it, since sending it again cannot
//! succeed.
//!
//! Acknowledging a desired value follows the IoT Plug and Play convention as
//! `azure-sdk-for-c` `az_iot_hub_client_properties_writer_begin_response_status` writes it:
//! `{"value": …, "ac": <status>, "av": <desired $version>, "ad": "<description>"}` ([`ack`]).

mod reported;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wedge_core::json::merge_patch;

use super::topics::{Incoming, twin_get_topic, twin_reported_topic};
use reported::ReportQueue;
pub use reported::{ReportError, ack, compose, config_ack_patch, properties_patch};

/// Timeouts and retry pacing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinConfig {
    /// How long to wait for a GET answer: 60 s, `azure-iot-sdk-c`
    /// `ON_DEMAND_GET_TWIN_REQUEST_TIMEOUT_SECS`.
    pub get_timeout: Duration,
    /// How long to wait for a reported PATCH answer: 300 s, `azure-iot-sdk-c`
    /// `TWIN_REPORT_UPDATE_TIMEOUT_SECS`.
    pub report_timeout: Duration,
    /// First retry delay after a failed request; doubled on each further failure.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Most out-of-order desired patches kept while waiting for a GET answer; past that they
    /// are dropped and the document fetched again.
    pub max_buffered_patches: usize,
    /// Most reported patches waiting to be sent (each up to 32 KiB; those reported meanwhile
    /// are composed into the last one where possible, so this is reached only while offline
    /// with patches that cannot be composed); past it a report is refused.
    pub max_queued_reports: usize,
}

impl Default for TwinConfig {
    fn default() -> Self {
        TwinConfig {
            get_timeout: Duration::from_secs(60),
            report_timeout: Duration::from_secs(300),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            max_buffered_patches: 32,
            max_queued_reports: 16,
        }
    }
}

/// What the transport or the host has to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish `payload` on `topic`.
    Publish {
        /// The topic.
        topic: String,
        /// The payload (empty for a GET).
        payload: Vec<u8>,
    },
    /// The desired deployment (`desired.wedge`) changed, or arrived for the first time, at
    /// desired `$version` `version`.
    Desired {
        /// The desired `$version` it is at.
        version: u64,
        /// `desired.wedge` (`{}` when absent).
        wedge: Value,
    },
    /// Something to log: a failed request, a malformed document.
    Warn(String),
}

#[derive(Debug, Clone)]
struct Request {
    rid: String,
    sent_at: Instant,
}

/// The twin state machine. See the module documentation.
#[derive(Debug)]
pub struct Twin {
    config: TwinConfig,
    connected: bool,
    next_rid: u64,

    /// The desired section, `$version` included, once a GET has answered.
    desired: Option<Value>,
    version: u64,
    get: Option<Request>,
    get_retry_at: Option<Instant>,
    get_failures: u32,
    /// A GET answer may predate patches dropped from a full buffer: fetch again after it.
    get_again: bool,
    buffered: BTreeMap<u64, Value>,
    emitted: Option<Value>,

    queue: ReportQueue,
    in_flight: Option<(Request, Value)>,
    report_retry_at: Option<Instant>,
    report_failures: u32,
    reported_version: Option<u64>,
}

impl Default for Twin {
    fn default() -> Self {
        Twin::new(TwinConfig::default())
    }
}

impl Twin {
    /// As [`Twin::new`], numbering requests from `first_rid`. With a persistent session the
    /// hub may deliver answers to an earlier process's requests after a restart; a random start
    /// keeps them from matching this one's.
    pub fn starting_at(config: TwinConfig, first_rid: u64) -> Self {
        Twin {
            next_rid: first_rid.max(1),
            ..Twin::new(config)
        }
    }

    /// A disconnected twin with no document yet.
    pub fn new(config: TwinConfig) -> Self {
        Twin {
            queue: ReportQueue::new(config.max_queued_reports),
            config,
            connected: false,
            next_rid: 1,
            desired: None,
            version: 0,
            get: None,
            get_retry_at: None,
            get_failures: 0,
            get_again: false,
            buffered: BTreeMap::new(),
            emitted: None,
            in_flight: None,
            report_retry_at: None,
            report_failures: 0,
            reported_version: None,
        }
    }

    /// The desired section as last known, `$version` included.
    pub fn desired(&self) -> Option<&Value> {
        self.desired.as_ref()
    }

    /// The desired `$version` as last known.
    pub fn desired_version(&self) -> Option<u64> {
        self.desired.as_ref().map(|_| self.version)
    }

    /// `desired.wedge`, the desired deployment (`{}` when absent).
    pub fn desired_wedge(&self) -> Value {
        self.desired
            .as_ref()
            .and_then(|d| d.get("wedge"))
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    /// The reported `$version` from the last GET or acknowledged PATCH.
    pub fn reported_version(&self) -> Option<u64> {
        self.reported_version
    }

    /// Whether reported patches are waiting or in flight.
    pub fn reports_pending(&self) -> bool {
        self.in_flight.is_some() || !self.queue.is_empty()
    }

    /// When [`Twin::tick`] next has something to do: a request timing out or a retry falling
    /// due.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.get
                .as_ref()
                .map(|get| get.sent_at + self.config.get_timeout),
            self.get_retry_at,
            self.in_flight
                .as_ref()
                .map(|(request, _)| request.sent_at + self.config.report_timeout),
            self.report_retry_at
                .filter(|_| self.in_flight.is_none() && !self.queue.is_empty()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The MQTT connection is up and the twin topics are subscribed: GET the document and send
    /// what is waiting to be reported. A patch that was in flight is sent again (a merge patch
    /// applied twice is applied once).
    pub fn on_connected(&mut self, now: Instant) -> Vec<Action> {
        self.connected = true;
        self.requeue_in_flight();
        self.get = None;
        self.get_retry_at = None;
        self.report_retry_at = None;
        let mut actions = Vec::new();
        self.send_get(now, &mut actions);
        self.pump(now, &mut actions);
        actions
    }

    /// The connection is gone: answers to requests in flight will not come.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.get = None;
        self.get_retry_at = None;
        self.requeue_in_flight();
    }

    /// Feeds a received message: twin responses and desired patches are handled, anything else
    /// is ignored.
    pub fn on_incoming(
        &mut self,
        incoming: &Incoming,
        payload: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        match incoming {
            Incoming::TwinResponse {
                status,
                rid,
                version,
            } => self.on_response(*status, rid, *version, payload, now),
            Incoming::DesiredPatch { version } => self.on_desired_patch(*version, payload, now),
            Incoming::MethodRequest { .. } | Incoming::C2d { .. } => Vec::new(),
        }
    }

    /// A `$iothub/twin/res/{status}/?$rid={rid}[&$version={version}]` message. Answers to
    /// requests this machine is not waiting for (sent before a reconnect, or timed out) are
    /// ignored.
    pub fn on_response(
        &mut self,
        status: u16,
        rid: &str,
        version: Option<u64>,
        body: &[u8],
        now: Instant,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.get.as_ref().is_some_and(|get| get.rid == rid) {
            self.get = None;
            self.on_get_response(status, body, now, &mut actions);
        } else if self
            .in_flight
            .as_ref()
            .is_some_and(|(request, _)| request.rid == rid)
        {
            self.on_report_response(status, version, now, &mut actions);
        }
        actions
    }

    /// A `$iothub/twin/PATCH/properties/desired/?$version={version}` message with its JSON
    /// body.
    pub fn on_desired_patch(&mut self, version: u64, body: &[u8], now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let patch = match serde_json::from_slice::<Value>(body) {
            Ok(patch @ Value::Object(_)) => patch,
            Ok(_) | Err(_) => {
                actions.push(Action::Warn(format!(
                    "desired patch $version {version} is not a JSON object; fetching the twin again"
                )));
                self.request_get(now, &mut actions);
                return actions;
            }
        };
        let waiting_for_document = self.desired.is_none() || self.get.is_some();
        if !waiting_for_document && version <= self.version {
            // Stale: already part of the document.
            return actions;
        }
        if !waiting_for_document && Some(version) == self.version.checked_add(1) {
            self.apply(version, &patch);
            self.drain_buffered();
            self.emit_if_changed(&mut actions);
            return actions;
        }
        // Waiting for a GET answer, or a gap: keep it for later.
        if self.buffered.len() >= self.config.max_buffered_patches
            && !self.buffered.contains_key(&version)
        {
            actions.push(Action::Warn(format!(
                "more than {} desired patches out of order; fetching the twin again",
                self.config.max_buffered_patches
            )));
            self.buffered.clear();
            if self.get.is_some() {
                self.get_again = true;
            }
        } else {
            self.buffered.insert(version, patch);
        }
        if !waiting_for_document {
            self.request_get(now, &mut actions);
        }
        actions
    }

    /// Queues `patch` (a JSON merge patch of the reported properties) and sends it when nothing
    /// else is in flight.
    ///
    /// # Errors
    /// [`ReportError`]: not an object, larger than IoT Hub takes, or too many waiting.
    pub fn report(&mut self, patch: Value, now: Instant) -> Result<Vec<Action>, ReportError> {
        self.queue.push(patch)?;
        let mut actions = Vec::new();
        self.pump(now, &mut actions);
        Ok(actions)
    }

    /// The clock: times out requests and sends what is due for a retry.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(get) = &self.get
            && now >= get.sent_at + self.config.get_timeout
        {
            actions.push(Action::Warn(format!(
                "twin GET $rid {} got no answer in {:?}; asking again",
                get.rid, self.config.get_timeout
            )));
            self.get = None;
            self.send_get(now, &mut actions);
        }
        if self.get_retry_at.is_some_and(|at| now >= at) {
            self.get_retry_at = None;
            self.send_get(now, &mut actions);
        }
        if let Some((request, _)) = &self.in_flight
            && now >= request.sent_at + self.config.report_timeout
        {
            actions.push(Action::Warn(format!(
                "reported patch $rid {} got no answer in {:?}; sending it again",
                request.rid, self.config.report_timeout
            )));
            self.requeue_in_flight();
            self.report_retry_at = None;
        }
        self.pump(now, &mut actions);
        actions
    }

    fn rid(&mut self) -> String {
        let rid = self.next_rid.to_string();
        self.next_rid = self.next_rid.wrapping_add(1).max(1);
        rid
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 1_u32 << failures.min(16);
        self.config
            .retry_min
            .saturating_mul(factor)
            .min(self.config.retry_max)
    }

    /// Sends a GET unless one is in flight or a retry is already scheduled.
    fn request_get(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.get.is_none() && self.get_retry_at.is_none() {
            self.send_get(now, actions);
        }
    }

    fn send_get(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if !self.connected {
            return;
        }
        let rid = self.rid();
        actions.push(Action::Publish {
            topic: twin_get_topic(&rid),
            payload: Vec::new(),
        });
        self.get = Some(Request { rid, sent_at: now });
    }

    fn on_get_response(
        &mut self,
        status: u16,
        body: &[u8],
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let parsed = if (200..300).contains(&status) {
            parse_document(body)
        } else {
            Err(format!("status {status}"))
        };
        let document = match parsed {
            Ok(document) => document,
            Err(why) => {
                let delay = self.backoff(self.get_failures);
                self.get_failures = self.get_failures.saturating_add(1);
                self.get_retry_at = Some(now + delay);
                actions.push(Action::Warn(format!(
                    "twin GET failed ({why}); retrying in {delay:?}"
                )));
                return;
            }
        };
        self.get_failures = 0;
        self.version = document.version;
        self.desired = Some(document.desired);
        if document.reported_version.is_some() {
            self.reported_version = document.reported_version;
        }
        // Versions come from the network: no `+ 1` that could overflow.
        self.buffered = match self.version.checked_add(1) {
            Some(next) => self.buffered.split_off(&next),
            None => BTreeMap::new(),
        };
        self.drain_buffered();
        self.emit_if_changed(actions);
        if !self.buffered.is_empty() || std::mem::take(&mut self.get_again) {
            self.send_get(now, actions);
        }
    }

    fn apply(&mut self, version: u64, patch: &Value) {
        let desired = self.desired.get_or_insert_with(|| json!({}));
        merge_patch(desired, patch);
        desired["$version"] = json!(version);
        self.version = version;
    }

    /// Applies kept patches that follow the current version without a gap.
    fn drain_buffered(&mut self) {
        while let Some(next) = self.version.checked_add(1)
            && let Some(patch) = self.buffered.remove(&next)
        {
            self.apply(next, &patch);
        }
    }

    fn emit_if_changed(&mut self, actions: &mut Vec<Action>) {
        let wedge = self.desired_wedge();
        if self.emitted.as_ref() != Some(&wedge) {
            self.emitted = Some(wedge.clone());
            actions.push(Action::Desired {
                version: self.version,
                wedge,
            });
        }
    }

    fn on_report_response(
        &mut self,
        status: u16,
        version: Option<u64>,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let Some((request, patch)) = self.in_flight.take() else {
            return;
        };
        if (200..300).contains(&status) {
            self.report_failures = 0;
            self.report_retry_at = None;
            if version.is_some() {
                self.reported_version = version;
            }
        } else if status == 429 || (500..600).contains(&status) {
            let delay = self.backoff(self.report_failures);
            self.report_failures = self.report_failures.saturating_add(1);
            self.report_retry_at = Some(now + delay);
            self.requeue(patch);
            actions.push(Action::Warn(format!(
                "reported patch $rid {} failed with status {status}; retrying in {delay:?}",
                request.rid
            )));
        } else {
            actions.push(Action::Warn(format!(
                "reported patch $rid {} refused with status {status}; dropped",
                request.rid
            )));
        }
        self.pump(now, actions);
    }

    /// Sends the next queued patch if connected, nothing is in flight and no retry is pending.
    fn pump(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if !self.connected
            || self.in_flight.is_some()
            || self.report_retry_at.is_some_and(|at| now < at)
        {
            return;
        }
        let Some(patch) = self.queue.pop_front() else {
            return;
        };
        self.report_retry_at = None;
        let rid = self.rid();
        actions.push(Action::Publish {
            topic: twin_reported_topic(&rid),
            payload: serde_json::to_vec(&patch).unwrap_or_default(),
        });
        self.in_flight = Some((Request { rid, sent_at: now }, patch));
    }

    fn requeue_in_flight(&mut self) {
        if let Some((_, patch)) = self.in_flight.take() {
            self.requeue(patch);
        }
    }

    /// Puts `patch` back before everything queued after it.
    fn requeue(&mut self, patch: Value) {
        self.queue.push_front(patch);
    }
}

struct Document {
    desired: Value,
    version: u64,
    reported_version: Option<u64>,
}

/// The body of a GET answer: `{"desired": {…, "$version": 12}, "reported": {…, "$version": 123}}`.
fn parse_document(body: &[u8]) -> Result<Document, String> {
    let document: Value =
        serde_json::from_slice(body).map_err(|e| format!("document is not JSON: {e}"))?;
    let desired = document
        .get("desired")
        .filter(|d| d.is_object())
        .ok_or("document has no `desired` object")?;
    let version = desired
        .get("$version")
        .and_then(Value::as_u64)
        .ok_or("`desired.$version` is missing or not a number")?;
    let reported_version = document
        .get("reported")
        .and_then(|r| r.get("$version"))
        .and_then(Value::as_u64);
    Ok(Document {
        desired: desired.clone(),
        version,
        reported_version,
    })
}

#[cfg(test)]
mod tests;
