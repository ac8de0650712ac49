//! Module state (`wedge:edge/state`): a small durable key-value store per module, with a byte
//! quota of keys plus values. Same semantics and error texts as the in-memory store it
//! replaces; one table keyed by (module, key).

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::writer::Op;
use crate::{Inner, StateError, StoreError};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Default quota of one module: keys plus values.
pub const DEFAULT_QUOTA_BYTES: usize = 1 << 20;

/// One module's durable key-value store. Cheap to clone; handles of the same module share its
/// data and its byte count.
#[derive(Clone)]
pub struct ModuleState {
    pub(crate) inner: Arc<Inner>,
    pub(crate) module: Arc<str>,
    pub(crate) quota: usize,
}

impl std::fmt::Debug for ModuleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleState")
            .field("module", &self.module)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl ModuleState {
    /// The module this state belongs to.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The value under `key`.
    ///
    /// # Errors
    /// [`StoreError`] if the read fails.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT value FROM module_state WHERE module = ?1 AND key = ?2")?;
            Ok(stmt
                .query_row(params![&*self.module, key], |r| r.get(0))
                .optional()?)
        })
    }

    /// Stores `value` under `key`; returns once it is durable (group commit with every other
    /// write of the store).
    ///
    /// # Errors
    /// [`StateError::Key`] unless the key is 1 to [`MAX_KEY_BYTES`] bytes, [`StateError::Quota`]
    /// if the module's keys and values would exceed its quota (a replaced value no longer
    /// counts), [`StateError::Store`] if the store fails. Nothing changes then.
    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StateError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(StateError::Key(key.len()));
        }
        self.write(key, Some(value)).await
    }

    /// Removes `key` (nothing happens if it is absent); returns once that is durable.
    ///
    /// # Errors
    /// [`StateError::Store`] if the store fails.
    pub async fn delete(&self, key: &str) -> Result<(), StateError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            // No such key can have been stored.
            return Ok(());
        }
        self.write(key, None).await
    }

    async fn write(&self, key: &str, value: Option<Vec<u8>>) -> Result<(), StateError> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Op::State {
            module: self.module.clone(),
            quota: self.quota,
            key: key.to_owned(),
            value,
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The module's keys, sorted.
    ///
    /// # Errors
    /// [`StoreError`] if the read fails.
    pub fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.inner.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT key FROM module_state WHERE module = ?1 ORDER BY key")?;
            let keys = stmt
                .query_map([&*self.module], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(keys)
        })
    }

    /// Bytes of keys plus values the module stores, as of the last commit.
    pub fn used_bytes(&self) -> usize {
        self.inner.shared.usage(&self.module)
    }

    /// The module's quota.
    pub fn quota(&self) -> usize {
        self.quota
    }
}

/// Bytes of state per module, at open. `octet_length`: `length` of TEXT counts characters.
pub(crate) fn load(conn: &Connection) -> Result<HashMap<String, usize>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT module, sum(octet_length(key) + length(value)) FROM module_state GROUP BY module",
    )?;
    let usage = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, usize::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
        })?
        .collect::<Result<_, _>>()?;
    Ok(usage)
}

/// Writer side of `set` (`Some`) and `delete` (`None`). Changes `usage` only as its last step,
/// once nothing can fail any more (see `Writer::savepoint`).
pub(crate) fn write(
    conn: &Connection,
    usage: &mut HashMap<String, usize>,
    module: &str,
    quota: usize,
    key: &str,
    value: Option<Vec<u8>>,
) -> Result<(), StateError> {
    let used = usage.get(module).copied().unwrap_or(0);
    let old: Option<i64> = conn
        .prepare_cached(
            "SELECT octet_length(key) + length(value) FROM module_state \
             WHERE module = ?1 AND key = ?2",
        )
        .and_then(|mut s| s.query_row([module, key], |r| r.get(0)).optional())?;
    let old = old.map_or(0, |n| usize::try_from(n).unwrap_or(0));
    let needed = match value {
        Some(value) => {
            let needed = used.saturating_sub(old) + key.len() + value.len();
            if needed > quota {
                return Err(StateError::Quota { quota, needed });
            }
            conn.prepare_cached(
                "INSERT INTO module_state (module, key, value) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (module, key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(params![module, key, value]))?;
            needed
        }
        None => {
            conn.prepare_cached("DELETE FROM module_state WHERE module = ?1 AND key = ?2")
                .and_then(|mut s| s.execute([module, key]))?;
            used.saturating_sub(old)
        }
    };
    usage.insert(module.to_owned(), needed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{StateError, Store};

    #[tokio::test]
    async fn quota_counts_keys_and_values_and_replacements() {
        let store = Store::open_in_memory().unwrap();
        let kv = store.module_state("m", 10);
        kv.set("a", b"1234".to_vec()).await.unwrap(); // 5 bytes
        kv.set("a", b"12345678".to_vec()).await.unwrap(); // replaces: 9 bytes
        let err = kv.set("b", b"1".to_vec()).await.unwrap_err();
        assert!(
            matches!(
                err,
                StateError::Quota {
                    quota: 10,
                    needed: 11
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "state quota of 10 bytes exceeded (11 bytes needed)"
        );
        assert_eq!(kv.get("a").unwrap().as_deref(), Some(&b"12345678"[..]));
        assert_eq!(kv.used_bytes(), 9);
        kv.delete("a").await.unwrap();
        assert_eq!(kv.used_bytes(), 0);
        kv.set("b", b"12345678".to_vec()).await.unwrap();
        let err = kv.set("", b"".to_vec()).await.unwrap_err();
        assert!(matches!(err, StateError::Key(0)), "{err:?}");
        assert_eq!(err.to_string(), "key must be 1-256 bytes, got 0");
        let long = "k".repeat(257);
        assert!(matches!(
            kv.set(&long, vec![]).await,
            Err(StateError::Key(257))
        ));
        assert_eq!(kv.keys().unwrap(), ["b"]);
    }

    #[tokio::test]
    async fn modules_are_separate_and_multibyte_keys_count_bytes() {
        let store = Store::open_in_memory().unwrap();
        let a = store.module_state("a", 100);
        let b = store.module_state("b", 100);
        a.set("é", b"xy".to_vec()).await.unwrap(); // 2 + 2 bytes
        b.set("k", b"v".to_vec()).await.unwrap();
        assert_eq!(a.used_bytes(), 4);
        assert_eq!(b.used_bytes(), 2);
        assert_eq!(a.get("k").unwrap(), None);
        assert_eq!(a.keys().unwrap(), ["é"]);
        // A second handle of the same module shares data and count.
        assert_eq!(store.module_state("a", 100).used_bytes(), 4);
    }

    #[tokio::test]
    async fn state_survives_reopen_with_its_byte_count() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let kv = store.module_state("sensor", 1024);
            kv.set("count", b"41".to_vec()).await.unwrap();
            kv.set("count", b"42".to_vec()).await.unwrap();
            kv.set("gone", b"x".to_vec()).await.unwrap();
            kv.delete("gone").await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let kv = store.module_state("sensor", 1024);
        assert_eq!(kv.get("count").unwrap().as_deref(), Some(&b"42"[..]));
        assert_eq!(kv.get("gone").unwrap(), None);
        assert_eq!(kv.used_bytes(), 7);
    }
}
