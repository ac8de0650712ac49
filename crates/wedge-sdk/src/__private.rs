//! Support code for [`export!`](crate::export); not part of the public API.

use std::cell::RefCell;
use std::thread::LocalKey;

use serde::de::DeserializeOwned;

use crate::{Config, Message, MethodResponse, Module, Service};

/// Where `export!` keeps the one module instance. Wasm is single-threaded, so a thread-local
/// `RefCell` is a plain global without the need for `unsafe` or locking.
pub type Slot<T> = LocalKey<RefCell<Option<T>>>;

const NOT_INITIALISED: &str = "module not initialised";

/// Handles `init`: a new instance replaces any previous one.
pub fn init<T: Module>(slot: &'static Slot<T>, config: String) -> Result<(), String> {
    // Drop the previous instance first so that a failing `init` leaves the module
    // uninitialised rather than half-replaced, and the old instance's memory is freed before the
    // new one is built.
    slot.with_borrow_mut(|instance| *instance = None);
    let module = T::init(Config::from_json(&config)?)?;
    slot.with_borrow_mut(|instance| *instance = Some(module));
    Ok(())
}

/// Handles `on-config`.
pub fn on_config<T: Module>(slot: &'static Slot<T>, config: String) -> Result<(), String> {
    let config = Config::from_json(&config)?;
    with(slot, |m| m.on_config(config))
}

/// Handles `on-message`.
pub fn on_message<T: Module>(
    slot: &'static Slot<T>,
    input: String,
    msg: Message,
) -> Result<(), String> {
    with(slot, |m| m.on_message(&input, msg))
}

/// Handles `on-tick`.
pub fn on_tick<T: Module>(slot: &'static Slot<T>) -> Result<(), String> {
    with(slot, |m| m.on_tick())
}

/// Handles `on-method`.
pub fn on_method<T: Module>(
    slot: &'static Slot<T>,
    name: String,
    payload: String,
) -> Result<MethodResponse, String> {
    with(slot, |m| m.on_method(&name, &payload))
}

/// Handles `run` (in the instance the host made for it, which got its own `init`).
pub fn run<T: Service>(slot: &'static Slot<T>) -> Result<(), String> {
    with(slot, |m| m.run())
}

/// Runs `f` on the instance, or fails if `init` has not succeeded. Host calls never overlap and
/// imports cannot re-enter exports, so the mutable borrow cannot conflict.
fn with<T: Module, R>(
    slot: &'static Slot<T>,
    f: impl FnOnce(&mut T) -> Result<R, String>,
) -> Result<R, String> {
    slot.with_borrow_mut(|instance| match instance {
        Some(module) => f(module),
        None => Err(NOT_INITIALISED.to_string()),
    })
}

/// Deserialises `value`, naming the offending field under `what` in the error.
pub(crate) fn from_value<T: DeserializeOwned>(
    value: &serde_json::Value,
    what: &str,
) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        // The root path prints as `.`, which reads badly in a message.
        if path == "." {
            format!("{what}: {}", e.inner())
        } else {
            format!("{what} field `{path}`: {}", e.inner())
        }
    })
}
