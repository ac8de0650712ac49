//! What every call into a guest shares, whatever it exports: the store with its limits and CPU
//! meter, the per-call budget, and how a call's result becomes an [`Outcome`].

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Engine, Store, UpdateDeadline};

use crate::host::{CpuMeter, HostState, LimitExceeded};

use super::ModuleCtx;

/// How a call into the module ended.
pub(crate) enum Outcome<T> {
    /// The module returned a value.
    Done(T),
    /// The module returned an error; it can keep running.
    Refused(String),
    /// The module trapped (or exceeded a limit, or exited with an error status); the instance
    /// must not be used again.
    Trapped(String),
    /// The module exited with status 0 (`wasi:cli/exit`): it stopped cleanly. The instance
    /// must not be used again.
    Exited,
}

impl<T> Outcome<T> {
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Done(value) => Outcome::Done(f(value)),
            Outcome::Refused(e) => Outcome::Refused(e),
            Outcome::Trapped(e) => Outcome::Trapped(e),
            Outcome::Exited => Outcome::Exited,
        }
    }
}

/// A store for a new instance of `ctx`'s module, with its memory limiter and CPU meter.
///
/// # Errors
/// The module's data dir cannot be prepared.
pub(crate) fn new_store(engine: &Engine, ctx: Arc<ModuleCtx>) -> Result<Store<HostState>, String> {
    let state =
        HostState::new(ctx).map_err(|e| format!("cannot prepare the module's data dir: {e}"))?;
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    // Every exit to the host (host calls and wasmtime's libcalls, the epoch check included)
    // stops the CPU meter and every return to guest code starts it: waiting is not charged.
    store.call_hook(|mut store, hook| {
        let cpu = &mut store.data_mut().cpu;
        match hook.entering_host() {
            true => cpu.leave_wasm(Instant::now()),
            false => cpu.enter_wasm(Instant::now()),
        }
        Ok(())
    });
    // Each epoch tick in guest code: over a per-call budget traps; over a rate sleeps until
    // the rate paid the excess back; else let other modules run.
    store.epoch_deadline_callback(|mut store| {
        let cpu = &mut store.data_mut().cpu;
        if let Some(limit) = cpu.exceeded() {
            return Err(limit.into());
        }
        Ok(match cpu.throttle(Instant::now()) {
            Some(sleep) => UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(sleep))),
            None => UpdateDeadline::Yield(1),
        })
    });
    Ok(store)
}

/// A store for the instance a long-running module's `run` is called in: as [`new_store`],
/// with the CPU limit as a rate (`cpu-ms-per-second`) instead of per call.
///
/// # Errors
/// As [`new_store`].
pub(crate) fn new_service_store(
    engine: &Engine,
    ctx: Arc<ModuleCtx>,
) -> Result<Store<HostState>, String> {
    let rate = ctx.spec().cpu_ms_per_second;
    let mut store = new_store(engine, ctx)?;
    store.data_mut().cpu = CpuMeter::rate(rate, Instant::now());
    Ok(store)
}

/// Every call gets the full CPU budget, and what ended the last one is forgotten.
pub(crate) fn begin_call(store: &mut Store<HostState>) {
    let state = store.data_mut();
    state.cpu.begin_call();
    state.limits.begin_call();
    state.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    store.set_epoch_deadline(1);
}

/// The outcome of a call that returned `result`.
pub(crate) fn outcome<T>(
    result: wasmtime::Result<Result<T, String>>,
    state: &HostState,
) -> Outcome<T> {
    match result {
        Ok(Ok(value)) => Outcome::Done(value),
        Ok(Err(refusal)) => Outcome::Refused(refusal),
        Err(trap) => trapped(&trap, state),
    }
}

/// A call that ended in an error: a clean exit (`exit(0)`), or a failure.
pub(crate) fn trapped<T>(error: &wasmtime::Error, state: &HostState) -> Outcome<T> {
    if error.downcast_ref::<wasmtime_wasi::I32Exit>().is_none() {
        // The whole story (wasm backtrace, error chain) for the log; one line for status.
        tracing::warn!("trap: {error:?}");
    }
    trapped_quietly(error, state)
}

/// [`trapped`] without its log record, for a caller that rate-limits its own: the HTTP
/// trigger, whose traps come as fast as clients send requests.
pub(crate) fn trapped_quietly<T>(error: &wasmtime::Error, state: &HostState) -> Outcome<T> {
    match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        Some(wasmtime_wasi::I32Exit(0)) => Outcome::Exited,
        Some(wasmtime_wasi::I32Exit(status)) => {
            Outcome::Trapped(format!("the module exited with status {status}"))
        }
        None => Outcome::Trapped(cause(error, state)),
    }
}

/// One line naming why a call trapped: the limit it hit, the guest's panic (from its stderr),
/// the memory it was refused (a guest refused memory aborts, which shows only as
/// `unreachable`), or else the first line of the error without wasmtime's backtrace.
fn cause(error: &wasmtime::Error, state: &HostState) -> String {
    if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
        return limit.to_string();
    }
    if let Some(panic) = state
        .panic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
    {
        return panic;
    }
    if let Some(limit) = state.limits.exceeded() {
        return limit.to_string();
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    // wasmtime adds the backtrace as a context of the error: the chain's other links name it.
    let backtrace = error
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(ToString::to_string);
    let mut parts: Vec<String> = Vec::new();
    for e in error.chain() {
        if backtrace.as_deref() == Some(e.to_string().as_str()) {
            continue;
        }
        let line = e.to_string().lines().next().unwrap_or_default().to_string();
        if !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
    }
    parts.join(": ")
}
