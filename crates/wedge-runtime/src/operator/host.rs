//! The imports every operator links against, served from the module's own context: `logger`
//! writes the module's log, `metrics` keeps the module's operator metrics (`wedge status`),
//! and `state-store` is the module's durable state, under its quota. The host provides
//! `state-store` to every operator, whether it calls it or not: the `*-impl` worlds import it.

use std::sync::Arc;
use std::time::SystemTime;

use super::bindings::wasm_graph::processor::hybrid_logical_clock;
use super::bindings::wasm_graph::processor::logger::{self, Level};
use super::bindings::wasm_graph::processor::metrics::{
    self, CounterValue, HistogramValue, Label, MetricsError,
};
use super::bindings::wasm_graph::processor::state_store::{self, Duration};
use super::bindings::wasm_graph::processor::state_store_types::{
    self, HybridLogicalClock, SetConditions, SetOptions, StateStoreDelResponse, StateStoreError,
    StateStoreGetResponse, StateStoreSetResponse,
};
use crate::host::HostState;
use crate::module::{ModuleCtx, OperatorMetric, Source};

impl hybrid_logical_clock::Host for HostState {}
impl state_store_types::Host for HostState {}

impl logger::Host for HostState {
    fn log(&mut self, level: Level, context: String, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error | Level::Critical => tracing::Level::ERROR,
        };
        let text = match context.is_empty() {
            true => message,
            false => format!("[{context}] {message}"),
        };
        self.module.log_record(level, Source::Log, &text);
        Ok(())
    }
}

impl metrics::Host for HostState {
    fn add_to_counter(
        &mut self,
        name: String,
        value: CounterValue,
        labels: Option<Vec<Label>>,
    ) -> wasmtime::Result<Result<(), MetricsError>> {
        let CounterValue::U64(value) = value;
        Ok(self
            .module
            .stats
            .operator_metric(OperatorMetric::counter(name, labels_of(labels), value))
            .map_err(MetricsError::IncompatibleType))
    }

    fn record_to_histogram(
        &mut self,
        name: String,
        value: HistogramValue,
        labels: Option<Vec<Label>>,
    ) -> wasmtime::Result<Result<(), MetricsError>> {
        let value = match value {
            HistogramValue::F64(v) => v,
            HistogramValue::U64(v) => v as f64,
        };
        Ok(self
            .module
            .stats
            .operator_metric(OperatorMetric::histogram(name, labels_of(labels), value))
            .map_err(MetricsError::IncompatibleType))
    }
}

fn labels_of(labels: Option<Vec<Label>>) -> Vec<(String, String)> {
    labels
        .unwrap_or_default()
        .into_iter()
        .map(|l| (l.key, l.value))
        .collect()
}

fn request_error(why: impl std::fmt::Display) -> StateStoreError {
    StateStoreError::RequestError(why.to_string())
}

/// The state key of an operator's key: the same text, so `wedge:edge/state` and the state
/// store see one set of keys. Keys that are not UTF-8 are refused rather than mangled.
fn key_of(key: Vec<u8>) -> Result<String, StateStoreError> {
    String::from_utf8(key).map_err(|_| request_error("keys must be UTF-8 text"))
}

/// The state store has no distributed writers to fence off; a token would promise ordering
/// the host does not enforce, so it is refused rather than ignored.
fn no_fencing(token: &Option<HybridLogicalClock>) -> Result<(), StateStoreError> {
    match token {
        Some(_) => Err(request_error(
            "fencing tokens are not supported: the module's state has one writer, the module",
        )),
        None => Ok(()),
    }
}

/// The version of a write: when it happened, on this node.
fn version(node: &str) -> Option<HybridLogicalClock> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Some(HybridLogicalClock {
        timestamp: hybrid_logical_clock::Timespec {
            secs: now.as_secs(),
            nanos: now.subsec_nanos(),
        },
        counter: 0,
        node_id: node.to_string(),
    })
}

fn state_get(module: &ModuleCtx, key: &str) -> Result<Option<Vec<u8>>, StateStoreError> {
    module.state.get(key).map_err(request_error)
}

async fn state_delete(module: &ModuleCtx, key: &str) -> Result<(), StateStoreError> {
    module.state.delete(key).await.map_err(request_error)
}

impl state_store::Host for HostState {
    fn get(
        &mut self,
        key: Vec<u8>,
        _timeout: Option<Duration>,
    ) -> wasmtime::Result<Result<StateStoreGetResponse, StateStoreError>> {
        Ok(key_of(key)
            .and_then(|key| state_get(&self.module, &key))
            .map(|response| StateStoreGetResponse {
                response,
                version: None,
            }))
    }

    async fn set(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        _timeout: Option<Duration>,
        fencing_token: Option<HybridLogicalClock>,
        options: SetOptions,
    ) -> wasmtime::Result<Result<StateStoreSetResponse, StateStoreError>> {
        // Not `self` across the awaits: the future must be `Send`, and `HostState` is not
        // `Sync`.
        let module = self.module.clone();
        let result = async {
            no_fencing(&fencing_token)?;
            if options.expires.is_some() {
                return Err(request_error(
                    "expiry is not supported: the module's state keeps a key until it is deleted",
                ));
            }
            let key = key_of(key)?;
            let write = match options.conditions {
                SetConditions::Unconditional => true,
                SetConditions::OnlyIfDoesNotExist => state_get(&module, &key)?.is_none(),
                SetConditions::OnlyIfEqualOrDoesNotExist => {
                    state_get(&module, &key)?.is_none_or(|current| current == value)
                }
            };
            if write {
                module.state.set(&key, value).await.map_err(request_error)?;
            }
            Ok(StateStoreSetResponse {
                response: write,
                version: write.then(|| version(&module.name)).flatten(),
            })
        }
        .await;
        Ok(result)
    }

    async fn del(
        &mut self,
        key: Vec<u8>,
        fencing_token: Option<HybridLogicalClock>,
        _timeout: Option<Duration>,
    ) -> wasmtime::Result<Result<StateStoreDelResponse, StateStoreError>> {
        Ok(delete(self.module.clone(), key, None, fencing_token).await)
    }

    async fn vdel(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        fencing_token: Option<HybridLogicalClock>,
        _timeout: Option<Duration>,
    ) -> wasmtime::Result<Result<StateStoreDelResponse, StateStoreError>> {
        Ok(delete(self.module.clone(), key, Some(value), fencing_token).await)
    }
}

/// `del` (`only_if` absent) and `vdel`: 1 when the key was deleted, 0 when it was not there,
/// -1 when it holds another value than `only_if`. Takes the module, not the `HostState`: the
/// future must be `Send`, and `HostState` is not `Sync`.
async fn delete(
    module: Arc<ModuleCtx>,
    key: Vec<u8>,
    only_if: Option<Vec<u8>>,
    fencing_token: Option<HybridLogicalClock>,
) -> Result<StateStoreDelResponse, StateStoreError> {
    no_fencing(&fencing_token)?;
    let key = key_of(key)?;
    let response = match (state_get(&module, &key)?, only_if) {
        (None, _) => 0,
        (Some(current), Some(expected)) if current != expected => -1,
        (Some(_), _) => {
            state_delete(&module, &key).await?;
            1
        }
    };
    Ok(StateStoreDelResponse {
        response,
        version: None,
    })
}
