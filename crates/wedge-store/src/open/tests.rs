use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::Connection;

use crate::{
    APPLICATION_ID, FILE_NAME, LOCK_FILE_NAME, SCHEMA_VERSION, Store, StoreError, sha256_hex,
};

/// Every file of `dir` with the digest of its bytes, but the lock file and the WAL index
/// (`-shm`, which any reader may rebuild): what "left untouched" means.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), e.path()))
        .filter(|(name, _)| name != LOCK_FILE_NAME && !name.ends_with("-shm"))
        .map(|(name, path)| (name, sha256_hex(&std::fs::read(path).unwrap())))
        .collect()
}

/// Opens `dir` expecting a refusal that leaves every file as it was.
fn refused(dir: &Path) -> StoreError {
    let before = snapshot(dir);
    let err = Store::open(dir).unwrap_err();
    assert_eq!(snapshot(dir), before, "a refused file must not change");
    let text = err.to_string();
    assert!(
        text.contains(&dir.join(FILE_NAME).display().to_string()),
        "{text}"
    );
    assert!(text.contains("move it away"), "{text}");
    err
}

/// A SQLite database in rollback-journal mode with one table (no -wal or -shm files).
fn foreign_db(dir: &Path, application_id: i32, user_version: i32) {
    let conn = Connection::open(dir.join(FILE_NAME)).unwrap();
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    conn.pragma_update(None, "application_id", application_id)
        .unwrap();
    conn.pragma_update(None, "user_version", user_version)
        .unwrap();
}

#[test]
fn a_new_store_carries_wedge_identity() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("nested/data")).unwrap();
    let path = store.path().unwrap().to_owned();
    assert_eq!(path, dir.path().join("nested/data").join(FILE_NAME));
    drop(store);
    // The last close checkpointed and removed the WAL.
    assert!(!path.with_extension("db-wal").exists());
    let conn = Connection::open(&path).unwrap();
    let id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(
        (id, version, mode.as_str()),
        (APPLICATION_ID, SCHEMA_VERSION, "wal")
    );
}

#[test]
fn garbage_is_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), vec![0x5a; 10_000]).unwrap();
    let err = refused(dir.path());
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[tokio::test]
async fn a_damaged_page_is_corrupt_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let outbox = store.outbox(crate::OutboxLimits {
            max_bytes: 1 << 30,
            ttl: None,
            when_full: crate::WhenFull::Reject,
        });
        outbox.append_batch(vec![vec![1; 3000]; 200]).await.unwrap();
    }
    // Scribble over the middle of the file (B-tree pages of the outbox), keeping the header.
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 1024, "{}", bytes.len());
    bytes[20_000..60_000].fill(0xa5);
    std::fs::write(&path, bytes).unwrap();
    let err = refused(dir.path());
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn a_foreign_database_is_incompatible_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    foreign_db(dir.path(), 0x1234_5678, 0);
    let err = refused(dir.path());
    assert!(
        matches!(&err, StoreError::Incompatible { found, .. } if found.contains("0x12345678")),
        "{err:?}"
    );
    // Not setting application_id (most applications) is no excuse if the file has tables.
    let dir = tempfile::tempdir().unwrap();
    foreign_db(dir.path(), 0, 0);
    let err = refused(dir.path());
    assert!(matches!(err, StoreError::Incompatible { .. }), "{err:?}");
}

#[test]
fn a_newer_schema_is_incompatible_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    foreign_db(dir.path(), APPLICATION_ID, SCHEMA_VERSION + 1);
    let err = refused(dir.path());
    assert!(
        matches!(&err, StoreError::Incompatible { found, .. } if found.contains("schema version 2")),
        "{err:?}"
    );
}

#[test]
fn an_empty_file_becomes_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), b"").unwrap();
    Store::open(dir.path()).unwrap();
    // And reopening our own store passes the checks.
    Store::open(dir.path()).unwrap();
}

#[test]
fn a_second_open_of_the_same_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("another wedge"), "{err}");
    // Handles keep the store open; the last one closes it and releases the lock.
    let meta = store.meta();
    drop(store);
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
    drop(meta);
    Store::open(dir.path()).unwrap();
}

#[test]
fn leftover_wal_files_of_a_moved_database_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wedge.db-wal"), vec![1; 5000]).unwrap();
    std::fs::write(dir.path().join("wedge.db-shm"), vec![2; 5000]).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.meta().get("x").unwrap(), None);
}

#[tokio::test]
async fn in_memory_stores_are_independent() {
    let a = Store::open_in_memory().unwrap();
    let b = Store::open_in_memory().unwrap();
    assert_eq!(a.path(), None);
    a.meta().set("k", b"a".to_vec()).await.unwrap();
    assert_eq!(a.meta().get("k").unwrap().unwrap(), b"a");
    assert_eq!(b.meta().get("k").unwrap(), None);
}
