//! One instantiation of a module: its store and the typed calls into its exports.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Store, UpdateDeadline};

use crate::bindings::{EdgeModule, EdgeModulePre};
use crate::host::{HostState, LimitExceeded};
use wedge_core::Message;

use super::{MethodResult, ModuleCtx};

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

pub(crate) struct Instance {
    store: Store<HostState>,
    bindings: EdgeModule,
}

impl Instance {
    /// Instantiates the module and calls `init` with its active configuration.
    pub(crate) async fn start(
        pre: &EdgeModulePre<HostState>,
        ctx: Arc<ModuleCtx>,
    ) -> Outcome<Instance> {
        let state = match HostState::new(ctx.clone()) {
            Ok(state) => state,
            Err(e) => {
                return Outcome::Trapped(format!("cannot prepare the module's data dir: {e}"));
            }
        };
        let mut store = Store::new(pre.engine(), state);
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
        // Each epoch tick in guest code: over budget traps, else let other modules run.
        store.epoch_deadline_callback(|store| match store.data().cpu.exceeded() {
            Some(limit) => Err(limit.into()),
            None => Ok(UpdateDeadline::Yield(1)),
        });
        let bindings = match pre.instantiate_async(&mut store).await {
            Ok(bindings) => bindings,
            Err(e) => return trapped(&e, store.data()),
        };
        let mut instance = Instance { store, bindings };
        let config = ctx.config().to_string();
        instance.begin_call();
        let result = instance
            .bindings
            .wedge_edge_module()
            .call_init(&mut instance.store, &config)
            .await;
        match outcome(result, instance.store.data()) {
            Outcome::Refused(e) => Outcome::Refused(format!("init refused its configuration: {e}")),
            other => other.map(|()| instance),
        }
    }

    /// Every call gets the full CPU budget, and what ended the last one is forgotten.
    fn begin_call(&mut self) {
        let state = self.store.data_mut();
        state.cpu.begin_call();
        state.limits.begin_call();
        state.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.store.set_epoch_deadline(1);
    }

    pub(crate) async fn on_config(&mut self, config: &str) -> Outcome<()> {
        self.begin_call();
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_config(&mut self.store, config)
            .await;
        outcome(r, self.store.data())
    }

    pub(crate) async fn on_message(&mut self, input: &str, message: Message) -> Outcome<()> {
        self.begin_call();
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_message(&mut self.store, input, &message.into())
            .await;
        outcome(r, self.store.data())
    }

    pub(crate) async fn on_tick(&mut self) -> Outcome<()> {
        self.begin_call();
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_tick(&mut self.store)
            .await;
        outcome(r, self.store.data())
    }

    pub(crate) async fn on_method(&mut self, name: &str, payload: &str) -> Outcome<MethodResult> {
        self.begin_call();
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_method(&mut self.store, name, payload)
            .await;
        outcome(r, self.store.data()).map(|response| MethodResult {
            status: response.status,
            payload: response.payload,
        })
    }
}

fn outcome<T>(result: wasmtime::Result<Result<T, String>>, state: &HostState) -> Outcome<T> {
    match result {
        Ok(Ok(value)) => Outcome::Done(value),
        Ok(Err(refusal)) => Outcome::Refused(refusal),
        Err(trap) => trapped(&trap, state),
    }
}

/// A call that ended in an error: a clean exit (`exit(0)`), or a failure.
fn trapped<T>(error: &wasmtime::Error, state: &HostState) -> Outcome<T> {
    match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        Some(wasmtime_wasi::I32Exit(0)) => Outcome::Exited,
        Some(wasmtime_wasi::I32Exit(status)) => {
            Outcome::Trapped(format!("the module exited with status {status}"))
        }
        None => {
            // The whole story (wasm backtrace, error chain) for the log; one line for status.
            tracing::warn!("trap: {error:?}");
            Outcome::Trapped(cause(error, state))
        }
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
