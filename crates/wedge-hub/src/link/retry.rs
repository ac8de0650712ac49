//! When to connect again, as an I/O-free policy: failures are told apart ([`LinkError`]) and
//! each kind waits differently.
//!
//! - The far end is not reachable (connection refused, no route, DNS, TCP/TLS timeout, the
//!   connection lost): a cheap TCP connect to the endpoint (no TLS, no MQTT) about every second
//!   with jitter, and the full connect as soon as one succeeds. A device learns within a second
//!   that the hub is back while sending one SYN a second while it is not.
//! - The far end refuses us (CONNACK refused, TLS certificate rejected, an expired token) or
//!   throttles (CONNACK "server unavailable"): exponential backoff from 1 s to 2 min with
//!   jitter, so a fleet does not hammer a hub that just came back, nor a bad credential the hub.
//!   So does a full connect that fails although the probe reached the endpoint (a load balancer
//!   taking TCP for a hub that is down must not turn the probe into a connect storm).
//! - A connection that was up for a while and ended is tried again at once; one that ended
//!   within [`STABLE`] counts as a failure, so a broker that accepts and drops cannot make the
//!   link spin.

use std::time::Duration;

use rumqttc::{ConnectReturnCode, ConnectionError};

/// Backoff after the first refusal, doubled after each further one.
pub(super) const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest backoff: after the first minute, at most about one attempt every two minutes.
pub(super) const BACKOFF_CAP: Duration = Duration::from_secs(120);
/// Reachability probes while unreachable: every `PROBE_MIN` to `PROBE_MAX` (uniform jitter, so
/// a fleet spreads over the interval); the slowest a return is noticed is `PROBE_MAX`.
pub(super) const PROBE_MIN: Duration = Duration::from_millis(600);
pub(super) const PROBE_MAX: Duration = Duration::from_millis(1000);
/// How long one probe may take.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// A connection up at least this long was healthy: its end is retried at once and clears the
/// backoff.
pub(super) const STABLE: Duration = Duration::from_secs(1);

/// What kind of failure ended (or prevented) a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The far end is not reachable.
    Unreachable,
    /// The far end refuses us.
    Refused,
    /// The far end asks us to come back later.
    Throttled,
}

/// Why the link is not connected, typed until `wedge status` prints it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct LinkError {
    pub(crate) kind: FailureKind,
    /// In words, never including a password.
    pub(crate) message: String,
}

impl LinkError {
    pub(crate) fn unreachable(message: impl Into<String>) -> Self {
        LinkError {
            kind: FailureKind::Unreachable,
            message: message.into(),
        }
    }

    pub(crate) fn refused(message: impl Into<String>) -> Self {
        LinkError {
            kind: FailureKind::Refused,
            message: message.into(),
        }
    }

    /// Classifies one of rumqttc's connection errors.
    pub(crate) fn from_connection(error: &ConnectionError) -> Self {
        use ConnectReturnCode as Code;
        match error {
            ConnectionError::ConnectionRefused(Code::ServiceUnavailable) => LinkError {
                kind: FailureKind::Throttled,
                message: "the broker refused the connection: server unavailable (throttled)".into(),
            },
            ConnectionError::ConnectionRefused(code) => {
                let reason = match code {
                    Code::BadUserNamePassword => "bad user name or password",
                    Code::NotAuthorized => "not authorized",
                    Code::BadClientId => "client id refused",
                    Code::RefusedProtocolVersion => "protocol version refused",
                    Code::ServiceUnavailable | Code::Success => "unexpected return code",
                };
                LinkError::refused(format!(
                    "the broker refused the connection: {reason} (check the credentials)"
                ))
            }
            // A TLS failure below TLS (reset, timeout) is the network; anything TLS itself
            // says (certificate unknown or expired, handshake alert) is the far end refusing.
            ConnectionError::Tls(rumqttc::TlsError::Io(e)) => {
                LinkError::unreachable(format!("TLS: {e}"))
            }
            ConnectionError::Tls(e) => LinkError::refused(format!("TLS: {e}")),
            ConnectionError::NotConnAck(packet) => LinkError::refused(format!(
                "the far end does not speak MQTT (answered CONNECT with {packet:?})"
            )),
            // I/O errors (refused, reset, no route, DNS), timeouts and lost connections.
            other => LinkError::unreachable(other.to_string()),
        }
    }
}

/// What the link does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Connect again now.
    Now,
    /// Probe reachability; connect when a probe succeeds.
    Probe,
    /// Wait this long, then connect.
    After(Duration),
}

/// The policy's state: consecutive failures that count for the backoff, and whether a probe
/// found the endpoint reachable since the last connect attempt.
#[derive(Debug, Default)]
pub(super) struct Retry {
    backoff_failures: u32,
    probe_succeeded: bool,
}

impl Retry {
    /// A connection ended: after `up_for` connected (`None`: it never got its CONNACK), with
    /// `error`. `jitter` is a random number in `[0, 1)`.
    pub(super) fn failed(
        &mut self,
        error: &LinkError,
        up_for: Option<Duration>,
        jitter: f64,
    ) -> Next {
        let probed = std::mem::take(&mut self.probe_succeeded);
        if up_for.is_some_and(|up| up >= STABLE) {
            self.backoff_failures = 0;
            return Next::Now;
        }
        if error.kind == FailureKind::Unreachable && up_for.is_none() && !probed {
            return Next::Probe;
        }
        let delay = backoff(self.backoff_failures);
        self.backoff_failures = self.backoff_failures.saturating_add(1);
        Next::After(delay + delay.mul_f64(jitter / 4.0))
    }

    /// The connection lasted (credentials renewed by reconnecting): start afresh.
    pub(super) fn renewed(&mut self) {
        *self = Retry::default();
    }

    /// A probe reached the endpoint; the connect attempt follows.
    pub(super) fn probe_succeeded(&mut self) {
        self.probe_succeeded = true;
    }

    /// Consecutive failures counted for the backoff.
    pub(super) fn failures(&self) -> u32 {
        self.backoff_failures
    }
}

/// The delay after `failures` counted failures: [`BACKOFF_START`] doubled, at most
/// [`BACKOFF_CAP`].
fn backoff(failures: u32) -> Duration {
    BACKOFF_START
        .saturating_mul(1 << failures.min(16))
        .min(BACKOFF_CAP)
}

/// The next probe's delay, for `jitter` in `[0, 1)`.
pub(super) fn probe_delay(jitter: f64) -> Duration {
    PROBE_MIN + (PROBE_MAX - PROBE_MIN).mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> LinkError {
        LinkError::from_connection(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized,
        ))
    }

    fn unreachable() -> LinkError {
        LinkError::from_connection(&ConnectionError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    }

    #[test]
    fn errors_are_told_apart() {
        assert_eq!(refused().kind, FailureKind::Refused);
        assert!(refused().message.contains("not authorized"));
        assert_eq!(unreachable().kind, FailureKind::Unreachable);
        let throttled = LinkError::from_connection(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::ServiceUnavailable,
        ));
        assert_eq!(throttled.kind, FailureKind::Throttled);
        assert_eq!(
            LinkError::from_connection(&ConnectionError::NetworkTimeout).kind,
            FailureKind::Unreachable
        );
    }

    #[test]
    fn refusals_back_off_exponentially_up_to_the_cap() {
        let mut retry = Retry::default();
        let delays: Vec<Next> = (0..10)
            .map(|_| retry.failed(&refused(), None, 0.0))
            .collect();
        let secs = [1, 2, 4, 8, 16, 32, 64, 120, 120, 120];
        let expected: Vec<Next> = secs
            .iter()
            .map(|&s| Next::After(Duration::from_secs(s)))
            .collect();
        assert_eq!(delays, expected);
        // Jitter adds up to a quarter.
        assert_eq!(
            Retry::default().failed(&refused(), None, 0.999),
            Next::After(Duration::from_secs(1).mul_f64(1.0 + 0.999 / 4.0))
        );
    }

    #[test]
    fn unreachable_probes_and_a_reachable_endpoint_that_fails_backs_off() {
        let mut retry = Retry::default();
        assert_eq!(retry.failed(&unreachable(), None, 0.5), Next::Probe);
        assert_eq!(retry.failed(&unreachable(), None, 0.5), Next::Probe);
        retry.probe_succeeded();
        // The probe got through but the connect did not: the endpoint takes TCP and nothing
        // more, so back off rather than connect every second.
        assert_eq!(
            retry.failed(&unreachable(), None, 0.0),
            Next::After(Duration::from_secs(1))
        );
        assert_eq!(retry.failed(&unreachable(), None, 0.5), Next::Probe);
    }

    #[test]
    fn a_healthy_connection_is_retried_at_once_and_a_flapping_one_backs_off() {
        let mut retry = Retry::default();
        for _ in 0..3 {
            retry.failed(&refused(), None, 0.0);
        }
        assert_eq!(
            retry.failed(&unreachable(), Some(Duration::from_secs(30)), 0.0),
            Next::Now
        );
        assert_eq!(
            retry.failures(),
            0,
            "a healthy connection clears the backoff"
        );
        let flap = Some(Duration::from_millis(100));
        assert_eq!(
            retry.failed(&unreachable(), flap, 0.0),
            Next::After(Duration::from_secs(1))
        );
        assert_eq!(
            retry.failed(&unreachable(), flap, 0.0),
            Next::After(Duration::from_secs(2))
        );
    }

    #[test]
    fn probes_come_about_every_second() {
        assert_eq!(probe_delay(0.0), PROBE_MIN);
        assert!(probe_delay(0.999) < PROBE_MAX);
    }
}
