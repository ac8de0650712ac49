//! `wedge:edge/telemetry`: a module sends a message on one of its outputs.

use std::sync::atomic::Ordering;

use crate::bindings::wedge::edge::telemetry::Host;
use crate::bindings::{WitMessage, WitSendError};
use crate::message::{SendError, truncate};

use super::HostState;

/// Longest output name accepted.
const MAX_OUTPUT_LEN: usize = 256;

impl Host for HostState {
    async fn send(
        &mut self,
        output: String,
        msg: WitMessage,
    ) -> wasmtime::Result<Result<(), WitSendError>> {
        if output.is_empty() || output.len() > MAX_OUTPUT_LEN {
            let why = format!(
                "output name `{}` must be 1-{MAX_OUTPUT_LEN} bytes",
                truncate(&output, 64)
            );
            return Ok(Err(SendError::Invalid(why).into()));
        }
        let module = self.module.clone();
        let result = module.router.send(&module.name, &output, msg.into()).await;
        match &result {
            Ok(()) => {
                module.stats.messages_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                module.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(output, error = %e, "send refused");
            }
        }
        Ok(result.map_err(Into::into))
    }
}
