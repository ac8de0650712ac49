//! One instance of an operator, driven like a module: each message routed to it is handed to
//! its `process`, and what `process` says decides what leaves on its outputs. An accumulate
//! operator's window and a delay operator's held messages are kept by the host, outside the
//! instance, so a live configuration change (a new instance, `init` again) keeps them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::InstancePre;
use wedge_core::{Message, SendError};

use super::bindings::{
    DataModel, HybridLogicalClock, ModuleConfiguration, OperatorError, accumulate, branch, delay,
    filter, map,
};
use super::convert::{Clock, empty, from_data_model, to_data_model, wall_time};
use crate::ModuleImage;
use crate::host::HostState;
use crate::host::config::flatten;
use crate::module::{MethodResult, ModuleCtx, Outcome, begin_call, new_store, outcome, trapped};
use crate::spec::ModuleKind;

/// Messages an accumulate window folds at once; a longer window is folded in steps, each
/// step's result `staged` for the next, so a window never holds more than this many.
pub(crate) const FOLD_BATCH: usize = 256;
/// Longest a delay operator may hold a message: a later time is cut to this.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(600);

/// An operator component's interfaces, looked up once when it is compiled.
pub(crate) struct Exports {
    pre: InstancePre<HostState>,
    map: Option<map::GuestIndices>,
    filter: Option<filter::GuestIndices>,
    branch: Option<branch::GuestIndices>,
    accumulate: Option<accumulate::GuestIndices>,
    delay: Option<delay::GuestIndices>,
}

/// The operator interfaces, for error messages.
pub(crate) const EXPORTS_TEXT: &str =
    "wasm-graph:processor/{map,filter,branch,accumulate,delay}@1.1.0";

impl Exports {
    /// The operator interfaces `pre` exports, if any.
    pub(crate) fn new(pre: &InstancePre<HostState>) -> Option<Exports> {
        let exports = Exports {
            map: map::GuestIndices::new(pre).ok(),
            filter: filter::GuestIndices::new(pre).ok(),
            branch: branch::GuestIndices::new(pre).ok(),
            accumulate: accumulate::GuestIndices::new(pre).ok(),
            delay: delay::GuestIndices::new(pre).ok(),
            pre: pre.clone(),
        };
        (!exports.kinds().is_empty()).then_some(exports)
    }

    /// The kinds the component can run as.
    pub(crate) fn kinds(&self) -> Vec<ModuleKind> {
        [
            (self.map.is_some(), ModuleKind::AioMap),
            (self.filter.is_some(), ModuleKind::AioFilter),
            (self.branch.is_some(), ModuleKind::AioBranch),
            (self.accumulate.is_some(), ModuleKind::AioAccumulate),
            (self.delay.is_some(), ModuleKind::AioDelay),
        ]
        .into_iter()
        .filter_map(|(has, kind)| has.then_some(kind))
        .collect()
    }
}

/// The interface being driven.
enum Operator {
    Map(map::Guest),
    Filter(filter::Guest),
    Branch(branch::Guest),
    Accumulate(accumulate::Guest),
    Delay(delay::Guest),
}

/// What the host keeps for the operator between calls.
#[derive(Default)]
struct Pending {
    /// An accumulate window: the messages not folded yet, with the input each came on.
    window: Vec<(String, Message)>,
    /// What the window's earlier messages folded into.
    staged: Option<Message>,
    /// A delay's held messages, by release time (ties in arrival order).
    held: VecDeque<(Instant, Message)>,
}

pub(crate) struct OperatorInstance {
    store: Store<HostState>,
    operator: Operator,
    kind: ModuleKind,
    image: ModuleImage,
    ctx: Arc<ModuleCtx>,
    clock: Clock,
    pending: Pending,
}

/// A `process` result as an outcome: the operator's `error` is a refusal.
fn processed<T>(
    result: wasmtime::Result<Result<T, OperatorError>>,
    state: &HostState,
) -> Outcome<T> {
    outcome(result.map(|r| r.map_err(|e| e.message)), state)
}

impl OperatorInstance {
    /// Instantiates `image` as a `kind` operator and calls its `init` with the module's
    /// configuration, flattened to string pairs as `wasi:config` gives it.
    pub(crate) async fn start(
        image: &ModuleImage,
        kind: ModuleKind,
        ctx: Arc<ModuleCtx>,
    ) -> Outcome<OperatorInstance> {
        let Some(exports) = image.exports.operators.as_ref() else {
            return Outcome::Trapped(format!("the component exports no `{EXPORTS_TEXT}`"));
        };
        let mut store = match new_store(exports.pre.engine(), ctx.clone()) {
            Ok(store) => store,
            Err(e) => return Outcome::Trapped(e),
        };
        let instance = match exports.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => return trapped(&e, store.data()),
        };
        let missing = || wasmtime::format_err!("the component does not export `{}`", kind.export());
        let loaded = match kind {
            ModuleKind::AioMap => exports
                .map
                .as_ref()
                .ok_or_else(missing)
                .and_then(|i| i.load(&mut store, &instance).map(Operator::Map)),
            ModuleKind::AioFilter => exports
                .filter
                .as_ref()
                .ok_or_else(missing)
                .and_then(|i| i.load(&mut store, &instance).map(Operator::Filter)),
            ModuleKind::AioBranch => exports
                .branch
                .as_ref()
                .ok_or_else(missing)
                .and_then(|i| i.load(&mut store, &instance).map(Operator::Branch)),
            ModuleKind::AioAccumulate => exports
                .accumulate
                .as_ref()
                .ok_or_else(missing)
                .and_then(|i| i.load(&mut store, &instance).map(Operator::Accumulate)),
            ModuleKind::AioDelay => exports
                .delay
                .as_ref()
                .ok_or_else(missing)
                .and_then(|i| i.load(&mut store, &instance).map(Operator::Delay)),
            ModuleKind::Module => Err(missing()),
        };
        let operator = match loaded {
            Ok(operator) => operator,
            Err(e) => return Outcome::Trapped(format!("{e:#}")),
        };
        let configuration = ModuleConfiguration {
            properties: flatten(&ctx.config()),
            module_schemas: Vec::new(),
        };
        begin_call(&mut store);
        let s = &mut store;
        let accepted = match &operator {
            Operator::Map(g) => g.call_init(s, &configuration).await,
            Operator::Filter(g) => g.call_init(s, &configuration).await,
            Operator::Branch(g) => g.call_init(s, &configuration).await,
            Operator::Accumulate(g) => g.call_init(s, &configuration).await,
            Operator::Delay(g) => g.call_init(s, &configuration).await,
        };
        match outcome(accepted.map(Ok), store.data()) {
            Outcome::Done(true) => Outcome::Done(OperatorInstance {
                store,
                operator,
                kind,
                image: image.clone(),
                clock: Clock::new(&ctx.name),
                ctx,
                pending: Pending::default(),
            }),
            Outcome::Done(false) => {
                Outcome::Refused("init refused its configuration (returned false)".into())
            }
            other => other.map(|_| unreachable!("a `Done` is handled above")),
        }
    }

    /// A new configuration: a new instance whose `init` gets it. Refused, the old instance
    /// keeps running; accepted, the window and held messages move to the new one.
    pub(crate) async fn on_config(&mut self) -> Outcome<()> {
        match Self::start(&self.image, self.kind, self.ctx.clone()).await {
            Outcome::Done(mut fresh) => {
                fresh.pending = std::mem::take(&mut self.pending);
                fresh.clock = std::mem::replace(&mut self.clock, Clock::new(""));
                *self = fresh;
                Outcome::Done(())
            }
            Outcome::Refused(e) | Outcome::Trapped(e) => Outcome::Refused(e),
            Outcome::Exited => Outcome::Refused("init exited".into()),
        }
    }

    pub(crate) fn on_method(&self) -> MethodResult {
        MethodResult {
            status: 501,
            payload:
                json!({ "error": format!("an `{}` operator has no direct methods", self.kind) })
                    .to_string(),
        }
    }

    pub(crate) async fn on_message(&mut self, input: &str, message: Message) -> Outcome<()> {
        if let Operator::Accumulate(_) = self.operator {
            self.pending.window.push((input.to_string(), message));
            if self.pending.window.len() >= FOLD_BATCH {
                return self.fold().await;
            }
            return Outcome::Done(());
        }
        let stamp = self.clock.now();
        // A map's result replaces the message, which it gets without a copy; the others pass
        // the original on.
        let original = match self.operator {
            Operator::Map(_) => None,
            _ => Some(message.clone()),
        };
        let model = match to_data_model(self.store.data_mut().table(), message, input, &stamp) {
            Ok(model) => model,
            Err(e) => return Outcome::Trapped(format!("{e:#}")),
        };
        begin_call(&mut self.store);
        let s = &mut self.store;
        match (&self.operator, original) {
            (Operator::Map(g), _) => {
                let result = g.call_process(&mut *s, &model).await;
                match processed(result, s.data()) {
                    Outcome::Done(model) => match from_data_model(s.data_mut().table(), model) {
                        Ok(mapped) => forward(&self.ctx, ModuleKind::OUTPUT, mapped).await,
                        Err(e) => Outcome::Refused(format!("process returned {e}")),
                    },
                    other => other.map(drop),
                }
            }
            (Operator::Filter(g), Some(original)) => {
                let result = g.call_process(&mut *s, &model).await;
                match processed(result, s.data()) {
                    Outcome::Done(true) => forward(&self.ctx, ModuleKind::OUTPUT, original).await,
                    other => other.map(drop),
                }
            }
            (Operator::Branch(g), Some(original)) => {
                let result = g.call_process(&mut *s, &stamp, &model).await;
                match processed(result, s.data()) {
                    Outcome::Done(second) => {
                        let output = if second { "true" } else { "false" };
                        forward(&self.ctx, output, original).await
                    }
                    other => other.map(drop),
                }
            }
            (Operator::Delay(g), Some(original)) => {
                let result = g.call_process(&mut *s, &model, &stamp).await;
                match processed(result, s.data()) {
                    Outcome::Done(until) => self.hold(&until, original).await,
                    other => other.map(drop),
                }
            }
            (Operator::Accumulate(_), _) => unreachable!("windowed above"),
            (_, None) => unreachable!("the original is kept for every operator but map"),
        }
    }

    /// An accumulate operator's window ends: what it gathered is folded and sent as one
    /// message. An empty window sends nothing.
    pub(crate) async fn on_tick(&mut self) -> Outcome<()> {
        if !matches!(self.operator, Operator::Accumulate(_)) {
            return Outcome::Done(());
        }
        if !self.pending.window.is_empty()
            && let outcome @ (Outcome::Refused(_) | Outcome::Trapped(_) | Outcome::Exited) =
                self.fold().await
        {
            return outcome;
        }
        match self.pending.staged.take() {
            Some(folded) => forward(&self.ctx, ModuleKind::OUTPUT, folded).await,
            None => Outcome::Done(()),
        }
    }

    /// Folds the window's messages into `staged`. A refusal drops them (counted as the
    /// module's error, like any refused call) and starts the window over.
    async fn fold(&mut self) -> Outcome<()> {
        let Operator::Accumulate(g) = &self.operator else {
            return Outcome::Done(());
        };
        let stamp = self.clock.now();
        let window = std::mem::take(&mut self.pending.window);
        let table = self.store.data_mut().table();
        // Taken: a failed fold starts the window over, a good one stages its result.
        let staged = self.pending.staged.take();
        let converted: wasmtime::Result<(DataModel, Vec<DataModel>)> = (|| {
            let staged = match staged {
                Some(staged) => to_data_model(table, staged, "", &stamp)?,
                None => empty(&stamp),
            };
            let items = window
                .into_iter()
                .map(|(input, m)| to_data_model(table, m, &input, &stamp))
                .collect::<wasmtime::Result<Vec<DataModel>>>()?;
            Ok((staged, items))
        })();
        let (staged, items) = match converted {
            Ok(models) => models,
            Err(e) => return Outcome::Trapped(format!("{e:#}")),
        };
        begin_call(&mut self.store);
        let result = g.call_process(&mut self.store, &staged, &items).await;
        match processed(result, self.store.data()) {
            Outcome::Done(model) => match from_data_model(self.store.data_mut().table(), model) {
                Ok(folded) => {
                    self.pending.staged = Some(folded);
                    Outcome::Done(())
                }
                Err(e) => Outcome::Refused(format!("process returned {e}")),
            },
            other => other.map(drop),
        }
    }

    /// Holds `message` until `until` (at most [`MAX_DELAY`] from now). A delay holds at most
    /// its inbox's capacity: past that, the earliest is released at once rather than dropped.
    async fn hold(&mut self, until: &HybridLogicalClock, message: Message) -> Outcome<()> {
        let wait = wall_time(&until.timestamp)
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(MAX_DELAY);
        let release = Instant::now() + wait;
        let held = &mut self.pending.held;
        let at = held.partition_point(|(t, _)| *t <= release);
        held.insert(at, (release, message));
        if held.len() > self.ctx.spec().inbox.max(1)
            && let Some((_, early)) = held.pop_front()
        {
            return forward(&self.ctx, ModuleKind::OUTPUT, early).await;
        }
        Outcome::Done(())
    }

    /// When the next held message is due.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        self.pending.held.front().map(|(at, _)| *at)
    }

    /// Releases the held messages that are due, in order.
    pub(crate) async fn on_wake(&mut self) -> Outcome<()> {
        let now = Instant::now();
        let mut result = Outcome::Done(());
        while self.pending.held.front().is_some_and(|(at, _)| *at <= now) {
            let (_, message) = self.pending.held.pop_front().expect("checked");
            if let outcome @ Outcome::Refused(_) =
                forward(&self.ctx, ModuleKind::OUTPUT, message).await
            {
                result = outcome;
            }
        }
        result
    }
}

/// Sends `message` on `output` of `ctx`'s module. An output without a route drops it quietly:
/// leaving a branch's arm unrouted is how a deployment discards it. A refused send (a full
/// destination, an invalid message) is a refused call: the supervisor counts it as the
/// module's error.
async fn forward(ctx: &ModuleCtx, output: &str, message: Message) -> Outcome<()> {
    match ctx.router.send(&ctx.name, output, vec![message]).await {
        Ok(()) => {
            ctx.stats.messages_out.fetch_add(1, Ordering::Relaxed);
            Outcome::Done(())
        }
        Err(SendError::NoRoute(_)) => {
            tracing::debug!(output, "no route: dropped");
            Outcome::Done(())
        }
        Err(e) => Outcome::Refused(format!("output `{output}`: {e}")),
    }
}
