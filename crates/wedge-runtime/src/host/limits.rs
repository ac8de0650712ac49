//! The limits of one store and which one a call ran into: memory (wasmtime's [`StoreLimits`],
//! remembering that a growth was refused, since the guest then only traps with `unreachable`)
//! and CPU per call or per second of wall time, counting time in guest code only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Most instances, tables and memories one module may create. A Rust component has a handful.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;

/// A limit a call ran into: the cause of its trap, in the words `wedge status` shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LimitExceeded {
    /// `cpu-ms-per-call`.
    #[error("CPU limit of {ms} ms per call exceeded")]
    Cpu { ms: u64 },
    /// `memory-mb`.
    #[error("memory limit of {mib} MiB reached")]
    Memory { mib: u64 },
}

/// wasmtime's store limits, plus whether this call was refused memory.
pub(crate) struct MemoryLimits {
    inner: StoreLimits,
    mib: u64,
    bytes: usize,
    refused: bool,
    /// Bytes of linear memory the module's instances have (their memories' sizes added up),
    /// for metrics: a memory only grows, so the growths the limiter allowed are its size.
    used: Arc<AtomicU64>,
    /// This instance's part of `used`, taken back when it is dropped (a long-running module's
    /// `run` instance is replaced while the main one lives on).
    grown: u64,
}

impl Drop for MemoryLimits {
    fn drop(&mut self) {
        let grown = self.grown;
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(grown))
            });
    }
}

impl MemoryLimits {
    pub(crate) fn new(mib: u64, used: Arc<AtomicU64>) -> Self {
        let bytes = usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        MemoryLimits {
            inner: StoreLimitsBuilder::new()
                .memory_size(bytes)
                .instances(MAX_INSTANCES)
                .tables(MAX_TABLES)
                .memories(MAX_MEMORIES)
                .build(),
            mib,
            bytes,
            refused: false,
            used,
            grown: 0,
        }
    }

    /// A new call starts: what the last one was refused does not concern it.
    pub(crate) fn begin_call(&mut self) {
        self.refused = false;
    }

    /// The memory limit, if this call was refused memory because of it.
    pub(crate) fn exceeded(&self) -> Option<LimitExceeded> {
        self.refused
            .then_some(LimitExceeded::Memory { mib: self.mib })
    }
}

impl ResourceLimiter for MemoryLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if !allowed && desired > self.bytes {
            self.refused = true;
        }
        if allowed {
            let grown = desired.saturating_sub(current) as u64;
            self.grown += grown;
            self.used.fetch_add(grown, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The guest-code time of a module's calls, against its CPU limit. The store's call hook
/// brackets every host call (and wasmtime's own libcalls, the epoch check among them) with
/// [`CpuMeter::leave_wasm`] and [`CpuMeter::enter_wasm`], so time blocked in a host call (an
/// fsync'd send, a state write, an HTTP request, a `poll`) or waiting for the scheduler after a
/// yield is not charged.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    budget: Budget,
    used: Duration,
    /// When the guest last entered (or went back to) its code, while it runs it.
    running_since: Option<Instant>,
}

/// What the guest-code time is measured against.
#[derive(Debug)]
enum Budget {
    /// `cpu-ms-per-call`: each call may use `limit`; more traps.
    PerCall { limit: Duration },
    /// `cpu-ms-per-second` (a long-running module's `run`): a token bucket refilled by
    /// `per_second` for every second of wall time, holding at most one second's worth; a guest
    /// that overdraws it is put to sleep until it is back to zero, not stopped.
    Rate {
        per_second: Duration,
        /// Guest time still allowed, `used` not yet deducted: `balance - used`.
        balance: Duration,
        refilled_at: Instant,
    },
}

impl CpuMeter {
    /// A meter of `limit_ms` per call.
    pub(crate) fn new(limit_ms: u64) -> Self {
        CpuMeter {
            budget: Budget::PerCall {
                limit: Duration::from_millis(limit_ms.max(1)),
            },
            used: Duration::ZERO,
            running_since: None,
        }
    }

    /// A meter of `ms_per_second` of guest time per second of wall time, with a full bucket.
    pub(crate) fn rate(ms_per_second: u64, now: Instant) -> Self {
        let per_second = Duration::from_millis(ms_per_second.clamp(1, 1000));
        CpuMeter {
            budget: Budget::Rate {
                per_second,
                balance: per_second,
                refilled_at: now,
            },
            used: Duration::ZERO,
            running_since: None,
        }
    }

    /// A new call gets the whole budget (per call; a rate carries on).
    pub(crate) fn begin_call(&mut self) {
        if let Budget::PerCall { .. } = self.budget {
            self.used = Duration::ZERO;
        }
    }

    pub(crate) fn enter_wasm(&mut self, now: Instant) {
        self.running_since = Some(now);
    }

    pub(crate) fn leave_wasm(&mut self, now: Instant) {
        if let Some(since) = self.running_since.take() {
            self.used += now.saturating_duration_since(since);
        }
    }

    /// The CPU limit, if the current call has used more than its budget (never for a rate,
    /// which [`CpuMeter::throttle`] enforces instead).
    pub(crate) fn exceeded(&self) -> Option<LimitExceeded> {
        match self.budget {
            Budget::PerCall { limit } => (self.used > limit).then_some(LimitExceeded::Cpu {
                ms: limit.as_millis() as u64,
            }),
            Budget::Rate { .. } => None,
        }
    }

    /// For a rate: how long the guest must sleep for the bucket to be back at zero, if it
    /// overdrew it. Settles what it used so far against what `now` refilled.
    pub(crate) fn throttle(&mut self, now: Instant) -> Option<Duration> {
        let Budget::Rate {
            per_second,
            balance,
            refilled_at,
        } = &mut self.budget
        else {
            return None;
        };
        let elapsed = now.saturating_duration_since(*refilled_at);
        *refilled_at = now;
        let refill = per_second.mul_f64(elapsed.as_secs_f64().min(1.0));
        let available = (*balance + refill).min(*per_second);
        let used = std::mem::take(&mut self.used);
        match available.checked_sub(used) {
            Some(left) => {
                *balance = left;
                None
            }
            None => {
                // Overdrawn: sleep until the refill covers the debt, and start from zero then.
                let debt = used - available;
                *balance = Duration::ZERO;
                let sleep = debt.div_f64(per_second.as_secs_f64());
                *refilled_at = now + sleep;
                Some(sleep)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_time_in_guest_code_is_charged() {
        let mut cpu = CpuMeter::new(100);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        cpu.begin_call();
        // 60 ms in wasm, 10 s in a host call, 30 ms in wasm: 90 ms used.
        cpu.enter_wasm(t0);
        cpu.leave_wasm(ms(60));
        cpu.enter_wasm(ms(10_060));
        cpu.leave_wasm(ms(10_090));
        assert_eq!(cpu.exceeded(), None);
        cpu.enter_wasm(ms(20_000));
        cpu.leave_wasm(ms(20_011));
        assert_eq!(cpu.exceeded(), Some(LimitExceeded::Cpu { ms: 100 }));
        assert_eq!(
            cpu.exceeded().unwrap().to_string(),
            "CPU limit of 100 ms per call exceeded"
        );
        // The next call starts from nothing.
        cpu.begin_call();
        assert_eq!(cpu.exceeded(), None);
    }

    #[test]
    fn a_rate_puts_an_overdrawn_guest_to_sleep_until_it_is_paid_back() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut cpu = CpuMeter::rate(100, t0);
        // A full bucket: 100 ms of guest time pass without a sleep, and nothing ever traps.
        cpu.enter_wasm(t0);
        cpu.leave_wasm(ms(90));
        assert_eq!(cpu.throttle(ms(90)), None);
        cpu.begin_call();
        // The bucket holds one second's worth, so 10 ms are left; 4.9 ms come back over the next
        // 49 ms of guest time, which leave 34.1 ms of debt: 341 ms of sleep at 100 ms/s.
        cpu.enter_wasm(ms(90));
        cpu.leave_wasm(ms(139));
        let sleep = cpu.throttle(ms(139)).expect("overdrawn");
        assert!(
            sleep.abs_diff(Duration::from_millis(341)) < Duration::from_millis(1),
            "{sleep:?}"
        );
        assert_eq!(cpu.exceeded(), None);
        // Asleep is not charged, and waking starts from an empty bucket: 10 ms later there is
        // 1 ms to spend.
        let woke = 139 + sleep.as_millis() as u64;
        cpu.enter_wasm(ms(woke + 10));
        cpu.leave_wasm(ms(woke + 11));
        assert_eq!(cpu.throttle(ms(woke + 11)), None);
        // An idle spell refills at most one second's worth.
        cpu.enter_wasm(ms(woke + 60_000));
        cpu.leave_wasm(ms(woke + 60_100));
        assert_eq!(cpu.throttle(ms(woke + 60_100)), None);
        cpu.enter_wasm(ms(woke + 60_100));
        cpu.leave_wasm(ms(woke + 60_120));
        assert!(cpu.throttle(ms(woke + 60_120)).is_some());
    }
}
