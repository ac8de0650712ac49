//! The forwarder of a durable route: moves messages from the route's queue on disk into the
//! module's inbox one at a time, and deletes each from the queue only once `on-message` has
//! returned. A crash at any point leaves the message in the queue: it is delivered again at the
//! next start (at least once).

use tokio::sync::oneshot;
use wedge_store::Outbox;

use crate::inbox::{Delivery, Inbox};
use wedge_core::UpstreamMessage;

/// A durable route's queue on disk and the task feeding its module from it.
pub(crate) struct DurableRoute {
    pub queue: Outbox,
    pub forwarder: tokio::task::JoinHandle<()>,
    /// The inbox the forwarder feeds; `None` if the module was not running.
    pub inbox: Option<Inbox>,
}

impl DurableRoute {
    /// Whether the forwarder still feeds the module's current inbox.
    pub(crate) fn feeds(&self, inbox: Option<&Inbox>) -> bool {
        match (&self.inbox, inbox) {
            (Some(fed), Some(current)) => fed.same(current) && !self.forwarder.is_finished(),
            _ => false,
        }
    }
}

/// Records read from the queue at once.
const READ_BATCH: usize = 64;

/// Feeds `input` of the module behind `inbox` from `queue` until the module stops.
pub(crate) async fn forward(route: String, queue: Outbox, inbox: Inbox, input: String) {
    let mut cursor = 0;
    loop {
        queue.wait_after(cursor).await;
        let records = match queue.read_from(&mut cursor, READ_BATCH) {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(route, error = %e, "cannot read the route's queue; stopping it");
                return;
            }
        };
        for (id, record) in records {
            let message = match UpstreamMessage::from_record(&record) {
                Ok(message) => message.message,
                Err(e) => {
                    tracing::error!(route, id, "dropping a damaged queued message: {e}");
                    queue.discard(&[id]);
                    continue;
                }
            };
            let (handled, done) = oneshot::channel();
            let delivery = Delivery {
                input: input.clone(),
                message,
                handled: Some(handled),
            };
            // Either fails only when the module is stopping: the message stays queued.
            if inbox.send(delivery).await.is_err() || done.await.is_err() {
                return;
            }
            queue.acknowledge(&[id]);
        }
    }
}
