//! The data of one module's [`wasmtime::Store`] and the host side of the `wedge:edge` imports,
//! one file per WIT interface.

mod log;
mod state;
mod telemetry;
mod twin;

use std::sync::Arc;

use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::module::ModuleCtx;
use crate::outbound_http::OutboundHttp;
use crate::stdio::LogStream;

/// Most instances, tables and memories one module may create. A Rust component has a handful.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;

/// Everything a module instance's store holds. Created fresh for every (re)start of a module.
pub struct HostState {
    pub(crate) module: Arc<ModuleCtx>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHttp,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) cpu: CpuBudget,
}

/// Epoch ticks used by the current call, against the module's per-call budget.
#[derive(Debug, Default)]
pub(crate) struct CpuBudget {
    pub used: u64,
    pub limit: u64,
}

impl HostState {
    /// Builds the store data for `module`: WASI with nothing ambient (no env, args, stdin, or
    /// network sockets; stdout and stderr go to the log; `/data` only if granted), `wasi:http`
    /// limited to the module's allow-list, and its memory and CPU limits.
    ///
    /// # Errors
    /// If the granted data dir cannot be created or opened.
    pub(crate) fn new(module: Arc<ModuleCtx>) -> std::io::Result<Self> {
        let spec = module.spec();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogStream::new(&module.name, "stdout"))
            .stderr(LogStream::new(&module.name, "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Some(dir) = &module.data_dir {
            std::fs::create_dir_all(dir)?;
            wasi.preopened_dir(dir, "/data", wasmtime_wasi::FsPerms::ReadWrite)
                .map_err(std::io::Error::other)?;
        }
        let memory_bytes =
            usize::try_from(spec.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let cpu_limit = spec
            .cpu_ms_per_call
            .div_ceil(crate::engine::EPOCH_TICK.as_millis() as u64);
        Ok(HostState {
            outbound: OutboundHttp::new(&module.name, spec.allowed_hosts.clone()),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .instances(MAX_INSTANCES)
                .tables(MAX_TABLES)
                .memories(MAX_MEMORIES)
                .build(),
            cpu: CpuBudget {
                used: 0,
                limit: cpu_limit.max(1),
            },
            module,
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl crate::bindings::wedge::edge::types::Host for HostState {}
