//! The one wasmtime [`Engine`] of the host, its [`Linker`], and compilation of components.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::bindings::{EdgeModule, EdgeModulePre};
use crate::host::HostState;
use crate::module::ServiceExport;
use crate::operator::{self, AioOperators};
use crate::spec::ModuleKind;

/// How often the epoch advances: a busy module yields to the others at least this often, and a
/// call over its CPU budget is stopped within a tick (the budget itself counts time in guest
/// code, see `host/limits.rs`).
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

/// A compiled component whose imports the host provides, and which exports `wedge:edge/module`,
/// `wasi:http/incoming-handler` or at least one Azure IoT Operations operator interface: ready
/// to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct ModuleImage {
    /// Shared by every module running the same binary (see [`EngineCtx::compile`]).
    pub(crate) exports: Arc<Exports>,
    sha256: String,
}

/// What a component exports, looked up once when it is compiled.
pub(crate) struct Exports {
    /// The `edge-module` world's exports, when it has them.
    pub module: Option<EdgeModulePre<HostState>>,
    /// Its operator interfaces, when it has any.
    pub operators: Option<operator::Exports>,
    /// `wasi:http/incoming-handler@0.2.x`, when it serves HTTP (the HTTP trigger).
    pub http: Option<ProxyPre<HostState>>,
    /// `wedge:edge/service` (a long-running module's `run`), when it has it.
    pub service: Option<ServiceExport>,
}

impl ModuleImage {
    /// The sha256 (lowercase hex) of the `.wasm` it was compiled from.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Checks that the component can run as `kind`, served on an HTTP trigger when `http`
    /// (the deployment sets `http-listen`): it exports what that kind calls, and
    /// `wasi:http/incoming-handler` when it is to serve HTTP. A wedge module may export
    /// `wedge:edge/module`, the handler, or both.
    ///
    /// # Errors
    /// What it lacks, and what it exports instead.
    pub fn supports(&self, kind: ModuleKind, http: bool) -> Result<(), String> {
        let serves_http = self.exports.http.is_some();
        if http && !serves_http {
            return Err(format!(
                "`http-listen` is set, but the component does not export `{HTTP_EXPORT}`: remove \
                 `http-listen`, or build the module as an HTTP handler"
            ));
        }
        let operators = self.exports.operators.as_ref();
        let offered = operators.map(|o| o.kinds()).unwrap_or_default();
        let has = match kind {
            ModuleKind::Module if self.exports.module.is_none() && serves_http && !http => {
                return Err(format!(
                    "the component only serves HTTP (`{HTTP_EXPORT}`, no `{}`): set \
                     `http-listen` to the address to serve it on",
                    kind.export()
                ));
            }
            ModuleKind::Module => self.exports.module.is_some() || serves_http,
            kind => offered.contains(&kind),
        };
        if has {
            return Ok(());
        }
        let wanted = match kind {
            ModuleKind::Module => format!("`{}` (a wedge module)", kind.export()),
            kind => format!("`{}` (kind `{kind}`)", kind.export()),
        };
        let instead = match (self.exports.module.is_some(), offered.as_slice()) {
            (true, _) => "it is a wedge module: remove `kind`".to_string(),
            (false, []) => "it exports neither".to_string(),
            (false, kinds) => format!(
                "it is an operator: set `kind` to one of {}",
                kinds
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Err(format!("the component does not export {wanted}; {instead}"))
    }
}

/// The export the HTTP trigger calls, as the errors name it.
pub(crate) const HTTP_EXPORT: &str = "wasi:http/incoming-handler@0.2.x";

/// How instances get their memories, tables and stacks. The default is wasmtime's on-demand
/// allocator: `cargo xtask bench` (module start, footprint) measured the pooling allocator
/// against it, see docs/benchmarks.md.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Allocation {
    /// mmap per instance, released when it ends.
    #[default]
    OnDemand,
    /// Slots reserved up front for this many instances (wasmtime's pooling allocator): faster
    /// instantiation, much more address space reserved.
    Pooling {
        /// Component instances (and as many memories and tables) the pool has room for.
        instances: u32,
    },
}

/// The shared engine and linker. Cheap to clone.
#[derive(Clone)]
pub struct EngineCtx {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    /// Where compiled components are kept, by the sha256 of their `.wasm`.
    cache_dir: Option<PathBuf>,
    /// Images alive in this process, by sha256: ten modules running one binary share one copy
    /// of its machine code (~420 KiB for `sensor`) instead of loading ten.
    loaded: Arc<Mutex<HashMap<String, Weak<Exports>>>>,
}

impl EngineCtx {
    /// Creates the engine (component model, epoch interruption) and links WASI p2, `wasi:http`
    /// and the `wedge:edge` imports. Starts the epoch ticker thread, which ends with the engine.
    ///
    /// # Errors
    /// [`EngineError::Setup`] if wasmtime refuses the configuration.
    pub fn new() -> Result<Self, EngineError> {
        Self::with_allocation(Allocation::default())
    }

    /// [`EngineCtx::new`] with the instance allocator `allocation`.
    ///
    /// # Errors
    /// [`EngineError::Setup`] if wasmtime refuses the configuration (for pooling: when it
    /// cannot reserve the pool's address space).
    pub fn with_allocation(allocation: Allocation) -> Result<Self, EngineError> {
        Self::build(allocation, None)
    }

    /// [`EngineCtx::with_allocation`] running modules on Pulley, wasmtime's interpreter, instead
    /// of Cranelift's machine code: what a host without a Cranelift backend (32-bit ARM) gets
    /// anyway. Here to measure that cost, and to test two targets sharing one cache, on hosts
    /// that have a backend; needs wasmtime's `pulley` feature (wedge-runtime's `pulley`).
    ///
    /// # Errors
    /// As [`EngineCtx::with_allocation`]; and when wasmtime was built without Pulley.
    pub fn interpreted(allocation: Allocation) -> Result<Self, EngineError> {
        let pulley = if cfg!(target_pointer_width = "64") {
            "pulley64"
        } else {
            "pulley32"
        };
        Self::build(allocation, Some(pulley))
    }

    fn build(allocation: Allocation, target: Option<&str>) -> Result<Self, EngineError> {
        let mut config = Config::new();
        if let Some(target) = target {
            config.target(target).map_err(EngineError::Setup)?;
        }
        config.wasm_component_model(true).epoch_interruption(true);
        if let Allocation::Pooling { instances } = allocation {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(instances)
                .total_core_instances(instances * 2)
                .total_memories(instances)
                .total_tables(instances * 2)
                .total_stacks(instances)
                .max_memory_size(64 << 20);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(EngineError::Setup)?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(EngineError::Setup)?;
        crate::host::add_sockets_to_linker(&mut linker).map_err(EngineError::Setup)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(EngineError::Setup)?;
        EdgeModule::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(EngineError::Setup)?;
        AioOperators::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
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
            linker: Arc::new(linker),
            cache_dir: None,
            loaded: Arc::default(),
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
    /// resolves its imports against the linker and its exports against the `edge-module` world
    /// and the operator interfaces, so that instantiating it later cannot fail for a missing
    /// import or export ([`ModuleImage::supports`] tells which kinds it runs as). `what` names
    /// it in errors. A binary already loaded in this process (another module runs it) is not
    /// loaded again: its image is shared.
    ///
    /// # Errors
    /// [`EngineError::Compile`]: not a component, invalid, imports something the host does not
    /// provide, or exports none of `wedge:edge/module`, `wasi:http/incoming-handler` and the
    /// operator interfaces.
    pub fn compile(&self, wasm: &[u8], what: &str) -> Result<ModuleImage, EngineError> {
        let error = |reason| EngineError::Compile {
            what: what.to_string(),
            reason,
        };
        let sha256 = wedge_store::sha256_hex(wasm);
        let loaded = || self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(exports) = loaded().get(&sha256).and_then(Weak::upgrade) {
            return Ok(ModuleImage { exports, sha256 });
        }
        // Not held while compiling, which can take seconds: another binary's cached image
        // need not wait for it.
        let component = match &self.cache_dir {
            Some(dir) => self.cached(wasm, &sha256, dir),
            None => Component::from_binary(&self.engine, wasm).inspect(|_| return_freed_memory()),
        }
        .map_err(error)?;
        let pre = self.linker.instantiate_pre(&component).map_err(error)?;
        let operators = operator::Exports::new(&pre);
        let http = ProxyPre::new(pre.clone()).ok();
        let service =
            ServiceExport::find(pre.component()).map_err(|e| error(wasmtime::Error::msg(e)))?;
        let module = match EdgeModulePre::new(pre) {
            Ok(module) => Some(module),
            Err(_) if operators.is_some() || http.is_some() => None,
            Err(e) => {
                return Err(error(e.context(format!(
                    "neither a wedge module (`{}` or `{HTTP_EXPORT}`) nor an Azure IoT \
                     Operations operator (`{}`)",
                    ModuleKind::Module.export(),
                    operator::EXPORTS_TEXT
                ))));
            }
        };
        let exports = Arc::new(Exports {
            module,
            operators,
            http,
            service,
        });
        let mut loaded = loaded();
        loaded.retain(|_, image| image.strong_count() > 0);
        loaded.insert(sha256.clone(), Arc::downgrade(&exports));
        Ok(ModuleImage { exports, sha256 })
    }

    /// The component of `wasm`, from the cache when it holds this exact `.wasm` compiled by
    /// this engine, intact; compiled (and cached) otherwise.
    fn cached(&self, wasm: &[u8], sha256: &str, dir: &Path) -> wasmtime::Result<Component> {
        let artifact = self.artifact(dir, sha256);
        match std::fs::read(&artifact).map(|file| unseal(&file).map(<[u8]>::to_vec)) {
            Ok(Some(code)) => {
                // SAFETY: `deserialize` runs the machine code in `code`, so it must be what
                // `Component::serialize` of this wasmtime produced. It is: `code` is the copy
                // in memory whose sha256 matched the one `cached` wrote with it (a torn or
                // altered file does not match and is compiled again), the file is only written
                // by `cached`, inside the host's own data dir, which only the host's user can
                // write (whoever can write it can also change the deployment). wasmtime itself
                // refuses artifacts of another version or configuration, which is then
                // compiled again below.
                #[allow(unsafe_code)]
                match unsafe { Component::deserialize(&self.engine, &code) } {
                    Ok(component) => return Ok(component),
                    Err(e) => tracing::info!(artifact = %artifact.display(), "recompiling: {e:#}"),
                }
            }
            Ok(None) => tracing::warn!(
                artifact = %artifact.display(),
                "recompiling: the cached file is damaged (its sha256 does not match)"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(artifact = %artifact.display(), "recompiling: {e}"),
        }
        let component = Component::from_binary(&self.engine, wasm)?;
        let sealed = seal(&component.serialize()?);
        let engine_dir = artifact.parent().unwrap_or(dir);
        if let Err(e) = wedge_core::files::private_dir(dir)
            .and_then(|()| wedge_core::files::private_dir(engine_dir))
            .and_then(|()| wedge_core::files::write_atomic(&artifact, &sealed))
        {
            tracing::warn!(artifact = %artifact.display(), "cannot cache the compiled module: {e}");
        }
        drop(sealed);
        return_freed_memory();
        Ok(component)
    }
}

/// Hands the memory freed since (Cranelift's, the serialized copy's) back to the system: after
/// a compile, not after a load from the cache, which frees nothing worth the walk of the arenas.
/// Without it a device keeps a cold compile's peak for good: glibc keeps freed heap in its
/// per-thread arenas (an 18 MB Python component left the host at ~345 MB RSS, against ~60 MB
/// when it starts from the cache).
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free pages of the allocator's arenas to the kernel;
    // it touches no memory in use.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

impl EngineCtx {
    /// Where the cache in `dir` keeps the component of the `.wasm` whose sha256 is `sha256`:
    /// `<target>-<compatibility>/<sha256>.cwasm`. The directory is this engine's: its target
    /// (`x86_64`, `aarch64`, `pulley`) for people reading the data dir, and the start of a
    /// sha256 of wasmtime's compatibility hash (version, target, CPU features, settings), so
    /// that engines which cannot load each other's code (a data dir moved to an ARM board, an
    /// upgrade) each keep their own artifacts instead of replacing the other's at every start.
    fn artifact(&self, dir: &Path, sha256: &str) -> PathBuf {
        /// Collects what the hash is fed: `DefaultHasher` is not stable across Rust releases,
        /// and the directory must be the same after a rebuild.
        struct Fed(Vec<u8>);
        impl std::hash::Hasher for Fed {
            fn write(&mut self, bytes: &[u8]) {
                self.0.extend_from_slice(bytes);
            }
            fn finish(&self) -> u64 {
                0
            }
        }
        let mut fed = Fed(Vec::new());
        std::hash::Hash::hash(&self.engine.precompile_compatibility_hash(), &mut fed);
        let target = if self.engine.is_pulley() {
            "pulley"
        } else {
            std::env::consts::ARCH
        };
        let compatibility = &wedge_store::sha256_hex(&fed.0)[..16];
        dir.join(format!("{target}-{compatibility}"))
            .join(format!("{sha256}.cwasm"))
    }
}

/// What a cached artifact starts with; then the sha256 (hex) of the rest and a newline.
const MAGIC: &[u8] = b"wedge-cwasm-v1\n";
const HEADER_LEN: usize = MAGIC.len() + 64 + 1;

/// `code` with the header that lets [`unseal`] tell it is whole.
fn seal(code: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(HEADER_LEN + code.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(wedge_store::sha256_hex(code).as_bytes());
    file.push(b'\n');
    file.extend_from_slice(code);
    file
}

/// The code in a cached `file`, if it is exactly what [`seal`] wrote.
fn unseal(file: &[u8]) -> Option<&[u8]> {
    let digest = file.strip_prefix(MAGIC)?.get(..64)?;
    let code = file.get(HEADER_LEN..)?;
    (file[HEADER_LEN - 1] == b'\n' && wedge_store::sha256_hex(code).as_bytes() == digest)
        .then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine caching in a fresh directory, the echo guest, and where its artifact goes.
    fn cached_echo() -> (tempfile::TempDir, EngineCtx, Vec<u8>, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let engine = EngineCtx::new().unwrap().with_cache(dir.path().into());
        let wasm = std::fs::read(wedge_test_artifacts::ECHO).unwrap();
        let artifact = engine.artifact(dir.path(), &wedge_store::sha256_hex(&wasm));
        (dir, engine, wasm, artifact)
    }

    #[test]
    fn compiled_modules_are_cached_and_a_damaged_artifact_is_rebuilt() {
        let (dir, engine, _, artifact) = cached_echo();

        engine
            .compile_file(Path::new(wedge_test_artifacts::ECHO))
            .unwrap();
        let compiled = std::fs::read(&artifact).expect("the artifact is written");
        assert!(
            unseal(&compiled).expect("sealed").starts_with(b"\x7fELF"),
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
        let leftovers: Vec<_> = std::fs::read_dir(artifact.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name.to_string_lossy().contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_cached_module_whose_code_changed_or_was_torn_is_compiled_again_not_loaded() {
        let (_dir, engine, wasm, artifact) = cached_echo();
        engine.compile(&wasm, "echo").unwrap();
        let good = std::fs::read(&artifact).unwrap();

        // Bytes flipped in the middle (machine code, which wasmtime's own checks do not
        // cover), then a file cut short (a torn write): each time compiled and replaced.
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle..middle + 64]
            .iter_mut()
            .for_each(|b| *b = !*b);
        for damaged in [flipped, good[..good.len() / 3].to_vec()] {
            std::fs::write(&artifact, &damaged).unwrap();
            engine.compile(&wasm, "echo").unwrap();
            assert_eq!(
                std::fs::read(&artifact).unwrap(),
                good,
                "the file is replaced"
            );
        }
        assert_eq!(unseal(&good[..HEADER_LEN - 1]), None);
    }

    #[test]
    fn each_target_has_its_own_cache_and_refuses_another_targets_artifact() {
        // A data dir that two kinds of host use (moved to an ARM board, or Pulley next to
        // Cranelift): each loads only what its own engine compiled, and neither replaces the
        // other's artifact.
        let dir = tempfile::tempdir().unwrap();
        let native = EngineCtx::new().unwrap().with_cache(dir.path().into());
        let pulley = EngineCtx::interpreted(Allocation::OnDemand)
            .unwrap()
            .with_cache(dir.path().into());
        let wasm = std::fs::read(wedge_test_artifacts::ECHO).unwrap();
        let sha256 = wedge_store::sha256_hex(&wasm);
        native.compile(&wasm, "echo").unwrap();
        pulley.compile(&wasm, "echo").unwrap();
        let native_file = native.artifact(dir.path(), &sha256);
        let pulley_file = pulley.artifact(dir.path(), &sha256);
        assert_ne!(native_file, pulley_file);
        let native_code = std::fs::read(&native_file).expect("the native artifact stays");
        let pulley_code = std::fs::read(&pulley_file).expect("the Pulley artifact is written");
        assert_ne!(native_code, pulley_code);
        let arch = std::env::consts::ARCH;
        assert!(
            native_file
                .parent()
                .unwrap()
                .to_string_lossy()
                .contains(arch),
            "{} names the target",
            native_file.display()
        );

        // Another target's artifact where this engine looks (copied by hand, or a cache from
        // before the directories): refused by wasmtime, compiled again, and replaced.
        std::fs::write(&pulley_file, &native_code).unwrap();
        pulley.compile(&wasm, "echo").unwrap();
        assert_eq!(std::fs::read(&pulley_file).unwrap(), pulley_code);
    }

    #[test]
    fn modules_of_one_binary_share_one_image_while_one_runs_it() {
        let engine = EngineCtx::new().unwrap();
        let echo = std::fs::read(wedge_test_artifacts::ECHO).unwrap();
        let counter = std::fs::read(wedge_test_artifacts::COUNTER).unwrap();
        let a = engine.compile(&echo, "a").unwrap();
        let b = engine.compile(&echo, "b").unwrap();
        let other = engine.compile(&counter, "c").unwrap();
        assert!(
            Arc::ptr_eq(&a.exports, &b.exports),
            "the second is the first's image"
        );
        assert!(!Arc::ptr_eq(&a.exports, &other.exports));

        // Once nothing uses an image, it is freed, not kept for ever, and its entry goes.
        let first = Arc::downgrade(&a.exports);
        drop((a, b, other));
        assert_eq!(first.strong_count(), 0);
        let again = engine.compile(&echo, "d").unwrap();
        assert_eq!(again.sha256(), wedge_store::sha256_hex(&echo));
        let loaded = engine.loaded.lock().unwrap();
        assert_eq!(loaded.len(), 1, "counter's dead entry was pruned");
    }
}
