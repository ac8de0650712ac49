//! A token bucket for things a module can make the host repeat without bound: its log records
//! (`log.log`, stdout, stderr) and the host's warnings about it (its [`Denials`]). What
//! the bucket refuses is counted, and the next record that passes says how many were dropped,
//! so a flood costs the log one line per refill instead of its whole volume.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records a module may log in a burst, and then per second.
pub(crate) const LOG_BURST: u32 = 200;
pub(crate) const LOG_PER_SECOND: u32 = 20;

/// Denied-request warnings of one module in a burst, and then per minute: the first ones say
/// what is wrong; repeating it every request says nothing more.
pub(crate) const DENIAL_BURST: u32 = 5;
pub(crate) const DENIALS_PER_MINUTE: u32 = 6;

/// A token bucket: `burst` tokens, refilled at a steady rate. Shared by the threads that log
/// for one module (its store's calls and its stdio writer), hence the mutex.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    burst: f64,
    /// Time to earn one token.
    refill: Duration,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// Refused since the last record that passed.
    suppressed: u64,
}

/// What [`RateLimiter::check`] says about one record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it; `suppressed` records were dropped since the last one that passed (log that
    /// first, when it is not 0).
    Pass { suppressed: u64 },
    /// Drop it (it is counted).
    Suppress,
}

impl RateLimiter {
    /// A bucket of `burst` tokens refilled with `count` tokens every `per`.
    pub(crate) fn new(burst: u32, count: u32, per: Duration) -> Self {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            refill: per / count.max(1),
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst.max(1)),
                updated: Instant::now(),
                suppressed: 0,
            }),
        }
    }

    /// The limiter of a module's log records.
    pub(crate) fn for_logs() -> Self {
        Self::new(LOG_BURST, LOG_PER_SECOND, Duration::from_secs(1))
    }

    /// The limiter of the host's warnings about a module's denied HTTP requests.
    pub(crate) fn for_denials() -> Self {
        Self::new(DENIAL_BURST, DENIALS_PER_MINUTE, Duration::from_secs(60))
    }

    /// Runs `log` if a record may be logged now, after `note(n)` when `n` records were dropped
    /// since the last one that passed. Returns whether `log` ran.
    pub(crate) fn gate(&self, note: impl FnOnce(u64), log: impl FnOnce()) -> bool {
        match self.check() {
            Verdict::Pass { suppressed } => {
                if suppressed > 0 {
                    note(suppressed);
                }
                log();
                true
            }
            Verdict::Suppress => false,
        }
    }

    /// Takes a token for one record, if there is one.
    pub(crate) fn check(&self) -> Verdict {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Verdict {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let earned =
            now.saturating_duration_since(bucket.updated).as_secs_f64() / self.refill.as_secs_f64();
        bucket.tokens = (bucket.tokens + earned).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Pass {
                suppressed: std::mem::take(&mut bucket.suppressed),
            }
        } else {
            bucket.suppressed += 1;
            Verdict::Suppress
        }
    }
}

/// A module's refused uses of the network (HTTP requests outside `allowed-hosts`, sockets
/// outside its grants or limit): each is counted (`network-denied`) and warned about at the
/// denial rate. One per module, shared by its instances' HTTP hooks and socket policies.
#[derive(Debug)]
pub(crate) struct Denials {
    module: String,
    warnings: RateLimiter,
    count: Arc<AtomicU64>,
}

impl Denials {
    pub(crate) fn new(module: &str, count: Arc<AtomicU64>) -> Self {
        Denials {
            module: module.to_string(),
            warnings: RateLimiter::for_denials(),
            count,
        }
    }

    /// Counts one refusal and, if the rate allows, runs `warn` with the module's name (after a
    /// line saying how many `what` were denied unlogged since the last warning).
    pub(crate) fn deny(&self, what: &str, warn: impl FnOnce(&str)) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let module = self.module.as_str();
        self.warnings.gate(
            |n| tracing::warn!(module = %module, "{n} more {what} were denied"),
            || warn(module),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_one_record_per_refill_which_counts_the_dropped() {
        let limiter = RateLimiter::new(3, 10, Duration::from_secs(1));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at(start), Verdict::Pass { suppressed: 0 });
        }
        for _ in 0..1000 {
            assert_eq!(limiter.check_at(start), Verdict::Suppress);
        }
        // 100 ms earns one token: one record passes and carries the count.
        let later = start + Duration::from_millis(100);
        assert_eq!(limiter.check_at(later), Verdict::Pass { suppressed: 1000 });
        assert_eq!(limiter.check_at(later), Verdict::Suppress);
        // A long quiet time refills the burst, not more.
        let quiet = later + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(matches!(limiter.check_at(quiet), Verdict::Pass { .. }));
        }
        assert_eq!(limiter.check_at(quiet), Verdict::Suppress);
    }
}
