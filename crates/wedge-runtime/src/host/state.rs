//! `wedge:edge/state`: a small key-value store per module that outlives module restarts.
//!
//! Held in memory by the host for now; the durable store replaces [`KvStore`]'s map.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::bindings::wedge::edge::state::Host;

use super::HostState;

/// Longest key.
pub const MAX_KEY_BYTES: usize = 256;
/// Default quota of one module: keys plus values.
pub const DEFAULT_QUOTA_BYTES: usize = 1 << 20;

/// Why a value was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The key is empty or too long.
    #[error("key must be 1-{MAX_KEY_BYTES} bytes, got {0}")]
    Key(usize),
    /// Storing would exceed the quota.
    #[error("state quota of {quota} bytes exceeded ({needed} bytes needed)")]
    Quota {
        /// The module's quota.
        quota: usize,
        /// Bytes the store would hold after the write.
        needed: usize,
    },
}

/// One module's key-value store with a byte quota.
#[derive(Debug)]
pub struct KvStore {
    quota: usize,
    inner: Mutex<KvInner>,
}

#[derive(Debug, Default)]
struct KvInner {
    map: HashMap<String, Vec<u8>>,
    bytes: usize,
}

impl KvStore {
    /// An empty store holding at most `quota` bytes of keys and values.
    pub fn new(quota: usize) -> Self {
        KvStore {
            quota,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KvInner> {
        // A panic while holding this lock cannot leave the map inconsistent (each operation is
        // one insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().map.get(key).cloned()
    }

    /// Stores `value` under `key`.
    ///
    /// # Errors
    /// [`StateError`] if the key is invalid or the quota would be exceeded; nothing changes.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(StateError::Key(key.len()));
        }
        let mut inner = self.lock();
        let old = inner.map.get(key).map_or(0, |v| key.len() + v.len());
        let needed = inner.bytes - old + key.len() + value.len();
        if needed > self.quota {
            return Err(StateError::Quota {
                quota: self.quota,
                needed,
            });
        }
        inner.bytes = needed;
        inner.map.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(v) = inner.map.remove(key) {
            inner.bytes -= key.len() + v.len();
        }
    }
}

impl Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.module.state.get(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        Ok(self
            .module
            .state
            .set(&key, &value)
            .map_err(|e| e.to_string()))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.module.state.delete(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_counts_keys_and_values_and_replacements() {
        let kv = KvStore::new(10);
        kv.set("a", b"1234").unwrap(); // 5 bytes
        kv.set("a", b"12345678").unwrap(); // replaces: 9 bytes
        assert_eq!(
            kv.set("b", b"1"),
            Err(StateError::Quota {
                quota: 10,
                needed: 11
            })
        );
        assert_eq!(kv.get("a").as_deref(), Some(&b"12345678"[..]));
        kv.delete("a");
        kv.set("b", b"12345678").unwrap();
        assert_eq!(kv.set("", b""), Err(StateError::Key(0)));
    }
}
