//! The writer thread: the only owner of the write connection, and where group commit happens.
//!
//! Every write (appends, acknowledgements, state, meta, blobs) is an [`Op`] on one channel. The
//! thread blocks for the first op, takes every other op already queued, runs them all in ONE
//! transaction, commits (with `synchronous = FULL` that is one fsync of the WAL), and only then
//! answers each waiter. While it waits for the disk, new ops queue up and form the next group, so
//! the commit rate adapts to the load: 64 concurrent appenders need ~1 fsync per 64 records.
//!
//! Each op runs inside its own savepoint: an op that fails (outbox full, quota, a SQL error)
//! is rolled back alone and answered with its error, while the rest of the group commits.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use crate::outbox::{self, Deleted, OutboxCounters};
use crate::{AppendError, OutboxLimits, StateError, StoreError, meta, state};

/// Most ops in one transaction: bounds how long one commit (and so one waiter) can take.
const MAX_GROUP: usize = 1024;

/// One write, with the channel its result goes back on (none for fire-and-forget ops).
pub(crate) enum Op {
    /// Append records (one for `append`, many for `append_batch`), all or nothing.
    Append {
        limits: OutboxLimits,
        records: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<Vec<u64>, AppendError>>,
    },
    /// Delete acknowledged records (no reply: a lost acknowledgement means a resend).
    Ack(Vec<u64>),
    /// Delete records a reader found past their TTL (no reply).
    Expire(Vec<u64>),
    /// Delete records the consumer cannot deliver, counted as dropped (no reply).
    Discard(Vec<u64>),
    /// Set (`Some`) or delete (`None`) one module state key.
    State {
        module: Arc<str>,
        quota: usize,
        key: String,
        value: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<(), StateError>>,
    },
    /// Set (`Some`) or delete (`None`) one meta document.
    Meta {
        name: String,
        value: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Store a blob under its (already computed) digest.
    BlobPut {
        sha256: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Delete every blob not in `keep`; answers how many were deleted.
    BlobRetain {
        keep: Vec<String>,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    /// Commit durably everything sent before it.
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl Op {
    /// Whether this op's caller waits for durability. A group of only acknowledgements and
    /// expiries is committed without fsync: it cannot lose data, only cause a resend, and the
    /// next durable commit syncs the WAL file, and with it these commits too.
    fn durable(&self) -> bool {
        !matches!(self, Op::Ack(_) | Op::Expire(_) | Op::Discard(_))
    }

    /// Answers without running (the transaction could not even start).
    fn reject(self, e: &StoreError) {
        // A send fails only if the caller stopped waiting: nothing to do then.
        match self {
            Op::Append { reply, .. } => drop(reply.send(Err(e.clone().into()))),
            Op::State { reply, .. } => drop(reply.send(Err(e.clone().into()))),
            Op::Meta { reply, .. } | Op::BlobPut { reply, .. } | Op::Flush { reply } => {
                drop(reply.send(Err(e.clone())))
            }
            Op::BlobRetain { reply, .. } => drop(reply.send(Err(e.clone()))),
            Op::Ack(_) | Op::Expire(_) | Op::Discard(_) => {}
        }
    }
}

/// A result held back until the group's commit is known.
trait Answer: Send {
    fn answer(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct Reply<T, E> {
    tx: oneshot::Sender<Result<T, E>>,
    result: Result<T, E>,
}

impl<T: Send, E: From<StoreError> + Send> Answer for Reply<T, E> {
    fn answer(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match commit {
            Ok(()) => self.result,
            Err(e) => Err(e.clone().into()),
        };
        let _ = self.tx.send(result);
    }
}

/// What the writer publishes after each commit for the handles to read without a query.
pub(crate) struct Shared {
    outbox: Mutex<OutboxCounters>,
    /// The highest outbox id committed: `Outbox::wait_after` waits on it.
    pub last_id: watch::Sender<u64>,
    usage: Mutex<HashMap<String, usize>>,
}

impl Shared {
    pub fn outbox(&self) -> OutboxCounters {
        *lock(&self.outbox)
    }

    pub fn usage(&self, module: &str) -> usize {
        lock(&self.usage).get(module).copied().unwrap_or(0)
    }
}

/// A panic while holding one of these locks leaves a complete value behind (each is replaced
/// whole), so a poisoned lock is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The committed state the writer keeps; a group works on a copy and replaces it on commit.
#[derive(Clone, Default)]
pub(crate) struct Committed {
    pub outbox: OutboxCounters,
    /// Bytes (keys plus values) of each module's state.
    pub usage: HashMap<String, usize>,
}

/// A running writer thread and what its handles need.
pub(crate) struct Started {
    /// Where ops go; the thread exits once every sender is dropped.
    pub ops: mpsc::Sender<Op>,
    pub thread: JoinHandle<()>,
    pub shared: Arc<Shared>,
}

/// Loads the committed state and starts the writer thread.
pub(crate) fn spawn(conn: Connection) -> Result<Started, StoreError> {
    let committed = Committed {
        outbox: outbox::load(&conn)?,
        usage: state::load(&conn)?,
    };
    let shared = Arc::new(Shared {
        outbox: Mutex::new(committed.outbox),
        last_id: watch::Sender::new(committed.outbox.max_id),
        usage: Mutex::new(committed.usage.clone()),
    });
    let (ops, rx) = mpsc::channel();
    let mut writer = Writer {
        conn,
        shared: shared.clone(),
        committed,
        sync_full: true,
    };
    let thread = std::thread::Builder::new()
        .name("wedge-store-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::io("wedge-store-writer thread", e))?;
    Ok(Started {
        ops,
        thread,
        shared,
    })
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    committed: Committed,
    /// The connection's current `synchronous` setting (FULL, or NORMAL for ack-only groups).
    sync_full: bool,
}

impl Writer {
    /// Runs until every sender is gone (the last store handle dropped), then returns, which
    /// closes the connection: the last close checkpoints the WAL into the database file.
    fn run(&mut self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(op) => group.push(op),
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn exec(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    fn commit_group(&mut self, group: Vec<Op>) {
        let durable = group.iter().any(Op::durable);
        if durable != self.sync_full {
            let mode = if durable { "FULL" } else { "NORMAL" };
            match self.conn.pragma_update(None, "synchronous", mode) {
                Ok(()) => self.sync_full = durable,
                Err(e) => tracing::warn!("store: cannot set synchronous = {mode}: {e}"),
            }
        }
        if let Err(e) = self.exec("BEGIN IMMEDIATE") {
            tracing::error!("store: cannot begin a transaction: {e}");
            group.into_iter().for_each(|op| op.reject(&e));
            return;
        }
        let mut next = self.committed.clone();
        let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(group.len());
        let mut poisoned = None;
        for op in group {
            self.apply(op, &mut next, &mut answers, &mut poisoned);
        }
        let result = match poisoned {
            Some(e) => Err(e),
            None => outbox::finish_group(&self.conn, &self.committed.outbox, &mut next.outbox)
                .and_then(|()| self.exec("COMMIT")),
        };
        match &result {
            Ok(()) => {
                next.outbox.commits += 1;
                outbox::warn_losses(&self.committed.outbox, &next.outbox);
                self.publish(&next);
                self.committed = next;
            }
            Err(e) => {
                tracing::error!("store: commit failed, {} writes lost: {e}", answers.len());
                // SQLite ends the transaction itself after some errors (a full disk, an I/O
                // error): there is nothing to roll back then.
                if !self.conn.is_autocommit()
                    && let Err(e) = self.exec("ROLLBACK")
                {
                    tracing::error!("store: rollback failed: {e}");
                }
            }
        }
        for answer in answers {
            answer.answer(result.as_ref().map(|_| ()));
        }
    }

    fn publish(&self, next: &Committed) {
        *lock(&self.shared.outbox) = next.outbox;
        if next.usage != self.committed.usage {
            *lock(&self.shared.usage) = next.usage.clone();
        }
        let max_id = next.outbox.max_id;
        self.shared.last_id.send_if_modified(|id| {
            let changed = *id != max_id;
            *id = max_id;
            changed
        });
    }

    fn apply(
        &self,
        op: Op,
        next: &mut Committed,
        answers: &mut Vec<Box<dyn Answer>>,
        poisoned: &mut Option<StoreError>,
    ) {
        let conn = &self.conn;
        match op {
            Op::Append {
                limits,
                records,
                reply,
            } => {
                let result = self.savepoint(next, poisoned, |next| {
                    outbox::append(conn, &mut next.outbox, &limits, records)
                });
                answers.push(Box::new(Reply { tx: reply, result }));
            }
            Op::Ack(ids) => self.delete(next, poisoned, &ids, Deleted::Acknowledged),
            Op::Expire(ids) => self.delete(next, poisoned, &ids, Deleted::Expired),
            Op::Discard(ids) => self.delete(next, poisoned, &ids, Deleted::Discarded),
            Op::State {
                module,
                quota,
                key,
                value,
                reply,
            } => {
                let result = self.savepoint(next, poisoned, |next| {
                    state::write(conn, &mut next.usage, &module, quota, &key, value)
                });
                answers.push(Box::new(Reply { tx: reply, result }));
            }
            Op::Meta { name, value, reply } => {
                let result = self.savepoint(next, poisoned, |_| meta::write(conn, &name, value));
                answers.push(Box::new(Reply { tx: reply, result }));
            }
            Op::BlobPut {
                sha256,
                data,
                reply,
            } => {
                let result =
                    self.savepoint(next, poisoned, |_| meta::put_blob(conn, &sha256, &data));
                answers.push(Box::new(Reply { tx: reply, result }));
            }
            Op::BlobRetain { keep, reply } => {
                let result = self.savepoint(next, poisoned, |_| meta::retain_blobs(conn, &keep));
                answers.push(Box::new(Reply { tx: reply, result }));
            }
            Op::Flush { reply } => answers.push(Box::new(Reply {
                tx: reply,
                result: Ok(()),
            })),
        }
    }

    /// Deletes outbox records; a failure loses only a deletion (a resend, or a count).
    fn delete(
        &self,
        next: &mut Committed,
        poisoned: &mut Option<StoreError>,
        ids: &[u64],
        why: Deleted,
    ) {
        let result = self.savepoint(next, poisoned, |next| {
            outbox::delete(&self.conn, &mut next.outbox, ids, why)
        });
        if let Err(e) = result {
            tracing::warn!(
                "store: deleting {} records ({why:?}) failed: {e}",
                ids.len()
            );
        }
    }

    /// Runs `f` in a savepoint: on error its SQL changes and its outbox counter changes are
    /// undone. (`f` must change `usage` only as its last, infallible step.) If the savepoint
    /// itself cannot be released or rolled back, the whole group is poisoned and rolled back.
    fn savepoint<T, E: From<StoreError>>(
        &self,
        next: &mut Committed,
        poisoned: &mut Option<StoreError>,
        f: impl FnOnce(&mut Committed) -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(e) = poisoned {
            return Err(e.clone().into());
        }
        self.exec("SAVEPOINT op")?;
        let saved = next.outbox;
        let result = f(next);
        let end = match &result {
            Ok(_) => self.exec("RELEASE op"),
            Err(_) => {
                next.outbox = saved;
                self.exec("ROLLBACK TO op")
                    .and_then(|()| self.exec("RELEASE op"))
            }
        };
        if let Err(e) = end {
            *poisoned = Some(e.clone());
            return Err(e.into());
        }
        result
    }
}
