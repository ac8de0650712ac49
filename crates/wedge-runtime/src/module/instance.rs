//! One instantiation of a module: its store and the typed calls into its exports.

use std::sync::Arc;

use wasmtime::{Store, UpdateDeadline};

use crate::bindings::{EdgeModule, EdgeModulePre};
use crate::engine::EPOCH_TICK;
use crate::host::HostState;
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
        store.epoch_deadline_callback(|mut store| {
            let cpu = &mut store.data_mut().cpu;
            cpu.used += 1;
            if cpu.used > cpu.limit {
                let ms = cpu.limit * EPOCH_TICK.as_millis() as u64;
                return Err(wasmtime::format_err!(
                    "CPU limit exceeded: one call ran for more than {ms} ms"
                ));
            }
            // Let other modules run, then come back one tick later.
            Ok(UpdateDeadline::Yield(1))
        });
        let bindings = match pre.instantiate_async(&mut store).await {
            Ok(bindings) => bindings,
            Err(e) => return trapped(&e),
        };
        let mut instance = Instance { store, bindings };
        let config = ctx.config().to_string();
        instance.begin_call();
        let result = instance
            .bindings
            .wedge_edge_module()
            .call_init(&mut instance.store, &config)
            .await;
        match outcome(result) {
            Outcome::Refused(e) => Outcome::Refused(format!("init refused its configuration: {e}")),
            other => other.map(|()| instance),
        }
    }

    /// Resets the CPU budget: every call gets the full budget.
    fn begin_call(&mut self) {
        self.store.data_mut().cpu.used = 0;
        self.store.set_epoch_deadline(1);
    }

    pub(crate) async fn on_config(&mut self, config: &str) -> Outcome<()> {
        self.begin_call();
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_config(&mut self.store, config)
            .await;
        outcome(r)
    }

    pub(crate) async fn on_message(&mut self, input: &str, message: Message) -> Outcome<()> {
        self.begin_call();
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_message(&mut self.store, input, &message.into())
            .await;
        outcome(r)
    }

    pub(crate) async fn on_tick(&mut self) -> Outcome<()> {
        self.begin_call();
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_tick(&mut self.store)
            .await;
        outcome(r)
    }

    pub(crate) async fn on_method(&mut self, name: &str, payload: &str) -> Outcome<MethodResult> {
        self.begin_call();
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_method(&mut self.store, name, payload)
            .await;
        outcome(r).map(|response| MethodResult {
            status: response.status,
            payload: response.payload,
        })
    }
}

fn outcome<T>(result: wasmtime::Result<Result<T, String>>) -> Outcome<T> {
    match result {
        Ok(Ok(value)) => Outcome::Done(value),
        Ok(Err(refusal)) => Outcome::Refused(refusal),
        Err(trap) => trapped(&trap),
    }
}

/// A call that ended in an error: a clean exit (`exit(0)`), or a failure.
fn trapped<T>(error: &wasmtime::Error) -> Outcome<T> {
    match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        Some(wasmtime_wasi::I32Exit(0)) => Outcome::Exited,
        Some(wasmtime_wasi::I32Exit(status)) => {
            Outcome::Trapped(format!("the module exited with status {status}"))
        }
        None => Outcome::Trapped(describe(error)),
    }
}

/// A one-line description of a trap: its message and root cause, without the backtrace (which
/// is logged separately at debug level).
fn describe(error: &wasmtime::Error) -> String {
    tracing::debug!("trap details: {error:?}");
    let top = error.to_string();
    let root = error.root_cause().to_string();
    if top == root || top.contains(&root) {
        top
    } else {
        format!("{top}: {root}")
    }
}
