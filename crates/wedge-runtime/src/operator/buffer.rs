//! `wasm-graph:processor/types.buffer`: bytes the host holds for an operator. A message's
//! payload reaches the operator as a buffer, so an operator that only looks at properties (or
//! passes the message on) never copies it into its memory.

use wasmtime::component::Resource;

use super::bindings::wasm_graph::processor::types::{Host, HostBuffer};
use crate::host::HostState;

/// The bytes behind one `buffer` handle.
pub struct Buffer(pub(crate) Vec<u8>);

impl Host for HostState {}

impl HostBuffer for HostState {
    fn read(&mut self, buffer: Resource<Buffer>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table().get(&buffer)?.0.clone())
    }

    fn drop(&mut self, buffer: Resource<Buffer>) -> wasmtime::Result<()> {
        self.table().delete(buffer)?;
        Ok(())
    }
}
