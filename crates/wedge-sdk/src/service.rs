//! The trait a long-running module implements besides [`Module`].

use crate::Module;

/// A module with a loop of its own (the `service` export of `wit/wedge.wit`), exported with
/// `wedge_sdk::export!(MyModule, service)`.
///
/// The host builds a second instance of the component for it: [`Module::init`] with the same
/// configuration, then [`Service::run`], which is meant to run for ever. Its memory is its own:
/// the instance that [`Module`]'s other methods are called on is another one, so the two share
/// only what goes through the host ([`crate::state`], telemetry). `run` should block in
/// `wasi:io/poll` (a socket, a timer; `wstd::runtime::block_on` does) while it has nothing to
/// do: that costs the host nothing. Returning `Err` or panicking fails the module, which is
/// restarted with backoff as its `restart-policy` says; returning `Ok` stops it cleanly.
/// A configuration that [`Module::on_config`] accepts restarts `run`'s instance with it.
pub trait Service: Module {
    /// The module's loop.
    fn run(&mut self) -> Result<(), String>;
}
