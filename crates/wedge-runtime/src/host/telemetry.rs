//! `wedge:edge/telemetry`: a module sends a message on one of its outputs.

use std::sync::atomic::Ordering;

use crate::bindings::wedge::edge::telemetry::Host;
use crate::bindings::{WitMessage, WitSendError};
use wedge_core::{Message, SendError, truncate};

use super::HostState;

/// Longest output name accepted.
const MAX_OUTPUT_LEN: usize = 256;

/// Most messages in one `send-batch`.
const MAX_BATCH: usize = 1024;

impl Host for HostState {
    async fn send(
        &mut self,
        output: String,
        msg: WitMessage,
    ) -> wasmtime::Result<Result<(), WitSendError>> {
        Ok(self.send_all(output, vec![msg.into()]).await)
    }

    async fn send_batch(
        &mut self,
        output: String,
        msgs: Vec<WitMessage>,
    ) -> wasmtime::Result<Result<(), WitSendError>> {
        if msgs.len() > MAX_BATCH {
            let why = format!("{} messages in one batch, at most {MAX_BATCH}", msgs.len());
            return Ok(Err(SendError::Invalid(why).into()));
        }
        Ok(self
            .send_all(output, msgs.into_iter().map(Into::into).collect())
            .await)
    }
}

impl HostState {
    async fn send_all(
        &mut self,
        output: String,
        messages: Vec<Message>,
    ) -> Result<(), WitSendError> {
        if output.is_empty() || output.len() > MAX_OUTPUT_LEN {
            let why = format!(
                "output name `{}` must be 1-{MAX_OUTPUT_LEN} bytes",
                truncate(&output, 64)
            );
            return Err(SendError::Invalid(why).into());
        }
        let module = self.module.clone();
        let count = messages.len() as u64;
        let result = module.router.send(&module.name, &output, messages).await;
        match &result {
            Ok(()) => {
                module
                    .stats
                    .messages_out
                    .fetch_add(count, Ordering::Relaxed);
            }
            Err(e) => {
                module.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(output, error = %e, "send refused");
            }
        }
        result.map_err(Into::into)
    }
}
