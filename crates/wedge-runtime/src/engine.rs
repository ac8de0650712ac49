//! The one wasmtime [`Engine`] of the host, its [`Linker`], and compilation of components.

use std::path::Path;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::{EdgeModule, EdgeModulePre};
use crate::host::HostState;

/// How often the epoch advances. A module's CPU budget is counted in these ticks, and a busy
/// module yields to the others at least this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Errors while setting up the engine or compiling a module.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration or the linker.
    #[error("cannot set up the WebAssembly engine: {0:#}")]
    Setup(wasmtime::Error),
    /// The file is not a component wedge can run.
    #[error("{path}: {reason:#}")]
    Compile {
        /// The component file.
        path: String,
        /// What wasmtime said.
        reason: wasmtime::Error,
    },
}

/// The shared engine and linker. Cheap to clone.
#[derive(Clone)]
pub struct EngineCtx {
    engine: Engine,
    linker: std::sync::Arc<Linker<HostState>>,
}

impl EngineCtx {
    /// Creates the engine (component model, epoch interruption) and links WASI p2, `wasi:http`
    /// and the `wedge:edge` imports. Starts the epoch ticker thread, which ends with the engine.
    ///
    /// # Errors
    /// [`EngineError::Setup`] if wasmtime refuses the configuration.
    pub fn new() -> Result<Self, EngineError> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config).map_err(EngineError::Setup)?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(EngineError::Setup)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(EngineError::Setup)?;
        EdgeModule::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(EngineError::Setup)?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wedge-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| EngineError::Setup(wasmtime::Error::from(e)))?;

        Ok(EngineCtx {
            engine,
            linker: std::sync::Arc::new(linker),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles the component at `path` and resolves its imports against the linker, so that
    /// instantiating it later cannot fail for a missing import.
    ///
    /// # Errors
    /// [`EngineError::Compile`] naming the file: not a component, invalid, imports something
    /// the host does not provide, or does not export `wedge:edge/module`.
    pub fn compile(&self, path: &Path) -> Result<EdgeModulePre<HostState>, EngineError> {
        let error = |reason| EngineError::Compile {
            path: path.display().to_string(),
            reason,
        };
        let component = Component::from_file(&self.engine, path).map_err(error)?;
        let pre = self.linker.instantiate_pre(&component).map_err(error)?;
        EdgeModulePre::new(pre).map_err(error)
    }
}
