//! A long-running module's loop: the `wedge:edge/service` export's `run`, called once per start
//! in an instance of its own (its own store, with the CPU limit as a rate), in a task of its
//! own, so that it never holds up the calls the supervisor makes one at a time on the module's
//! main instance.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::Instrument;
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex};

use crate::ModuleImage;
use crate::bindings::{EdgeModule, EdgeModulePre};
use crate::host::HostState;
use crate::spec::ModuleKind;

use super::ModuleCtx;
use super::call::{Outcome, begin_call, new_service_store, outcome, trapped};

/// The interface a long-running module exports beside `wedge:edge/module`.
pub(crate) const SERVICE_EXPORT: &str = "wedge:edge/service@0.1.0";

/// Where a component's `service.run` is, looked up once when it is compiled.
#[derive(Clone)]
pub(crate) struct ServiceExport {
    run: ComponentExportIndex,
}

impl ServiceExport {
    /// The component's `service` export, if it has one.
    ///
    /// # Errors
    /// It exports `service` without a `run: func() -> result<_, string>`.
    pub(crate) fn find(component: &Component) -> Result<Option<Self>, String> {
        let Some(service) = component.get_export_index(None, SERVICE_EXPORT) else {
            return Ok(None);
        };
        let wrong = || format!("`{SERVICE_EXPORT}` has no `run: func() -> result<_, string>`");
        let Some((ComponentItem::ComponentFunc(func), run)) =
            component.get_export(Some(&service), "run")
        else {
            return Err(wrong());
        };
        let results: Vec<Type> = func.results().collect();
        let fits = func.params().len() == 0
            && matches!(results.as_slice(), [Type::Result(r)]
                if r.ok().is_none() && matches!(r.err(), Some(Type::String)));
        if !fits {
            return Err(wrong());
        }
        Ok(Some(ServiceExport { run }))
    }
}

/// The task running a module's `run`. Dropping it cancels the loop (its instance and the
/// sockets it holds go with the task); [`RunTask::stop`] also waits until they are gone.
pub(crate) struct RunTask {
    handle: JoinHandle<Outcome<()>>,
}

impl RunTask {
    /// Starts `run` in a new instance of `image` with `ctx`'s active configuration, if the
    /// module is a wedge module that exports `service`.
    pub(crate) fn spawn(image: &ModuleImage, ctx: &Arc<ModuleCtx>) -> Option<RunTask> {
        let exports = &image.exports;
        let (Some(pre), Some(service)) = (&exports.module, &exports.service) else {
            return None;
        };
        if ctx.spec().kind != ModuleKind::Module {
            return None;
        }
        let run = run(pre.clone(), service.clone(), ctx.clone());
        let span = tracing::info_span!("run");
        Some(RunTask {
            handle: tokio::spawn(run.instrument(span)),
        })
    }

    /// Resolves when `run` has ended: with `Done` when it returned `Ok`.
    pub(crate) async fn finished(&mut self) -> Outcome<()> {
        match (&mut self.handle).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Trapped(format!("the `run` task ended: {e}")),
        }
    }

    /// Cancels `run` and waits until its instance is dropped.
    pub(crate) async fn stop(self) {
        self.handle.abort();
        let _ = (&mut { self }.handle).await;
    }
}

impl Drop for RunTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Instantiates the module once more, calls `init` with the active configuration, then `run`.
async fn run(
    pre: EdgeModulePre<HostState>,
    service: ServiceExport,
    ctx: Arc<ModuleCtx>,
) -> Outcome<()> {
    let mut store = match new_service_store(pre.engine(), ctx.clone()) {
        Ok(store) => store,
        Err(e) => return Outcome::Trapped(e),
    };
    let instance = match pre.instance_pre().instantiate_async(&mut store).await {
        Ok(instance) => instance,
        Err(e) => return trapped(&e, store.data()),
    };
    let loaded = EdgeModule::new(&mut store, &instance).and_then(|bindings| {
        let run = instance.get_typed_func::<(), (Result<(), String>,)>(&mut store, &service.run)?;
        Ok((bindings, run))
    });
    let (bindings, run) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return trapped(&e, store.data()),
    };
    begin_call(&mut store);
    let config = ctx.config().to_string();
    let init = bindings
        .wedge_edge_module()
        .call_init(&mut store, &config)
        .await;
    match outcome(init, store.data()) {
        Outcome::Done(()) => {}
        Outcome::Refused(e) => {
            return Outcome::Trapped(format!("init (for `run`) refused its configuration: {e}"));
        }
        other => return other,
    }
    tracing::info!("`run` started");
    begin_call(&mut store);
    let result = run.call_async(&mut store, ()).await.map(|(r,)| r);
    match outcome(result, store.data()) {
        Outcome::Refused(e) => Outcome::Trapped(format!("`run` returned an error: {e}")),
        other => other,
    }
}
