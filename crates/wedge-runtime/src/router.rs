//! The router: from `<module>/<output>` to module inputs and `$upstream`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use wedge_store::{AppendError, Outbox};

use crate::inbox::{Delivery, Inbox, Refused, Reservation};
use crate::spec::{Route, Target, WhenFull};
use wedge_core::{Message, SendError};
use wedge_core::{Upstream, UpstreamMessage};

/// Routes messages. A send is all or nothing: room is reserved in every module inbox of the
/// output first, then the queues on disk (`$upstream`'s outbox, durable routes) commit, then
/// the messages go into the reserved room. A full inbox refuses ([`SendError::Full`]) or drops
/// its oldest message as the route's `when-full` says; it never blocks the sender, so a slow
/// module cannot stall others. `$upstream` is the durable outbox: a send returns once the
/// message is on disk.
pub(crate) struct Router {
    table: RwLock<Table>,
    upstream: Arc<dyn Upstream>,
    outbox: Outbox,
}

#[derive(Default)]
struct Table {
    routes: HashMap<(String, String), Vec<RouteTarget>>,
    inboxes: HashMap<String, Inbox>,
}

/// Where a route leads, its queue on disk if it is durable, and what a full inbox does.
#[derive(Clone)]
struct RouteTarget {
    target: Target,
    queue: Option<Outbox>,
    when_full: WhenFull,
}

/// A queue on disk a send appends to.
enum DiskQueue<'a> {
    Upstream,
    Route(&'a Outbox),
}

impl Router {
    pub(crate) fn new(upstream: Arc<dyn Upstream>, outbox: Outbox) -> Self {
        Router {
            table: RwLock::default(),
            upstream,
            outbox,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        // Writers replace whole maps; a panic mid-write cannot leave a half-built entry.
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the routing table. Durable routes come with their queue.
    pub(crate) fn set_routes<'a>(
        &self,
        routes: impl IntoIterator<Item = (&'a Route, Option<Outbox>)>,
    ) {
        let mut map: HashMap<(String, String), Vec<RouteTarget>> = HashMap::new();
        for (route, queue) in routes {
            map.entry((route.from_module.clone(), route.from_output.clone()))
                .or_default()
                .push(RouteTarget {
                    target: route.to.clone(),
                    queue,
                    when_full: route.when_full,
                });
        }
        self.write().routes = map;
    }

    /// The inbox of `module`, if it runs.
    pub(crate) fn inbox(&self, module: &str) -> Option<Inbox> {
        self.read().inboxes.get(module).cloned()
    }

    /// Registers (or replaces) the inbox of `module`.
    pub(crate) fn set_inbox(&self, module: &str, inbox: Inbox) {
        self.write().inboxes.insert(module.to_string(), inbox);
    }

    /// Removes the inbox of `module`; messages routed to it are dropped from now on.
    pub(crate) fn remove_inbox(&self, module: &str) {
        self.write().inboxes.remove(module);
    }

    /// Sends `messages` from `module`'s `output` to every target of its routes: all of them
    /// take all the messages, or none takes any.
    ///
    /// # Errors
    /// A message is invalid, no route starts at the output, or a target refused them; then no
    /// target has them (but see [`Router::commit`] for a failing disk).
    pub(crate) async fn send(
        &self,
        module: &str,
        output: &str,
        messages: Vec<Message>,
    ) -> Result<(), SendError> {
        for message in &messages {
            message.validate()?;
        }
        let targets: Vec<(RouteTarget, Option<Inbox>)> = {
            let table = self.read();
            let Some(targets) = table.routes.get(&(module.to_string(), output.to_string())) else {
                return Err(SendError::NoRoute(output.to_string()));
            };
            targets
                .iter()
                .map(|t| {
                    let inbox = match &t.target {
                        Target::Module { module, .. } => table.inboxes.get(module).cloned(),
                        Target::Upstream => None,
                    };
                    (t.clone(), inbox)
                })
                .collect()
        };
        // 1. Room in every inbox; a refusal here leaves nothing behind.
        let mut reserved: Vec<(Reservation, &str)> = Vec::new();
        let mut disk: Vec<DiskQueue<'_>> = Vec::new();
        for (
            RouteTarget {
                target,
                queue,
                when_full,
            },
            inbox,
        ) in &targets
        {
            match (target, queue) {
                // Its forwarder feeds the module from the queue.
                (Target::Module { .. }, Some(queue)) => disk.push(DiskQueue::Route(queue)),
                (Target::Module { module: to, input }, None) => {
                    let Some(inbox) = inbox else {
                        tracing::debug!(%to, "route target is not running; message dropped");
                        continue;
                    };
                    match inbox.reserve(messages.len(), *when_full) {
                        Ok(reservation) => reserved.push((reservation, input)),
                        Err(Refused::Full) => return Err(SendError::Full),
                        Err(Refused::Closed) => {
                            tracing::debug!(%to, "route target has stopped; message dropped");
                        }
                    }
                }
                (Target::Upstream, _) => disk.push(DiskQueue::Upstream),
            }
        }
        // 2. The queues on disk.
        if !disk.is_empty() {
            self.commit(module, output, &messages, &disk).await?;
        }
        // 3. The reserved room: this cannot fail.
        for (reservation, input) in reserved {
            reservation.deliver(messages.iter().map(|message| Delivery {
                input: input.to_string(),
                message: message.clone(),
                handled: None,
            }));
        }
        Ok(())
    }

    /// Appends the messages to every queue in `disk`, each in one commit, once `$upstream`
    /// (if it is one of them) has admitted every message; returns when they are on disk.
    ///
    /// The queues are separate files, so this is not one transaction: if a later queue fails
    /// (a full or failing disk), the records already committed to the earlier ones are
    /// deleted again, so the sender's retry does not duplicate them. Only a record the link
    /// has already published in that instant can then arrive twice (at least once).
    async fn commit(
        &self,
        module: &str,
        output: &str,
        messages: &[Message],
        disk: &[DiskQueue<'_>],
    ) -> Result<(), SendError> {
        let enqueued = SystemTime::now();
        let messages: Vec<UpstreamMessage> = messages
            .iter()
            .map(|message| UpstreamMessage {
                module: module.to_string(),
                output: output.to_string(),
                message: message.clone(),
                enqueued,
            })
            .collect();
        if disk.iter().any(|q| matches!(q, DiskQueue::Upstream)) {
            for message in &messages {
                self.upstream.admit(message)?;
            }
        }
        let mut records: Vec<Vec<u8>> = messages.iter().map(UpstreamMessage::to_record).collect();
        let mut committed: Vec<(&Outbox, Vec<u64>)> = Vec::new();
        for (n, queue) in disk.iter().enumerate() {
            let queue = match queue {
                DiskQueue::Upstream => &self.outbox,
                DiskQueue::Route(queue) => queue,
            };
            // The last queue (the only one, for a plain `$upstream` route) takes the records
            // themselves: no copy of every body on the common path.
            let these = match n + 1 == disk.len() {
                true => std::mem::take(&mut records),
                false => records.clone(),
            };
            match append(queue, these).await {
                Ok(ids) => committed.push((queue, ids)),
                Err(e) => {
                    for (queue, ids) in committed {
                        queue.acknowledge(&ids);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// Appends `records` to `queue` in one commit; returns their ids once they are on disk.
async fn append(queue: &Outbox, records: Vec<Vec<u8>>) -> Result<Vec<u64>, SendError> {
    match queue.append_batch(records).await {
        Ok(ids) => Ok(ids),
        Err(AppendError::Full { .. }) => Err(SendError::Full),
        Err(AppendError::TooLarge { max_bytes, .. }) => Err(SendError::TooLarge(
            u32::try_from(max_bytes).unwrap_or(u32::MAX),
        )),
        // The module cannot fix a failing disk; `full` tells it to try again later.
        Err(AppendError::Store(e)) => {
            tracing::error!(error = %e, "cannot store a message");
            Err(SendError::Full)
        }
    }
}
