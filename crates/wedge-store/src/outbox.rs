//! The durable outbox: store-and-forward of telemetry until the upstream acknowledges it.
//!
//! Records are opaque bytes with a store-assigned id that only grows (SQLite `AUTOINCREMENT`:
//! never reused, also after deletes and restarts), so callers can derive stable message ids.
//! Byte accounting counts record lengths, not SQLite pages, and is kept in memory: recomputed
//! at open, then updated by the writer at each commit.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::writer::Op;
use crate::{AppendError, Inner, StoreError};

/// How much an [`Outbox`] holds and what happens when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Most bytes of records (their lengths; SQLite's own overhead is not counted).
    pub max_bytes: u64,
    /// Records older than this are deleted instead of delivered (counted as expired). `None`:
    /// records never expire.
    pub ttl: Option<Duration>,
    /// What an append does when the records would exceed `max_bytes`.
    pub when_full: WhenFull,
}

/// What an append does when the outbox is full. Either way, records past their TTL are removed
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse the new records ([`AppendError::Full`]): the caller keeps its back-pressure.
    Reject,
    /// Delete the oldest records until the new ones fit (counted as dropped).
    DropOldest,
}

/// Counters of an outbox, as of the last commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Records waiting.
    pub depth: u64,
    /// Bytes of the records waiting.
    pub bytes: u64,
    /// Age of the oldest record waiting.
    pub oldest_age: Option<Duration>,
    /// Records deleted to make room ([`WhenFull::DropOldest`]) or discarded because they could
    /// not be delivered ([`Outbox::discard`]), ever (persisted).
    pub dropped: u64,
    /// Records deleted past their TTL, ever (persisted).
    pub expired: u64,
    /// Records appended since the store was opened.
    pub appended: u64,
    /// Records acknowledged (and so deleted) since the store was opened.
    pub acknowledged: u64,
    /// Transactions the store committed since it was opened (all kinds of writes: group commit
    /// makes this much smaller than `appended` under concurrent load).
    pub commits: u64,
}

/// The writer's view of the outbox, published to handles after each commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OutboxCounters {
    pub depth: u64,
    pub bytes: u64,
    pub oldest_ms: Option<i64>,
    pub dropped: u64,
    pub expired: u64,
    pub appended: u64,
    pub acknowledged: u64,
    pub commits: u64,
    pub max_id: u64,
}

/// The store's outbox, with the limits of this handle. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    pub(crate) inner: Arc<Inner>,
    pub(crate) limits: OutboxLimits,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Appends one record; returns its id once it is durable (committed and fsynced).
    /// Concurrent appends share one commit.
    ///
    /// If the future is dropped before it completes, the record may or may not be stored.
    ///
    /// # Errors
    /// [`AppendError::TooLarge`] if the record alone exceeds `max_bytes`, [`AppendError::Full`]
    /// if it does not fit under [`WhenFull::Reject`], [`AppendError::Store`] if the store fails.
    pub async fn append(&self, record: Vec<u8>) -> Result<u64, AppendError> {
        let ids = self.append_batch(vec![record]).await?;
        ids.first()
            .copied()
            .ok_or(AppendError::Store(StoreError::Closed))
    }

    /// Appends records, all or nothing; returns their ids (in order) once they are durable.
    ///
    /// # Errors
    /// As [`append`](Self::append), for the records together: `TooLarge` if their total exceeds
    /// `max_bytes`.
    pub async fn append_batch(&self, records: Vec<Vec<u8>>) -> Result<Vec<u64>, AppendError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let size = records.iter().map(|r| r.len() as u64).sum();
        let max_bytes = self.limits.max_bytes;
        if size > max_bytes {
            return Err(AppendError::TooLarge { size, max_bytes });
        }
        let (reply, rx) = oneshot::channel();
        self.inner.send(Op::Append {
            limits: self.limits,
            records,
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Up to `limit` records with an id above `after`, oldest first. Records past their TTL are
    /// skipped and handed to the writer to be deleted and counted as expired.
    ///
    /// Synchronous: one indexed read on the reader connection, which never waits for the
    /// writer's fsync (WAL).
    ///
    /// # Errors
    /// [`StoreError`] if the read fails.
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let cutoff = self.limits.ttl.map(|ttl| cutoff_ms(now_ms(), ttl));
        let mut records = Vec::new();
        let mut expired = Vec::new();
        let mut cursor = to_sql_id(after);
        self.inner.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, enqueued_ms, record FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            // Expired records come first (ids follow enqueue time): read on past them.
            while records.len() < limit {
                let want = limit - records.len();
                let rows = stmt
                    .query_map(
                        params![cursor, i64::try_from(want).unwrap_or(i64::MAX)],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get(2)?)),
                    )?
                    .collect::<Result<Vec<(i64, i64, Vec<u8>)>, _>>()?;
                let (page, expired_before) = (rows.len(), expired.len());
                for (id, enqueued_ms, record) in rows {
                    cursor = id;
                    if cutoff.is_some_and(|cutoff| enqueued_ms < cutoff) {
                        expired.push(from_sql_id(id));
                    } else {
                        records.push((from_sql_id(id), record));
                    }
                }
                if page < want || expired.len() == expired_before {
                    break;
                }
            }
            Ok(())
        })?;
        if !expired.is_empty() {
            self.inner.send(Op::Expire(expired))?;
        }
        Ok(records)
    }

    /// The consumer's acknowledgement: deletes these records. Returns at once; the deletion is
    /// committed with the next group (without an fsync of its own: a lost acknowledgement only
    /// means a resend). Unknown ids are ignored.
    pub fn acknowledge(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        if let Err(e) = self.inner.send(Op::Ack(ids.to_vec())) {
            tracing::warn!("outbox: acknowledgement of {} records lost: {e}", ids.len());
        }
    }

    /// Deletes records the consumer cannot use (damaged, or refused for good by the far end),
    /// counted as `dropped` rather than delivered. Returns at once, as
    /// [`acknowledge`](Self::acknowledge) does.
    pub fn discard(&self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        tracing::warn!(
            records = ids.len(),
            "outbox: discarding records that cannot be delivered"
        );
        if let Err(e) = self.inner.send(Op::Discard(ids.to_vec())) {
            tracing::warn!("outbox: discard of {} records lost: {e}", ids.len());
        }
    }

    /// Up to `limit` records after `*cursor`, oldest first, advancing `*cursor` past everything
    /// they cover, including acknowledged or expired ids (which are simply absent), so that
    /// [`wait_after`](Self::wait_after)`(*cursor)` then waits for new records only. The way a
    /// consumer reads the outbox in order.
    ///
    /// # Errors
    /// [`StoreError`] if the read fails.
    pub fn read_from(
        &self,
        cursor: &mut u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        // Taken before reading: every record committed up to here is visible to the read.
        let committed = self.last_id();
        let records = self.read_after(*cursor, limit)?;
        if records.len() < limit {
            *cursor = (*cursor).max(committed);
        }
        if let Some(&(last, _)) = records.last() {
            *cursor = (*cursor).max(last);
        }
        Ok(records)
    }

    /// The highest id ever committed (0 for a new store). A reader that read every record up to
    /// it after calling this has seen everything committed before the call.
    pub fn last_id(&self) -> u64 {
        *self.inner.shared.last_id.borrow()
    }

    /// Resolves once a record with an id above `after` has been committed (at once if one
    /// already was, even if it has since been acknowledged). Cancel-safe.
    pub async fn wait_after(&self, after: u64) {
        let mut rx = self.inner.shared.last_id.subscribe();
        // Fails only if the sender is gone, which cannot happen while `self` holds the store.
        let _ = rx.wait_for(|&id| id > after).await;
    }

    /// The counters as of the last commit.
    pub fn stats(&self) -> OutboxStats {
        let c = self.inner.shared.outbox();
        OutboxStats {
            depth: c.depth,
            bytes: c.bytes,
            oldest_age: c.oldest_ms.map(|ms| {
                Duration::from_millis(u64::try_from(now_ms().saturating_sub(ms)).unwrap_or(0))
            }),
            dropped: c.dropped,
            expired: c.expired,
            appended: c.appended,
            acknowledged: c.acknowledged,
            commits: c.commits,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn cutoff_ms(now: i64, ttl: Duration) -> i64 {
    now.saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// Ids are positive `i64`s in SQLite; an id above `i64::MAX` cannot exist.
fn to_sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

fn from_sql_id(id: i64) -> u64 {
    u64::try_from(id).unwrap_or(0)
}

const PERSISTED: [&str; 2] = ["outbox.dropped", "outbox.expired"];

/// The outbox's counters from the database, at open.
pub(crate) fn load(conn: &Connection) -> Result<OutboxCounters, StoreError> {
    let (depth, bytes, max_id) = conn.query_row(
        "SELECT count(*), coalesce(sum(length(record)), 0), coalesce(max(id), 0) FROM outbox",
        [],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        },
    )?;
    let mut c = OutboxCounters {
        depth: from_sql_id(depth),
        bytes: from_sql_id(bytes),
        max_id: from_sql_id(max_id),
        oldest_ms: oldest_ms(conn)?,
        ..OutboxCounters::default()
    };
    let mut stmt = conn.prepare("SELECT value FROM counters WHERE name = ?1")?;
    let mut get = |name| -> Result<u64, StoreError> {
        let v: Option<i64> = stmt.query_row([name], |r| r.get(0)).optional()?;
        Ok(from_sql_id(v.unwrap_or(0)))
    };
    c.dropped = get(PERSISTED[0])?;
    c.expired = get(PERSISTED[1])?;
    Ok(c)
}

fn oldest_ms(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT enqueued_ms FROM outbox ORDER BY id LIMIT 1")?;
    Ok(stmt.query_row([], |r| r.get(0)).optional()?)
}

/// Writer side of `append_batch` (inside the group's transaction and the op's savepoint).
pub(crate) fn append(
    conn: &Connection,
    c: &mut OutboxCounters,
    limits: &OutboxLimits,
    records: Vec<Vec<u8>>,
) -> Result<Vec<u64>, AppendError> {
    let size: u64 = records.iter().map(|r| r.len() as u64).sum();
    let now = now_ms();
    make_room(conn, c, limits, size, now)?;
    let mut insert =
        conn.prepare_cached("INSERT INTO outbox (enqueued_ms, record) VALUES (?1, ?2)")?;
    let mut ids = Vec::with_capacity(records.len());
    for record in &records {
        insert.execute(params![now, record])?;
        ids.push(from_sql_id(conn.last_insert_rowid()));
    }
    let n = ids.len() as u64;
    c.depth += n;
    c.bytes += size;
    c.appended += n;
    c.max_id = c.max_id.max(ids.last().copied().unwrap_or(0));
    Ok(ids)
}

/// Deletes the oldest records until `size` more bytes fit: expired ones always, others only
/// under [`WhenFull::DropOldest`].
fn make_room(
    conn: &Connection,
    c: &mut OutboxCounters,
    limits: &OutboxLimits,
    size: u64,
    now: i64,
) -> Result<(), AppendError> {
    let cutoff = limits.ttl.map(|ttl| cutoff_ms(now, ttl));
    let mut oldest = conn
        .prepare_cached("SELECT id, enqueued_ms, length(record) FROM outbox ORDER BY id LIMIT 1")?;
    let mut delete = conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    while c.bytes + size > limits.max_bytes {
        let row = oldest
            .query_row([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()?;
        let Some((id, enqueued_ms, len)) = row else {
            // Empty: the in-memory totals drifted (they cannot, but never loop on it).
            (c.depth, c.bytes) = (0, 0);
            break;
        };
        let expired = cutoff.is_some_and(|cutoff| enqueued_ms < cutoff);
        if !expired && limits.when_full == WhenFull::Reject {
            return Err(AppendError::Full {
                max_bytes: limits.max_bytes,
            });
        }
        delete.execute([id])?;
        c.depth = c.depth.saturating_sub(1);
        c.bytes = c.bytes.saturating_sub(from_sql_id(len));
        if expired {
            c.expired += 1;
        } else {
            c.dropped += 1;
        }
    }
    Ok(())
}

/// Why records are deleted other than to make room: what they are counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    Acknowledged,
    Expired,
    Discarded,
}

/// Writer side of acknowledgements, expiries found by readers, and discards.
pub(crate) fn delete(
    conn: &Connection,
    c: &mut OutboxCounters,
    ids: &[u64],
    why: Deleted,
) -> Result<(), StoreError> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM outbox WHERE id = ?1 RETURNING length(record)")?;
    for &id in ids {
        // Already gone (acknowledged twice, dropped, expired): nothing to count.
        let Some(len) = stmt
            .query_row([to_sql_id(id)], |r| r.get::<_, i64>(0))
            .optional()?
        else {
            continue;
        };
        c.depth = c.depth.saturating_sub(1);
        c.bytes = c.bytes.saturating_sub(from_sql_id(len));
        match why {
            Deleted::Acknowledged => c.acknowledged += 1,
            Deleted::Expired => c.expired += 1,
            Deleted::Discarded => c.dropped += 1,
        }
    }
    Ok(())
}

/// Last step of a group before COMMIT: persist the loss counters that changed, refresh the
/// oldest record's time.
pub(crate) fn finish_group(
    conn: &Connection,
    before: &OutboxCounters,
    c: &mut OutboxCounters,
) -> Result<(), StoreError> {
    let mut upsert =
        conn.prepare_cached("INSERT OR REPLACE INTO counters (name, value) VALUES (?1, ?2)")?;
    for (name, old, new) in [
        (PERSISTED[0], before.dropped, c.dropped),
        (PERSISTED[1], before.expired, c.expired),
    ] {
        if old != new {
            upsert.execute(params![name, to_sql_id(new)])?;
        }
    }
    if *c != *before {
        c.oldest_ms = oldest_ms(conn)?;
    }
    Ok(())
}

/// One warning per commit that lost records, rather than one per record.
pub(crate) fn warn_losses(before: &OutboxCounters, after: &OutboxCounters) {
    let dropped = after.dropped.saturating_sub(before.dropped);
    if dropped > 0 {
        tracing::warn!(dropped, "outbox full: dropped the {dropped} oldest records");
    }
    let expired = after.expired.saturating_sub(before.expired);
    if expired > 0 {
        tracing::warn!(expired, "outbox: {expired} records expired before delivery");
    }
}

#[cfg(test)]
mod tests;
