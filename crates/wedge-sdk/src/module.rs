//! The trait a module implements.

use crate::{Config, Message, MethodResponse};

/// An edge module: one instance lives for as long as the host keeps the component instance.
///
/// The host calls one method at a time (never concurrently), so `&mut self` needs no locking.
/// Returning `Err` reports the message to the host; a panic traps the component, which the host
/// treats as a crash and may restart the module (losing in-memory state, not [`crate::state`]).
pub trait Module: Sized + 'static {
    /// Builds the module from its configuration (the deployment's `config` overlaid with the
    /// twin's desired properties). An error stops the module.
    fn init(config: Config) -> Result<Self, String>;

    /// Applies a changed configuration. An error rejects it and the host keeps the previous one,
    /// so an implementation should validate everything before changing `self`.
    fn on_config(&mut self, config: Config) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Handles a message routed to the module's input `input`.
    fn on_message(&mut self, input: &str, msg: Message) -> Result<(), String> {
        let _ = (input, msg);
        Ok(())
    }

    /// Runs periodically when the deployment sets `tick-ms` for the module.
    fn on_tick(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Answers a direct method. An error reaches the caller with status 500.
    fn on_method(&mut self, name: &str, payload: &str) -> Result<MethodResponse, String> {
        let _ = payload;
        Err(format!("method `{name}` is not implemented"))
    }
}
