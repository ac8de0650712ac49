//! Who is connected and subscribed to what, and each client's bounded queue of lines to send.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// A line to send; one copy shared by every subscriber it goes to.
pub type Frame = Rc<[u8]>;

/// One connected client's outgoing side.
pub struct Client {
    queue: RefCell<VecDeque<Frame>>,
    queued: Cell<usize>,
    max_queued: usize,
    closed: Cell<bool>,
    /// Whether it missed a line for want of room.
    dropping: Cell<bool>,
    writer: RefCell<Option<Waker>>,
}

impl Client {
    pub fn new(max_queued: usize) -> Rc<Client> {
        Rc::new(Client {
            queue: RefCell::default(),
            queued: Cell::new(0),
            max_queued,
            closed: Cell::new(false),
            dropping: Cell::new(false),
            writer: RefCell::default(),
        })
    }

    /// Queues `frame`. A subscriber further behind than its queue allows misses it (it would
    /// otherwise hold an unbounded backlog); the first miss of each client is logged.
    pub fn push(&self, frame: Frame) {
        if self.closed.get() {
            return;
        }
        if self.queued.get() + frame.len() > self.max_queued {
            if !self.dropping.replace(true) {
                wedge_sdk::log::warn(&format!(
                    "a subscriber is {} bytes behind (max-queue-kb): it misses lines",
                    self.queued.get()
                ));
            }
            return;
        }
        self.queued.set(self.queued.get() + frame.len());
        self.queue.borrow_mut().push_back(frame);
        self.wake();
    }

    /// No more frames are taken; the writer sends what is queued and ends.
    pub fn close(&self) {
        self.closed.set(true);
        self.wake();
    }

    /// Waits for queued frames and moves them into `out` (up to about `limit` bytes: one
    /// write for many lines); `false` once closed with nothing left.
    pub async fn take(&self, out: &mut Vec<u8>, limit: usize) -> bool {
        poll_fn(|cx| {
            let mut queue = self.queue.borrow_mut();
            if queue.is_empty() {
                if self.closed.get() {
                    return Poll::Ready(false);
                }
                *self.writer.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            while let Some(frame) = queue.front() {
                if !out.is_empty() && out.len() + frame.len() > limit {
                    break;
                }
                out.extend_from_slice(frame);
                self.queued.set(self.queued.get() - frame.len());
                queue.pop_front();
            }
            Poll::Ready(true)
        })
        .await
    }

    fn wake(&self) {
        if let Some(waker) = self.writer.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// The clients and their subscriptions.
#[derive(Default)]
pub struct Hub {
    clients: RefCell<HashMap<u64, Rc<Client>>>,
    topics: RefCell<HashMap<String, HashSet<u64>>>,
    next_id: Cell<u64>,
}

impl Hub {
    pub fn clients(&self) -> usize {
        self.clients.borrow().len()
    }

    /// Registers a client; its id.
    pub fn join(&self, client: Rc<Client>) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.clients.borrow_mut().insert(id, client);
        id
    }

    /// Forgets the client and every subscription it had.
    pub fn leave(&self, id: u64, subscriptions: &HashSet<String>) {
        let mut topics = self.topics.borrow_mut();
        for topic in subscriptions {
            if let Some(subscribers) = topics.get_mut(topic) {
                subscribers.remove(&id);
                if subscribers.is_empty() {
                    topics.remove(topic);
                }
            }
        }
        if let Some(client) = self.clients.borrow_mut().remove(&id) {
            client.close();
        }
    }

    pub fn subscribe(&self, id: u64, topic: &str) {
        let mut topics = self.topics.borrow_mut();
        topics.entry(topic.to_string()).or_default().insert(id);
    }

    pub fn unsubscribe(&self, id: u64, topic: &str) {
        let mut topics = self.topics.borrow_mut();
        if let Some(subscribers) = topics.get_mut(topic) {
            subscribers.remove(&id);
            if subscribers.is_empty() {
                topics.remove(topic);
            }
        }
    }

    /// Queues `frame` for every subscriber of `topic` but `from`.
    pub fn publish(&self, from: u64, topic: &str, frame: &Frame) {
        let topics = self.topics.borrow();
        let Some(subscribers) = topics.get(topic) else {
            return;
        };
        let clients = self.clients.borrow();
        for id in subscribers.iter().filter(|id| **id != from) {
            if let Some(client) = clients.get(id) {
                client.push(frame.clone());
            }
        }
    }
}
