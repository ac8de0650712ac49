//! The one wasmtime [`Engine`] of the host, its [`Linker`], and compilation of components.

use std::path::{Path, PathBuf};
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
    /// The binary is not a component wedge can run.
    #[error("{what}: {reason:#}")]
    Compile {
        /// Where the binary came from.
        what: String,
        /// What wasmtime said.
        reason: wasmtime::Error,
    },
}

/// A compiled component whose imports the host provides and which exports `wedge:edge/module`:
/// ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct ModuleImage {
    pub(crate) pre: EdgeModulePre<HostState>,
    sha256: String,
}

impl ModuleImage {
    /// The sha256 (lowercase hex) of the `.wasm` it was compiled from.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// The shared engine and linker. Cheap to clone.
#[derive(Clone)]
pub struct EngineCtx {
    engine: Engine,
    linker: std::sync::Arc<Linker<HostState>>,
    /// Where compiled components are kept, by the sha256 of their `.wasm`.
    cache_dir: Option<PathBuf>,
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
            cache_dir: None,
        })
    }

    /// Keeps compiled components in `dir` (`<sha256 of the .wasm>.cwasm`), so that the next
    /// start of the same module loads machine code instead of compiling: a restart (offline
    /// too) has modules running at once, and Cranelift's time and memory are spent once per
    /// module version.
    pub fn with_cache(mut self, dir: PathBuf) -> Self {
        self.cache_dir = Some(dir);
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles the component in the file at `path` (see [`EngineCtx::compile`]).
    ///
    /// # Errors
    /// [`EngineError::Compile`] naming the file, which may also be unreadable.
    pub fn compile_file(&self, path: &Path) -> Result<ModuleImage, EngineError> {
        let wasm = std::fs::read(path).map_err(|e| EngineError::Compile {
            what: path.display().to_string(),
            reason: e.into(),
        })?;
        self.compile(&wasm, &path.display().to_string())
    }

    /// Compiles the component `wasm` (from the cache when it holds this exact binary) and
    /// resolves its imports against the linker and its exports against the `edge-module` world,
    /// so that instantiating it later cannot fail for a missing import or export. `what` names
    /// it in errors.
    ///
    /// # Errors
    /// [`EngineError::Compile`]: not a component, invalid, imports something the host does not
    /// provide, or does not export `wedge:edge/module`.
    pub fn compile(&self, wasm: &[u8], what: &str) -> Result<ModuleImage, EngineError> {
        let error = |reason| EngineError::Compile {
            what: what.to_string(),
            reason,
        };
        let sha256 = wedge_store::sha256_hex(wasm);
        let component = match &self.cache_dir {
            Some(dir) => self.cached(wasm, &sha256, dir),
            None => Component::from_binary(&self.engine, wasm),
        }
        .map_err(error)?;
        let pre = self.linker.instantiate_pre(&component).map_err(error)?;
        let pre = EdgeModulePre::new(pre).map_err(error)?;
        Ok(ModuleImage { pre, sha256 })
    }

    /// The component of `wasm`, from the cache when it holds this exact `.wasm` compiled by
    /// this engine; compiled (and cached) otherwise.
    fn cached(&self, wasm: &[u8], sha256: &str, dir: &Path) -> wasmtime::Result<Component> {
        let artifact = dir.join(format!("{sha256}.cwasm"));
        if artifact.is_file() {
            // SAFETY: `deserialize_file` runs the machine code in the file, so it must be what
            // `Component::serialize` of this wasmtime produced. It is: only `cached` writes this
            // directory (atomically, by rename), inside the host's own data dir, which only the
            // host's user can write (whoever can write it can also change the deployment).
            // wasmtime itself refuses artifacts of another version or configuration, which is
            // then compiled again below.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(&self.engine, &artifact) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::info!(artifact = %artifact.display(), "recompiling: {e:#}"),
            }
        }
        let component = Component::from_binary(&self.engine, wasm)?;
        if let Err(e) = write_atomically(dir, &artifact, &component.serialize()?) {
            tracing::warn!(artifact = %artifact.display(), "cannot cache the compiled module: {e}");
        }
        Ok(component)
    }
}

/// Writes `bytes` to `path` through a temporary file renamed over it: a crash leaves either
/// the old file or the new one, never half of one.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_modules_are_cached_and_a_damaged_artifact_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EngineCtx::new().unwrap().with_cache(dir.path().into());
        let wasm = std::fs::read(wedge_test_artifacts::ECHO).unwrap();
        let artifact = dir
            .path()
            .join(format!("{}.cwasm", wedge_store::sha256_hex(&wasm)));

        engine
            .compile_file(Path::new(wedge_test_artifacts::ECHO))
            .unwrap();
        let compiled = std::fs::read(&artifact).expect("the artifact is written");
        assert!(
            compiled.starts_with(b"\x7fELF"),
            "machine code, not the wasm"
        );

        // A second engine (a restart) loads it: the file is left as it is.
        let again = EngineCtx::new().unwrap().with_cache(dir.path().into());
        again
            .compile_file(Path::new(wedge_test_artifacts::ECHO))
            .unwrap();
        assert_eq!(std::fs::read(&artifact).unwrap(), compiled);

        // Garbage in the cache is not run: the module is compiled again and the file replaced.
        std::fs::write(&artifact, b"\x7fELF garbage").unwrap();
        again
            .compile_file(Path::new(wedge_test_artifacts::ECHO))
            .unwrap();
        assert_eq!(std::fs::read(&artifact).unwrap(), compiled);
    }
}
