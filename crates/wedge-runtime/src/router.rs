//! The router: from `<module>/<output>` to module inputs and `$upstream`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use tokio::sync::mpsc;
use wedge_store::{AppendError, Outbox};

use crate::module::Delivery;
use crate::spec::{Route, Target};
use wedge_core::{Message, SendError};
use wedge_core::{Upstream, UpstreamMessage};

/// Routes messages. Module inboxes are bounded queues: a full inbox refuses the message with
/// [`SendError::Full`] rather than blocking the sender, so a slow module cannot stall others
/// and routing cycles cannot deadlock. `$upstream` is the durable outbox: a send returns once
/// the message is on disk.
pub(crate) struct Router {
    table: RwLock<Table>,
    upstream: Arc<dyn Upstream>,
    outbox: Outbox,
}

#[derive(Default)]
struct Table {
    routes: HashMap<(String, String), Vec<RouteTarget>>,
    inboxes: HashMap<String, mpsc::Sender<Delivery>>,
}

/// Where a route leads, and its queue on disk if it is durable.
#[derive(Clone)]
struct RouteTarget {
    target: Target,
    queue: Option<Outbox>,
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
                });
        }
        self.write().routes = map;
    }

    /// The inbox of `module`, if it runs.
    pub(crate) fn inbox(&self, module: &str) -> Option<mpsc::Sender<Delivery>> {
        self.read().inboxes.get(module).cloned()
    }

    /// Registers (or replaces) the inbox of `module`.
    pub(crate) fn set_inbox(&self, module: &str, inbox: mpsc::Sender<Delivery>) {
        self.write().inboxes.insert(module.to_string(), inbox);
    }

    /// Removes the inbox of `module`; messages routed to it are dropped from now on.
    pub(crate) fn remove_inbox(&self, module: &str) {
        self.write().inboxes.remove(module);
    }

    /// Sends `messages` from `module`'s `output` to every target of its routes, in route
    /// order. `$upstream` takes them all or none, in one durable commit; a module input takes
    /// them all only if its inbox has room for all.
    ///
    /// # Errors
    /// A message is invalid, no route starts at the output, or a target refused them (targets
    /// before it in the list have accepted them).
    pub(crate) async fn send(
        &self,
        module: &str,
        output: &str,
        messages: Vec<Message>,
    ) -> Result<(), SendError> {
        for message in &messages {
            message.validate()?;
        }
        let targets: Vec<(RouteTarget, Option<mpsc::Sender<Delivery>>)> = {
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
        for (RouteTarget { target, queue }, inbox) in targets {
            match target {
                // Its forwarder feeds the module from the queue.
                Target::Module { .. } if let Some(queue) = queue => {
                    append(&queue, module, output, &messages, |_| Ok(())).await?;
                }
                Target::Module { module: to, input } => {
                    let Some(inbox) = inbox else {
                        tracing::debug!(%to, "route target is not running; message dropped");
                        continue;
                    };
                    if inbox.capacity() < messages.len() {
                        return Err(SendError::Full);
                    }
                    for message in &messages {
                        let delivery = Delivery {
                            input: input.clone(),
                            message: message.clone(),
                            handled: None,
                        };
                        match inbox.try_send(delivery) {
                            Ok(()) => {}
                            // Another sender took the room since the check above.
                            Err(mpsc::error::TrySendError::Full(_)) => return Err(SendError::Full),
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                tracing::debug!(%to, "route target has stopped; message dropped");
                                break;
                            }
                        }
                    }
                }
                Target::Upstream => {
                    let admit = |m: &UpstreamMessage| self.upstream.admit(m);
                    append(&self.outbox, module, output, &messages, admit).await?;
                }
            }
        }
        Ok(())
    }
}

/// Appends `messages` to `queue` (the outbox, or a durable route's queue) in one commit, once
/// `admit` has accepted each; returns when they are on disk.
async fn append(
    queue: &Outbox,
    module: &str,
    output: &str,
    messages: &[Message],
    admit: impl Fn(&UpstreamMessage) -> Result<(), SendError>,
) -> Result<(), SendError> {
    let enqueued = SystemTime::now();
    let mut records = Vec::with_capacity(messages.len());
    for message in messages {
        let message = UpstreamMessage {
            module: module.to_string(),
            output: output.to_string(),
            message: message.clone(),
            enqueued,
        };
        admit(&message)?;
        records.push(message.to_record());
    }
    match queue.append_batch(records).await {
        Ok(_) => Ok(()),
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
