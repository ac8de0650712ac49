//! What the cloud asks of the host, handed over so that the link never waits for the host:
//! the desired deployment as a level (a `watch` of the latest document: a slow apply only ever
//! skips to the newest), direct methods and cloud-to-device messages through bounded queues
//! filled with `try_send` (a full queue answers a method at once with 503 and drops a C2D
//! message, both counted in the link status).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use wedge_core::Message;

use super::StatusCell;

/// Direct methods accepted and not yet answered, at most: past this a call is answered with
/// 503 straight away instead of queuing behind a slow module.
pub(crate) const MAX_PENDING_METHODS: usize = 16;
/// Cloud-to-device messages waiting for the host, at most. IoT Hub holds at most 50 per device
/// (the messages it has not had completed, delivered or not), so a real hub never fills it;
/// past it a message is dropped unacknowledged (and counted), and comes again after the next
/// connect.
const C2D_QUEUE: usize = 64;
/// IoT Hub's limit of cloud-to-device messages per device queue.
pub const IOT_HUB_C2D_QUEUE: usize = 50;
const _: () = assert!(C2D_QUEUE >= IOT_HUB_C2D_QUEUE);

/// A desired deployment at a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The desired version (the twin's `$version`; a persisted counter for MQTT).
    pub version: u64,
    /// The desired deployment, a JSON object (see `wedge_core::doc::DeploymentDoc`).
    pub deployment: Value,
}

/// The host's end of what the cloud asks. Each part can be served on its own; a closed
/// channel means the upstream has no such traffic or has stopped.
#[derive(Debug)]
pub struct HubEvents {
    /// The latest desired deployment; `None` until the cloud sent one.
    pub desired: watch::Receiver<Option<Desired>>,
    /// Direct methods, at most [`MAX_PENDING_METHODS`] unanswered at once.
    pub methods: mpsc::Receiver<MethodCall>,
    /// Cloud-to-device messages, each to be acknowledged once a route took it.
    pub c2d: mpsc::Receiver<C2d>,
}

/// A cloud-to-device message and its acknowledgement to the hub. Call [`C2d::accepted`] once
/// the message is safe (a route took it); dropped unacknowledged, the hub delivers it again
/// after the next connect (at least once).
#[derive(Debug)]
pub struct C2d {
    /// The message.
    pub message: Message,
    ack: Option<super::Ack>,
}

impl C2d {
    /// A message with its acknowledgement (`None`: nothing to acknowledge, as in tests).
    pub fn new(message: Message, ack: Option<super::Ack>) -> C2d {
        C2d { message, ack }
    }

    /// Acknowledges the message to the hub: it will not come again.
    pub fn accepted(self) {
        if let Some(ack) = self.ack {
            ack.ack();
        }
    }
}

/// Sends a method's answer back into the link; called at most once.
type Answer = Box<dyn FnOnce(u16, String) + Send>;

/// A direct method call. Answer it with [`MethodCall::answer`]; one dropped unanswered is
/// answered with 500.
pub struct MethodCall {
    /// The method name as the cloud sent it (`<module>.<method>`).
    pub name: String,
    /// The JSON payload.
    pub payload: String,
    answer: Option<Answer>,
}

impl std::fmt::Debug for MethodCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodCall")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MethodCall {
    /// Answers the call with `status` and a JSON `payload`. The link replaces a payload over
    /// IoT Hub's limit with an error status.
    pub fn answer(mut self, status: u16, payload: String) {
        if let Some(answer) = self.answer.take() {
            answer(status, payload);
        }
    }
}

impl Drop for MethodCall {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take() {
            answer(500, r#"{"error":"the host did not answer"}"#.into());
        }
    }
}

/// The link's end: every hand-over returns at once.
#[derive(Clone)]
pub(crate) struct ToHost {
    desired: watch::Sender<Option<Desired>>,
    methods: mpsc::Sender<MethodCall>,
    c2d: mpsc::Sender<C2d>,
    pending_methods: Arc<Semaphore>,
    status: StatusCell,
}

/// Both ends, connected; `status` counts what is refused or dropped.
pub(crate) fn to_host(status: StatusCell) -> (ToHost, HubEvents) {
    let (desired, desired_rx) = watch::channel(None);
    let (methods, methods_rx) = mpsc::channel(MAX_PENDING_METHODS);
    let (c2d, c2d_rx) = mpsc::channel(C2D_QUEUE);
    let to_host = ToHost {
        desired,
        methods,
        c2d,
        pending_methods: Arc::new(Semaphore::new(MAX_PENDING_METHODS)),
        status,
    };
    let events = HubEvents {
        desired: desired_rx,
        methods: methods_rx,
        c2d: c2d_rx,
    };
    (to_host, events)
}

impl ToHost {
    /// The latest desired deployment; whatever the host has not read yet is replaced.
    pub(crate) fn desired(&self, version: u64, deployment: Value) {
        self.desired.send_replace(Some(Desired {
            version,
            deployment,
        }));
    }

    /// The latest desired deployment handed over, if any.
    pub(crate) fn last_desired(&self) -> Option<Desired> {
        self.desired.borrow().clone()
    }

    /// Hands a method call to the host. `answer` gets `(status, payload, permit)`; the permit
    /// keeps the call counted until the link has sent the answer (drop it then). `Err` gives
    /// `answer` back when [`MAX_PENDING_METHODS`] calls are unanswered: the caller answers 503
    /// itself.
    pub(crate) fn method<F>(&self, name: String, payload: String, answer: F) -> Result<(), F>
    where
        F: FnOnce(u16, String, OwnedSemaphorePermit) + Send + 'static,
    {
        let Ok(permit) = self.pending_methods.clone().try_acquire_owned() else {
            self.status.update(|s| s.dropped.methods_refused += 1);
            return Err(answer);
        };
        let call = MethodCall {
            name,
            payload,
            answer: Some(Box::new(move |status, payload| {
                answer(status, payload, permit);
            })),
        };
        // Never full while a permit was free (the queue holds as many as there are permits);
        // closed when the host stopped serving, and dropping the call answers it.
        let _ = self.methods.try_send(call);
        Ok(())
    }

    /// Hands a cloud-to-device message to the host, or drops it (counted, and not
    /// acknowledged, so the hub delivers it again after the next connect) when the host is
    /// that far behind.
    pub(crate) fn c2d(&self, message: C2d) {
        if self.c2d.try_send(message).is_err() {
            self.status.update(|s| s.dropped.c2d += 1);
            tracing::warn!(
                "cloud-to-device message dropped: {C2D_QUEUE} are already waiting for the host"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn methods_past_the_bound_are_refused_and_answers_free_room() {
        let status = StatusCell::default();
        let (to_host, mut events) = to_host(status.clone());
        let (answers, mut answered) = mpsc::unbounded_channel();
        let answer = |answers: mpsc::UnboundedSender<_>| {
            move |code: u16, _payload: String, permit: OwnedSemaphorePermit| {
                let _ = answers.send((code, permit));
            }
        };
        for _ in 0..MAX_PENDING_METHODS {
            assert!(
                to_host
                    .method("m.x".into(), "{}".into(), answer(answers.clone()))
                    .is_ok()
            );
        }
        assert!(
            to_host
                .method("m.x".into(), "{}".into(), answer(answers.clone()))
                .is_err(),
            "one past the bound is refused"
        );
        assert_eq!(status.get().dropped.methods_refused, 1);
        // Answered by hand, and by dropping: both free their place once the link drops the
        // permit (after sending the answer).
        events
            .methods
            .recv()
            .await
            .unwrap()
            .answer(200, "{}".into());
        drop(events.methods.recv().await.unwrap());
        let (first, permit) = answered.recv().await.unwrap();
        let (second, other) = answered.recv().await.unwrap();
        assert_eq!((first, second), (200, 500));
        drop((permit, other));
        for _ in 0..2 {
            assert!(
                to_host
                    .method("m.x".into(), "{}".into(), answer(answers.clone()))
                    .is_ok()
            );
        }
    }

    #[test]
    fn c2d_past_the_queue_is_dropped_and_counted() {
        let status = StatusCell::default();
        let (to_host, _events) = to_host(status.clone());
        for _ in 0..C2D_QUEUE + 3 {
            to_host.c2d(C2d::new(Message::default(), None));
        }
        assert_eq!(status.get().dropped.c2d, 3);
    }

    #[test]
    fn desired_keeps_only_the_latest() {
        let (to_host, events) = to_host(StatusCell::default());
        to_host.desired(1, serde_json::json!({"a": 1}));
        to_host.desired(2, serde_json::json!({"a": 2}));
        let latest = events.desired.borrow().clone().unwrap();
        assert_eq!(latest.version, 2);
    }
}
