//! One instantiation of a module: its store and the typed calls into its exports. A wedge
//! module is called through `wedge:edge/module`; an Azure IoT Operations operator through the
//! operator interface its kind names (`crate::operator`), behind the same calls, so the
//! supervisor drives both alike.

use std::sync::Arc;

use tokio::time::Instant;
use wasmtime::Store;

use crate::ModuleImage;
use crate::bindings::{EdgeModule, EdgeModulePre};
use crate::host::HostState;
use crate::operator::OperatorInstance;
use crate::spec::ModuleKind;
use wedge_core::Message;

use super::call::{begin_call, new_store, outcome, trapped};
use super::{MethodResult, ModuleCtx};

pub(crate) use super::call::Outcome;

pub(crate) enum Instance {
    Module(ModuleInstance),
    Operator(Box<OperatorInstance>),
    /// A component exporting only `wasi:http/incoming-handler`: nothing to call here, its
    /// requests are served by the HTTP trigger (`crate::http_trigger`), an instance each.
    HttpOnly,
}

impl Instance {
    /// Instantiates the module as its kind says and calls `init` with its active
    /// configuration.
    pub(crate) async fn start(image: &ModuleImage, ctx: Arc<ModuleCtx>) -> Outcome<Instance> {
        let spec = ctx.spec();
        let kind = spec.kind;
        if let Err(e) = image.supports(kind, spec.http.is_some()) {
            return Outcome::Trapped(e);
        }
        match (kind, &image.exports.module) {
            (ModuleKind::Module, Some(pre)) => {
                ModuleInstance::start(pre, ctx).await.map(Instance::Module)
            }
            (ModuleKind::Module, None) => Outcome::Done(Instance::HttpOnly),
            _ => OperatorInstance::start(image, kind, ctx)
                .await
                .map(|i| Instance::Operator(Box::new(i))),
        }
    }

    pub(crate) async fn on_config(&mut self, config: &serde_json::Value) -> Outcome<()> {
        match self {
            Instance::Module(m) => m.on_config(&config.to_string()).await,
            Instance::Operator(o) => o.on_config().await,
            Instance::HttpOnly => Outcome::Done(()),
        }
    }

    pub(crate) async fn on_message(&mut self, input: &str, message: Message) -> Outcome<()> {
        match self {
            Instance::Module(m) => m.on_message(input, message).await,
            Instance::Operator(o) => o.on_message(input, message).await,
            Instance::HttpOnly => Outcome::Refused("the module only serves HTTP".into()),
        }
    }

    pub(crate) async fn on_tick(&mut self) -> Outcome<()> {
        match self {
            Instance::Module(m) => m.on_tick().await,
            Instance::Operator(o) => o.on_tick().await,
            Instance::HttpOnly => Outcome::Done(()),
        }
    }

    pub(crate) async fn on_method(&mut self, name: &str, payload: &str) -> Outcome<MethodResult> {
        match self {
            Instance::Module(m) => m.on_method(name, payload).await,
            Instance::Operator(o) => Outcome::Done(o.on_method()),
            Instance::HttpOnly => Outcome::Done(MethodResult {
                status: 501,
                payload: r#"{"error":"the module only serves HTTP: it has no methods"}"#.into(),
            }),
        }
    }

    /// When the instance wants [`Instance::on_wake`] called (a delay operator releasing what
    /// it holds), if ever.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        match self {
            Instance::Module(_) | Instance::HttpOnly => None,
            Instance::Operator(o) => o.wake_at(),
        }
    }

    pub(crate) async fn on_wake(&mut self) -> Outcome<()> {
        match self {
            Instance::Module(_) | Instance::HttpOnly => Outcome::Done(()),
            Instance::Operator(o) => o.on_wake().await,
        }
    }
}

/// A wedge module: a component exporting `wedge:edge/module`.
pub(crate) struct ModuleInstance {
    store: Store<HostState>,
    bindings: EdgeModule,
}

impl ModuleInstance {
    async fn start(pre: &EdgeModulePre<HostState>, ctx: Arc<ModuleCtx>) -> Outcome<Self> {
        let mut store = match new_store(pre.engine(), ctx.clone()) {
            Ok(store) => store,
            Err(e) => return Outcome::Trapped(e),
        };
        let bindings = match pre.instantiate_async(&mut store).await {
            Ok(bindings) => bindings,
            Err(e) => return trapped(&e, store.data()),
        };
        let mut instance = ModuleInstance { store, bindings };
        let config = ctx.config().to_string();
        begin_call(&mut instance.store);
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

    async fn on_config(&mut self, config: &str) -> Outcome<()> {
        begin_call(&mut self.store);
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_config(&mut self.store, config)
            .await;
        outcome(r, self.store.data())
    }

    async fn on_message(&mut self, input: &str, message: Message) -> Outcome<()> {
        begin_call(&mut self.store);
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_message(&mut self.store, input, &message.into())
            .await;
        outcome(r, self.store.data())
    }

    async fn on_tick(&mut self) -> Outcome<()> {
        begin_call(&mut self.store);
        let r = self
            .bindings
            .wedge_edge_module()
            .call_on_tick(&mut self.store)
            .await;
        outcome(r, self.store.data())
    }

    async fn on_method(&mut self, name: &str, payload: &str) -> Outcome<MethodResult> {
        begin_call(&mut self.store);
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
