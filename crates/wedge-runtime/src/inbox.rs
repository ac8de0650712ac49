//! A module's inbox: the bounded queue its messages wait in, with room reserved before a send
//! delivers anything, and a choice, per route, of what a full inbox does.
//!
//! A `tokio::sync::mpsc` channel cannot do either: a sender cannot take the oldest message out
//! to make room, and room taken for one send cannot be counted against another send that fans
//! out to several inboxes. So the router reserves room in every inbox of an output first, then
//! commits the queues on disk, then delivers into the reserved room (which cannot fail): a send
//! is all or nothing.
//!
//! What a full inbox does is [`WhenFull`]: refuse (`full` to the sender, who tries again
//! later), or drop the oldest waiting message, counted. The default, [`WhenFull::Adaptive`],
//! refuses while the module is healthy (backpressure, nothing lost) and drops the oldest while
//! it is failing or stopped, so that a module which traps on every message cannot stop the
//! other destinations of the outputs that feed it (IoT Edge keeps one queue per endpoint for
//! the same reason).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
pub use wedge_core::doc::WhenFull;

use tokio::sync::oneshot;
use wedge_core::Message;

/// A message waiting in a module's inbox.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub input: String,
    pub message: Message,
    /// Told once `on-message` has returned (whatever it returned): a durable route deletes the
    /// message from its queue then.
    pub handled: Option<oneshot::Sender<()>>,
}

/// The sending side; cheap to clone.
#[derive(Clone)]
pub(crate) struct Inbox {
    shared: Arc<Shared>,
}

/// The module's side: only its supervisor takes messages out. Dropping it closes the inbox and
/// drops what waits in it.
pub(crate) struct InboxReceiver {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the receiver when a message arrives.
    readable: Notify,
    /// Wakes waiting senders (durable forwarders) when room appears.
    writable: Notify,
    /// Messages dropped to make room, ever.
    dropped: AtomicU64,
}

struct State {
    queue: VecDeque<Delivery>,
    /// Room promised to reservations not yet delivered.
    reserved: usize,
    capacity: usize,
    /// The module is failing or stopped: [`WhenFull::Adaptive`] drops rather than refuses.
    failing: bool,
    closed: bool,
}

impl State {
    /// Whether `n` more fit. A batch larger than the whole inbox fits an empty one: otherwise
    /// it could never be delivered.
    fn has_room(&self, n: usize) -> bool {
        let taken = self.queue.len() + self.reserved;
        taken + n <= self.capacity || taken == 0
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No room, and the route refuses rather than drops.
    Full,
    /// The module has been removed.
    Closed,
}

/// Room for `n` messages in one inbox, held until delivered or dropped.
pub(crate) struct Reservation {
    shared: Arc<Shared>,
    /// Room taken from `reserved` (0 when the reservation makes room by dropping instead).
    held: usize,
}

/// Creates an inbox holding at most `capacity` messages (at least one).
pub(crate) fn inbox(capacity: usize) -> (Inbox, InboxReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            reserved: 0,
            capacity: capacity.max(1),
            failing: false,
            closed: false,
        }),
        readable: Notify::new(),
        writable: Notify::new(),
        dropped: AtomicU64::new(0),
    });
    (
        Inbox {
            shared: shared.clone(),
        },
        InboxReceiver { shared },
    )
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change below leaves a consistent state before anything can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inbox {
    /// Reserves room for `n` messages, as `when_full` says when there is none. Nothing is
    /// delivered until [`Reservation::deliver`]; dropping the reservation gives the room back.
    pub(crate) fn reserve(&self, n: usize, when_full: WhenFull) -> Result<Reservation, Refused> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.has_room(n) {
            state.reserved += n;
            return Ok(Reservation {
                shared: self.shared.clone(),
                held: n,
            });
        }
        let drops = match when_full {
            WhenFull::Reject => false,
            WhenFull::DropOldest => true,
            WhenFull::Adaptive => state.failing,
        };
        match drops {
            true => Ok(Reservation {
                shared: self.shared.clone(),
                held: 0,
            }),
            false => Err(Refused::Full),
        }
    }

    /// Puts one message in, waiting for room: for a durable route's forwarder, whose message
    /// stays on disk until handled and so is never dropped to make room.
    ///
    /// # Errors
    /// The module has been removed; the message comes back.
    pub(crate) async fn send(&self, delivery: Delivery) -> Result<(), Delivery> {
        loop {
            let room = self.shared.writable.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(delivery);
                }
                if state.has_room(1) {
                    state.queue.push_back(delivery);
                    drop(state);
                    self.shared.readable.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Whether both handles are the same inbox.
    pub(crate) fn same(&self, other: &Inbox) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Messages waiting now.
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Messages dropped to make room since the inbox was made.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Changes the capacity. Messages already waiting stay, even above a smaller capacity.
    pub(crate) fn set_capacity(&self, capacity: usize) {
        self.shared.lock().capacity = capacity.max(1);
        self.shared.writable.notify_waiters();
    }
}

impl Reservation {
    /// Delivers `deliveries` (as many as reserved) into the reserved room. A reservation that
    /// makes room drops the oldest waiting messages first, never one from a durable route
    /// (it would be lost from its queue too) and never the ones it delivers.
    pub(crate) fn deliver(mut self, deliveries: impl IntoIterator<Item = Delivery>) {
        let shared = self.shared.clone();
        let mut state = shared.lock();
        state.reserved -= std::mem::take(&mut self.held);
        if state.closed {
            return;
        }
        let before = state.queue.len();
        state.queue.extend(deliveries);
        let added = state.queue.len() - before;
        let mut dropped = 0;
        while state.queue.len() > state.capacity {
            // Only the messages that were waiting before this delivery are candidates.
            let Some(at) = state
                .queue
                .iter()
                .take(state.queue.len() - added)
                .position(|d| d.handled.is_none())
            else {
                break;
            };
            state.queue.remove(at);
            dropped += 1;
        }
        drop(state);
        if dropped > 0 {
            shared.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        shared.readable.notify_one();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held > 0 {
            self.shared.lock().reserved -= self.held;
            self.shared.writable.notify_waiters();
        }
    }
}

impl InboxReceiver {
    /// The next message; waits for one.
    pub(crate) async fn recv(&mut self) -> Delivery {
        loop {
            let arrived = self.shared.readable.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(delivery) = self.shared.lock().queue.pop_front() {
                self.shared.writable.notify_waiters();
                return delivery;
            }
            arrived.await;
        }
    }

    /// Marks the module failing (or stopped) or healthy again: see [`WhenFull::Adaptive`].
    pub(crate) fn set_failing(&self, failing: bool) {
        self.shared.lock().failing = failing;
    }
}

impl Drop for InboxReceiver {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.shared.lock();
            state.closed = true;
            std::mem::take(&mut state.queue)
        };
        // Dropped outside the lock: a durable forwarder wakes on its `handled` channel closing.
        drop(waiting);
        self.shared.writable.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(n: u32) -> Delivery {
        Delivery {
            input: "in".into(),
            message: Message {
                body: n.to_string().into_bytes(),
                ..Message::default()
            },
            handled: None,
        }
    }

    fn body(d: &Delivery) -> String {
        String::from_utf8(d.message.body.clone()).unwrap()
    }

    #[tokio::test]
    async fn a_reservation_takes_room_until_delivered_or_dropped() {
        let (inbox, mut rx) = inbox(2);
        let first = inbox.reserve(2, WhenFull::Reject).unwrap();
        assert_eq!(
            inbox.reserve(1, WhenFull::Reject).err(),
            Some(Refused::Full)
        );
        drop(first);
        let batch = inbox.reserve(3, WhenFull::Reject).unwrap();
        assert_eq!(
            inbox.reserve(1, WhenFull::Reject).err(),
            Some(Refused::Full)
        );
        drop(batch);
        let second = inbox.reserve(2, WhenFull::Reject).unwrap();
        second.deliver([delivery(1), delivery(2)]);
        assert_eq!(inbox.len(), 2);
        assert_eq!(body(&rx.recv().await), "1");
        assert_eq!(inbox.dropped(), 0);
    }

    #[tokio::test]
    async fn drop_oldest_makes_room_and_counts() {
        let (inbox, mut rx) = inbox(2);
        inbox
            .reserve(2, WhenFull::Reject)
            .unwrap()
            .deliver([delivery(1), delivery(2)]);
        inbox
            .reserve(1, WhenFull::DropOldest)
            .unwrap()
            .deliver([delivery(3)]);
        assert_eq!(inbox.dropped(), 1);
        assert_eq!(body(&rx.recv().await), "2");
        assert_eq!(body(&rx.recv().await), "3");
    }

    #[tokio::test]
    async fn adaptive_refuses_while_healthy_and_drops_while_failing() {
        let (inbox, rx) = inbox(1);
        inbox
            .reserve(1, WhenFull::Adaptive)
            .unwrap()
            .deliver([delivery(1)]);
        assert_eq!(
            inbox.reserve(1, WhenFull::Adaptive).err(),
            Some(Refused::Full)
        );
        rx.set_failing(true);
        inbox
            .reserve(1, WhenFull::Adaptive)
            .unwrap()
            .deliver([delivery(2)]);
        assert_eq!(inbox.dropped(), 1);
    }

    #[tokio::test]
    async fn a_durable_delivery_is_never_dropped_and_waits_for_room() {
        let (inbox, mut rx) = inbox(1);
        let (handled, _done) = tokio::sync::oneshot::channel();
        let durable = Delivery {
            handled: Some(handled),
            ..delivery(1)
        };
        inbox.send(durable).await.unwrap();
        inbox
            .reserve(1, WhenFull::DropOldest)
            .unwrap()
            .deliver([delivery(2)]);
        assert_eq!(inbox.dropped(), 0, "the durable message stays");
        let waiting = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.send(delivery(3)).await.is_ok() }
        });
        assert_eq!(body(&rx.recv().await), "1");
        assert_eq!(body(&rx.recv().await), "2");
        assert!(waiting.await.unwrap());
        assert_eq!(body(&rx.recv().await), "3");
    }

    #[tokio::test]
    async fn a_removed_module_refuses_and_frees_waiting_senders() {
        let (inbox, rx) = inbox(1);
        inbox
            .reserve(1, WhenFull::Reject)
            .unwrap()
            .deliver([delivery(1)]);
        let waiting = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.send(delivery(2)).await.is_err() }
        });
        drop(rx);
        assert!(waiting.await.unwrap());
        assert_eq!(
            inbox.reserve(1, WhenFull::DropOldest).err(),
            Some(Refused::Closed)
        );
    }
}
