//! Sending messages on the module's outputs.

use serde::Serialize;

use crate::bindings::wedge::edge::telemetry;
use crate::{Message, SendError};

/// Sends `msg` on the output named `output`; the deployment's routes decide where it goes.
/// Returns once every destination has accepted it.
pub fn send(output: &str, msg: &Message) -> Result<(), SendError> {
    telemetry::send(output, msg)
}

/// Sends `msgs` on `output` in order, all or none for the hub (`$upstream`): one disk write for
/// the whole batch, so sending many readings at once is much faster than one by one.
pub fn send_batch(output: &str, msgs: &[Message]) -> Result<(), SendError> {
    telemetry::send_batch(output, msgs)
}

/// Sends `value` as a JSON message (see [`Message::json`]) on `output`. A value that cannot be
/// encoded as JSON is reported as [`SendError::Invalid`] without calling the host.
pub fn send_json<T: Serialize>(output: &str, value: &T) -> Result<(), SendError> {
    let msg = Message::try_json(value).map_err(SendError::Invalid)?;
    send(output, &msg)
}
