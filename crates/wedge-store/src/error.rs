//! One error enum per layer: opening and I/O ([`StoreError`]), outbox appends ([`AppendError`]),
//! module state writes ([`StateError`]).
//!
//! All of them are `Clone`: one failed commit answers every waiter of the group with the same
//! error, so the underlying SQLite and I/O errors are shared behind an `Arc`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::state::MAX_KEY_BYTES;

/// Why the store could not be opened, read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The file exists but is not a readable SQLite database. It was not modified.
    #[error(
        "{path} is damaged ({reason}); it was left untouched: move it away to start with an empty \
         store, or restore a backup"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        reason: String,
    },
    /// The file is a SQLite database of another application, or of a newer wedge. It was not
    /// modified.
    #[error(
        "{path} cannot be used by this wedge: found {found}, expected {expected}; it was left \
         untouched: move it away to start with an empty store, or run a wedge that knows it"
    )]
    Incompatible {
        /// The database file.
        path: PathBuf,
        /// What the file declares.
        found: String,
        /// What this version of wedge reads.
        expected: String,
    },
    /// Another process (or another [`Store`](crate::Store) in this process) has the data
    /// directory open.
    #[error(
        "{path} is locked: another wedge is using this data directory; stop it or choose another \
         data directory"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// SQLite failed while reading or writing.
    #[error("store: {0}")]
    Sqlite(#[source] Arc<rusqlite::Error>),
    /// The writer thread is gone (it panicked); nothing more can be written.
    #[error("store: the writer thread has stopped")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(Arc::new(e))
    }
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// Why a record was not appended to the outbox. Nothing was stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The outbox holds `max_bytes` already and its limits say [`WhenFull::Reject`](crate::WhenFull::Reject).
    #[error("outbox full ({max_bytes} bytes)")]
    Full {
        /// The outbox's limit.
        max_bytes: u64,
    },
    /// The record (or batch) alone is larger than the whole outbox.
    #[error("record of {size} bytes can never fit an outbox of {max_bytes} bytes")]
    TooLarge {
        /// Bytes of the record, or of all records of a batch.
        size: u64,
        /// The outbox's limit.
        max_bytes: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a module state value was not stored or deleted. Nothing changed.
///
/// The texts of `Key` and `Quota` are what guests see, so they stay as they were in the in-memory
/// store this replaces.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    /// The key is empty or too long.
    #[error("key must be 1-{MAX_KEY_BYTES} bytes, got {0}")]
    Key(usize),
    /// Storing would exceed the quota.
    #[error("state quota of {quota} bytes exceeded ({needed} bytes needed)")]
    Quota {
        /// The module's quota.
        quota: usize,
        /// Bytes the module's state would hold after the write.
        needed: usize,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for AppendError {
    fn from(e: rusqlite::Error) -> Self {
        AppendError::Store(e.into())
    }
}

impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> Self {
        StateError::Store(e.into())
    }
}
