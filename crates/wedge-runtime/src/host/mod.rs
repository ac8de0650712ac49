//! The data of one module's [`wasmtime::Store`] and the host side of the `wedge:edge` imports,
//! one file per WIT interface.

pub(crate) mod config;
pub(crate) mod keyvalue;
mod limits;
mod log;
mod sockets;
mod state;
mod telemetry;
mod twin;

use std::sync::Arc;

use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::module::{ModuleCtx, Source};
use crate::outbound_http::OutboundHttp;
use crate::stdio::{LogStream, PanicSlot};

pub(crate) use limits::{CpuMeter, LimitExceeded, MemoryLimits};
use sockets::SocketPolicy;
pub(crate) use sockets::add_to_linker as add_sockets_to_linker;

/// Everything a module instance's store holds. Created fresh for every (re)start of a module.
pub struct HostState {
    pub(crate) module: Arc<ModuleCtx>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHttp,
    /// What its `wasi:sockets` may reach.
    sockets: Arc<SocketPolicy>,
    table: ResourceTable,
    pub(crate) limits: MemoryLimits,
    pub(crate) cpu: CpuMeter,
    /// The guest's panic message, from its stderr.
    pub(crate) panic: PanicSlot,
}

impl HostState {
    /// Builds the store data for `module`: WASI with nothing ambient (no env, args or stdin;
    /// stdout and stderr go to the log; `/data` and sockets only as granted), `wasi:http`
    /// limited to the module's allow-list, and its memory and CPU limits.
    ///
    /// # Errors
    /// If the granted data dir cannot be created or opened.
    pub(crate) fn new(module: Arc<ModuleCtx>) -> std::io::Result<Self> {
        let spec = module.spec();
        let panic = PanicSlot::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogStream::new(
            module.clone(),
            Source::Stdout,
            panic.clone(),
        ))
        .stderr(LogStream::new(
            module.clone(),
            Source::Stderr,
            panic.clone(),
        ));
        let sockets = SocketPolicy::new(
            spec.sockets.clone(),
            spec.max_sockets,
            module.denials.clone(),
        );
        sockets.install(&mut wasi);
        if let Some(dir) = &module.data_dir {
            std::fs::create_dir_all(dir)?;
            wasi.preopened_dir(dir, "/data", wasmtime_wasi::FsPerms::ReadWrite)
                .map_err(std::io::Error::other)?;
        }
        Ok(HostState {
            outbound: OutboundHttp::new(spec.allowed_hosts.clone(), module.denials.clone()),
            sockets,
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: MemoryLimits::new(spec.memory_mb, module.stats.memory_bytes.clone()),
            cpu: CpuMeter::new(spec.cpu_ms_per_call),
            panic,
            module,
        })
    }
}

impl HostState {
    /// The resources the guest holds handles to.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
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
