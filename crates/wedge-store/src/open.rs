//! Opening the database: lock the data directory, check an existing file without writing to it,
//! create the schema, configure the two connections (the writer's and the readers').

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::StoreError;

/// The database file inside the data directory (SQLite adds `-wal` and `-shm` next to it).
pub const FILE_NAME: &str = "wedge.db";
/// The lock file inside the data directory: held (`flock`) while a [`Store`](crate::Store) is
/// open. Never deleted: deleting a lock file races with the next process taking it.
pub const LOCK_FILE_NAME: &str = "wedge.lock";
/// `PRAGMA application_id` of a wedge store: "WEDG".
pub const APPLICATION_ID: i32 = 0x5745_4447;
/// `PRAGMA user_version`: the schema this version of wedge writes. Older versions are migrated
/// at open (there are none yet); newer ones are refused.
pub const SCHEMA_VERSION: i32 = 1;

/// Long enough for the reader connection to wait out a commit or a checkpoint of the writer; the
/// only other users of the file are our own two connections.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, created in the same transaction as `application_id` and `user_version`.
///
/// Ordinary rowid tables throughout: values can be large (records, blobs), and `WITHOUT ROWID`
/// tables store whole rows in the B-tree. `AUTOINCREMENT` keeps outbox ids from ever being reused,
/// also after the table was emptied and the store reopened (ids feed message ids).
const SCHEMA: &str = "
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    enqueued_ms INTEGER NOT NULL,
    record BLOB NOT NULL
);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE module_state (
    module TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (module, key)
);
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
";

/// The connections of a freshly opened store.
pub(crate) struct Opened {
    /// Owned by the writer thread.
    pub writer: Connection,
    /// Shared by all readers behind a mutex (WAL lets it read while the writer commits).
    pub reader: Connection,
    /// Held until the store is closed; `None` in memory.
    pub lock: Option<File>,
    /// The database file; `None` in memory.
    pub path: Option<PathBuf>,
}

/// Opens (creating if absent) `data_dir/wedge.db`.
pub(crate) fn open_dir(data_dir: &Path) -> Result<Opened, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| StoreError::io(data_dir, e))?;
    let lock = lock(data_dir)?;
    let path = data_dir.join(FILE_NAME);
    match std::fs::metadata(&path) {
        Ok(_) => check_existing(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => remove_orphans(&path)?,
        Err(e) => return Err(StoreError::io(&path, e)),
    }
    let rw = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let writer = Connection::open_with_flags(&path, rw)?;
    // Only here, after the checks, is the file written to. WAL: readers do not block the writer
    // and one commit is one append + fsync of the -wal. FULL: that fsync happens at every commit
    // (NORMAL would only sync at checkpoints and could lose the last commits on power loss).
    let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "store: WAL not available, using {mode}");
    }
    configure(&writer)?;
    // Bound the -wal file on disk: it is reused after checkpoints but never shrinks otherwise.
    writer.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    init_schema(&writer)?;
    let ro = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let reader = Connection::open_with_flags(&path, ro)?;
    configure(&reader)?;
    Ok(Opened {
        writer,
        reader,
        lock: Some(lock),
        path: Some(path),
    })
}

/// Opens a new, empty in-memory database: the same code as on disk minus durability.
///
/// SQLite's `memdb` VFS lets the writer and the reader connection share one database when its
/// name starts with `/`; the name is unique per store, so stores are independent.
pub(crate) fn open_memory() -> Result<Opened, StoreError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let uri = format!("file:/wedge-{}-{n}?vfs=memdb", std::process::id());
    let base = OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let writer = Connection::open_with_flags(
        &uri,
        base | OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )?;
    configure(&writer)?;
    init_schema(&writer)?;
    let reader = Connection::open_with_flags(&uri, base | OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    configure(&reader)?;
    Ok(Opened {
        writer,
        reader,
        lock: None,
        path: None,
    })
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Enough for every statement of the writer and the readers: a miss means re-parsing SQL.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Takes the data directory's lock file, so that two wedge processes never share one store.
///
/// `flock` on a separate file rather than SQLite's `locking_mode = EXCLUSIVE`: exclusive mode
/// would also shut out our own reader connection. The kernel releases the lock when the process
/// dies, so a crash never leaves a stale lock behind.
fn lock(data_dir: &Path) -> Result<File, StoreError> {
    let path = data_dir.join(LOCK_FILE_NAME);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked { path }),
        Err(TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// `file:` URI of `path`, escaping what URIs reserve.
fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// `-wal`/`-shm` files without their database (someone moved `wedge.db` away as our errors
/// suggest): SQLite would replay that WAL into the new, empty database. Without the database
/// file its pages are meaningless, so remove them.
fn remove_orphans(path: &Path) -> Result<(), StoreError> {
    for suffix in ["-wal", "-shm"] {
        let orphan = with_suffix(path, suffix);
        match std::fs::remove_file(&orphan) {
            Ok(()) => {
                tracing::warn!(file = %orphan.display(), "store: removed a leftover file of a missing database");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(orphan, e)),
        }
    }
    Ok(())
}

/// Checks an existing file through a read-only connection, so a file we refuse stays exactly
/// as it was (the user may need it, or need to show it to someone).
fn check_existing(path: &Path) -> Result<(), StoreError> {
    let corrupt = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        _ => StoreError::from(e),
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // Without a -wal file the database file is complete: read it as immutable, so that SQLite
    // does not create -wal and -shm files next to a file we may refuse. With one, it has to be
    // read (it may hold the last commits); readers never write to it.
    let conn = if with_suffix(path, "-wal").exists() {
        Connection::open_with_flags(path, flags)
    } else {
        let uri = format!("{}?immutable=1", file_uri(path));
        Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
    }
    .map_err(corrupt)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let pragma = |name: &str| -> Result<i32, StoreError> {
        conn.pragma_query_value(None, name, |r| r.get(0))
            .map_err(corrupt)
    };
    let app_id = pragma("application_id")?;
    let version = pragma("user_version")?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(corrupt)?;
    let incompatible = |found: String, expected: String| StoreError::Incompatible {
        path: path.to_owned(),
        found,
        expected,
    };
    match (app_id, version, objects) {
        // An empty SQLite file (for example zero bytes): nothing to lose, it becomes ours.
        (0, 0, 0) => {}
        (APPLICATION_ID, v, _) if v <= SCHEMA_VERSION => {}
        (APPLICATION_ID, v, _) => {
            return Err(incompatible(
                format!("schema version {v} (written by a newer wedge)"),
                format!("schema version {SCHEMA_VERSION} or older"),
            ));
        }
        (other, ..) => {
            return Err(incompatible(
                format!("a SQLite database with application_id {other:#010x}"),
                format!("application_id {APPLICATION_ID:#010x} (wedge)"),
            ));
        }
    }
    let mut stmt = conn.prepare("PRAGMA quick_check").map_err(corrupt)?;
    let problems = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(corrupt)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(corrupt)?;
    if problems != ["ok"] {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("quick_check: {}", problems.join("; ")),
        });
    }
    Ok(())
}

/// Creates the schema of a new database, in one transaction with its identity.
fn init_schema(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> Result<(), StoreError> {
        let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version == 0 {
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "application_id", APPLICATION_ID)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        // Migrations from older schema versions go here.
        Ok(())
    })();
    match result {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests;
