//! A small key-value store private to the module, on disk: it survives restarts of the module
//! and of the host.

use crate::bindings::wedge::edge::state;

/// The value stored under `key`, if any.
pub fn get(key: &str) -> Option<Vec<u8>> {
    state::get(key)
}

/// Stores `value` under `key`; returns once it is on disk. Fails when the module's quota (keys plus values) would be
/// exceeded or the key is longer than 256 bytes.
pub fn set(key: &str, value: &[u8]) -> Result<(), String> {
    state::set(key, value)
}

/// Removes `key`; nothing happens if it is absent.
pub fn delete(key: &str) {
    state::delete(key)
}
