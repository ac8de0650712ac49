//! wedge's embedded crash-safe store: one SQLite file, `DATA_DIR/wedge.db`, holding the
//! telemetry [`Outbox`], each module's [`ModuleState`], [`Meta`] documents and [`Blobs`].
//!
//! Durability: WAL with `synchronous = FULL`, so a write whose future has completed survives a
//! crash or power loss. Throughput: every write goes to one writer thread, which commits all the
//! writes pending at that moment in one transaction and one fsync (group commit); reads use a
//! separate read-only connection and never wait for that fsync.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use wedge_store::{OutboxLimits, Store, WhenFull};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let limits = OutboxLimits { max_bytes: 1 << 20, ttl: None, when_full: WhenFull::Reject };
//! let outbox = store.outbox(limits);
//! let id = outbox.append(b"reading".to_vec()).await?; // durable now
//! let records = outbox.read_after(0, 100)?;
//! assert_eq!(records, [(id, b"reading".to_vec())]);
//! outbox.acknowledge(&[id]);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod error;
mod meta;
mod open;
mod outbox;
mod state;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

pub use error::{AppendError, StateError, StoreError};
pub use meta::{Blobs, Meta, sha256_hex};
pub use open::{APPLICATION_ID, FILE_NAME, LOCK_FILE_NAME, SCHEMA_VERSION};
pub use outbox::{Outbox, OutboxLimits, OutboxStats, WhenFull};
pub use state::{DEFAULT_QUOTA_BYTES, MAX_KEY_BYTES, ModuleState};
use writer::{Op, Shared};

/// A handle to the store. Cheap to clone; the store closes when the last handle (including
/// every [`Outbox`], [`ModuleState`], [`Meta`] and [`Blobs`] made from it) is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// What all handles share.
pub(crate) struct Inner {
    /// `None` only while dropping.
    ops: Option<mpsc::Sender<Op>>,
    /// The readers' connection; `None` only while dropping.
    reader: Mutex<Option<Connection>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    path: Option<PathBuf>,
    /// Released after the writer has closed the database.
    _lock: Option<File>,
}

impl Store {
    /// Opens `data_dir/wedge.db`, creating the directory and the file if absent.
    ///
    /// An existing file is checked before anything writes to it, and left untouched if refused.
    ///
    /// # Errors
    /// - [`StoreError::Locked`] if another process (or another `Store` of this process) has the
    ///   data directory open (an `flock` on `data_dir/wedge.lock`);
    /// - [`StoreError::Corrupt`] if the file is not SQLite or fails `PRAGMA quick_check`;
    /// - [`StoreError::Incompatible`] if it belongs to another application or to a newer wedge;
    /// - [`StoreError::Io`] or [`StoreError::Sqlite`] if the file cannot be created or read.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::start(open::open_dir(data_dir)?)
    }

    /// A new, empty store in memory: the same code, without durability (for tests and
    /// benchmarks).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if SQLite cannot create it.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::start(open::open_memory()?)
    }

    fn start(opened: open::Opened) -> Result<Store, StoreError> {
        let started = writer::spawn(opened.writer)?;
        Ok(Store {
            inner: Arc::new(Inner {
                ops: Some(started.ops),
                reader: Mutex::new(Some(opened.reader)),
                writer: Some(started.thread),
                shared: started.shared,
                path: opened.path,
                _lock: opened.lock,
            }),
        })
    }

    /// The outbox, with these limits (they apply to appends and reads through this handle).
    pub fn outbox(&self, limits: OutboxLimits) -> Outbox {
        Outbox {
            inner: self.inner.clone(),
            limits,
        }
    }

    /// The state of `module`, limited to `quota_bytes` of keys plus values.
    pub fn module_state(&self, module: &str, quota_bytes: usize) -> ModuleState {
        ModuleState {
            inner: self.inner.clone(),
            module: module.into(),
            quota: quota_bytes,
        }
    }

    /// Small named documents.
    pub fn meta(&self) -> Meta {
        Meta {
            inner: self.inner.clone(),
        }
    }

    /// Content-addressed blobs.
    pub fn blobs(&self) -> Blobs {
        Blobs {
            inner: self.inner.clone(),
        }
    }

    /// The database file; `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Returns once everything written before the call (including acknowledgements, which do
    /// not wait for the disk themselves) is committed and durable.
    ///
    /// # Errors
    /// [`StoreError`] if that commit fails.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Op::Flush { reply })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl Inner {
    fn send(&self, op: Op) -> Result<(), StoreError> {
        let ops = self.ops.as_ref().ok_or(StoreError::Closed)?;
        ops.send(op).map_err(|_| StoreError::Closed)
    }

    /// Runs `f` on the readers' connection. WAL: it sees the last commit and never waits for
    /// the writer (except, briefly, for a checkpoint).
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = writer::lock(&self.reader);
        f(guard.as_ref().ok_or(StoreError::Closed)?)
    }
}

impl Drop for Inner {
    /// Closes the store: the reader first, so that the writer's connection is the last one and
    /// its close checkpoints the WAL into the database file; then the writer commits whatever is
    /// still queued and exits. Blocks for that last commit.
    fn drop(&mut self) {
        drop(writer::lock(&self.reader).take());
        drop(self.ops.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store: the writer thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Store>();
        check::<Outbox>();
        check::<ModuleState>();
        check::<Meta>();
        check::<Blobs>();
        check::<StoreError>();
        check::<AppendError>();
        check::<StateError>();
    }
}
