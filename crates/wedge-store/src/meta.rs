//! Meta (small named documents, such as the current deployment) and Blobs (content-addressed
//! bytes, such as module components, named by their SHA-256).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::writer::Op;
use crate::{Inner, StoreError};

/// Small named documents (`"deployment"` → JSON bytes, …). Cheap to clone.
#[derive(Clone)]
pub struct Meta {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta").finish_non_exhaustive()
    }
}

impl Meta {
    /// Stores `value` under `name`, replacing any previous value; returns once it is durable.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails; nothing changed then.
    pub async fn set(&self, name: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.write(name, Some(value)).await
    }

    /// Removes `name` (nothing happens if it is absent); returns once that is durable.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails; nothing changed then.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.write(name, None).await
    }

    async fn write(&self, name: &str, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Op::Meta {
            name: name.to_owned(),
            value,
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The value under `name`.
    ///
    /// # Errors
    /// [`StoreError`] if the read fails.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?;
            Ok(stmt.query_row([name], |r| r.get(0)).optional()?)
        })
    }
}

/// Content-addressed bytes, named by the lowercase hex SHA-256 of their content. Cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").finish_non_exhaustive()
    }
}

/// Lowercase hex SHA-256 of `data`: the name [`Blobs::put`] gives it.
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

impl Blobs {
    /// Stores `data`; returns its SHA-256 (lowercase hex) once it is durable. Storing the same
    /// bytes again changes nothing.
    ///
    /// The digest is computed on the calling thread (so a large blob does not hold up other
    /// writers' commits).
    ///
    /// # Errors
    /// [`StoreError`] if the store fails; nothing changed then.
    pub async fn put(&self, data: Vec<u8>) -> Result<String, StoreError> {
        let sha256 = sha256_hex(&data);
        let (reply, rx) = oneshot::channel();
        self.inner.send(Op::BlobPut {
            sha256: sha256.clone(),
            data,
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)??;
        Ok(sha256)
    }

    /// The bytes whose SHA-256 is `sha256` (lowercase hex).
    ///
    /// # Errors
    /// [`StoreError`] if the read fails.
    pub fn get(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT data FROM blobs WHERE sha256 = ?1")?;
            Ok(stmt.query_row([sha256], |r| r.get(0)).optional()?)
        })
    }

    /// The digests of all blobs, sorted.
    ///
    /// # Errors
    /// [`StoreError`] if the read fails.
    pub fn list(&self) -> Result<Vec<String>, StoreError> {
        self.inner.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT sha256 FROM blobs ORDER BY sha256")?;
            let list = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(list)
        })
    }

    /// Deletes every blob whose digest is not in `keep`; returns how many were deleted, once
    /// that is durable.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails; nothing changed then.
    pub async fn retain(&self, keep: &[String]) -> Result<usize, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Op::BlobRetain {
            keep: keep.to_vec(),
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Writer side of [`Meta::set`] and [`Meta::delete`].
pub(crate) fn write(
    conn: &Connection,
    name: &str,
    value: Option<Vec<u8>>,
) -> Result<(), StoreError> {
    match value {
        Some(value) => conn
            .prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")?
            .execute(params![name, value])?,
        None => conn
            .prepare_cached("DELETE FROM meta WHERE name = ?1")?
            .execute([name])?,
    };
    Ok(())
}

/// Writer side of [`Blobs::put`].
pub(crate) fn put_blob(conn: &Connection, sha256: &str, data: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR IGNORE INTO blobs (sha256, data) VALUES (?1, ?2)")?
        .execute(params![sha256, data])?;
    Ok(())
}

/// Writer side of [`Blobs::retain`].
pub(crate) fn retain_blobs(conn: &Connection, keep: &[String]) -> Result<usize, StoreError> {
    let keep: HashSet<&str> = keep.iter().map(String::as_str).collect();
    let all: Vec<String> = conn
        .prepare_cached("SELECT sha256 FROM blobs")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut delete = conn.prepare_cached("DELETE FROM blobs WHERE sha256 = ?1")?;
    let mut deleted = 0;
    for sha in all.iter().filter(|sha| !keep.contains(sha.as_str())) {
        deleted += delete.execute([sha])?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use crate::Store;

    use super::sha256_hex;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn meta_round_trip_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let meta = Store::open(dir.path()).unwrap().meta();
            assert_eq!(meta.get("deployment").unwrap(), None);
            meta.set("deployment", b"{\"v\":1}".to_vec()).await.unwrap();
            meta.set("deployment", b"{\"v\":2}".to_vec()).await.unwrap();
            meta.set("other", b"x".to_vec()).await.unwrap();
            meta.delete("other").await.unwrap();
        }
        let meta = Store::open(dir.path()).unwrap().meta();
        assert_eq!(meta.get("deployment").unwrap().unwrap(), b"{\"v\":2}");
        assert_eq!(meta.get("other").unwrap(), None);
    }

    #[tokio::test]
    async fn blobs_are_content_addressed_and_retain_deletes_the_rest() {
        let store = Store::open_in_memory().unwrap();
        let blobs = store.blobs();
        let a = blobs.put(b"abc".to_vec()).await.unwrap();
        assert_eq!(a, sha256_hex(b"abc"));
        assert_eq!(blobs.put(b"abc".to_vec()).await.unwrap(), a); // idempotent
        let b = blobs.put(vec![7; 100_000]).await.unwrap();
        let c = blobs.put(Vec::new()).await.unwrap();
        assert_eq!(blobs.get(&a).unwrap().unwrap(), b"abc");
        assert_eq!(blobs.get(&b).unwrap().unwrap(), vec![7; 100_000]);
        assert_eq!(blobs.get(&c).unwrap().unwrap(), b"");
        assert_eq!(blobs.list().unwrap().len(), 3);
        assert_eq!(blobs.retain(std::slice::from_ref(&a)).await.unwrap(), 2);
        assert_eq!(blobs.list().unwrap(), [a]);
        assert_eq!(blobs.get(&b).unwrap(), None);
    }
}
