//! The link's window on the durable outbox: which records are read, which are on the wire
//! under which packet id, and which the broker acknowledged (deleted from the store).

use std::collections::{HashMap, VecDeque};

use crate::Drain;

/// QoS 1 publishes awaiting their PUBACK at once.
pub(crate) const MAX_IN_FLIGHT: usize = 100;
/// Records read from the store at once.
const READ_BATCH: usize = 256;

pub(crate) struct Outbox {
    drain: Drain,
    /// Records read from the store and not yet sent, oldest first.
    buffer: VecDeque<(u64, Vec<u8>)>,
    /// Every record up to this id has been read on this connection.
    read_up_to: u64,
    /// Records sent on this connection and not yet acknowledged, by packet id.
    in_flight: HashMap<u16, u64>,
    /// Publishes handed to rumqttc, in order, waiting for their packet id: `Some(id)` for
    /// telemetry, `None` for the protocol's own traffic (twin, methods, reported state).
    /// rumqttc reports `Outgoing::Publish(pkid)` in the order publishes were requested.
    awaiting_pkid: VecDeque<Option<u64>>,
}

impl Outbox {
    pub(crate) fn new(drain: Drain) -> Self {
        Outbox {
            drain,
            buffer: VecDeque::new(),
            read_up_to: 0,
            in_flight: HashMap::new(),
            awaiting_pkid: VecDeque::new(),
        }
    }

    pub(crate) fn drain(&self) -> &Drain {
        &self.drain
    }

    /// A new connection: everything unacknowledged is read and sent again, from the oldest.
    pub(crate) fn rewind(&mut self) {
        self.in_flight.clear();
        self.awaiting_pkid.clear();
        self.buffer.clear();
        self.read_up_to = 0;
    }

    fn window_has_room(&self) -> bool {
        self.in_flight.len() + self.awaiting_pkid.iter().flatten().count() < MAX_IN_FLIGHT
    }

    /// Whether a read record can go on the wire now.
    pub(crate) fn sendable(&self) -> bool {
        !self.buffer.is_empty() && self.window_has_room()
    }

    /// The id to wait beyond for more records, when the window has room and nothing read is
    /// waiting; `None` otherwise.
    pub(crate) fn wants_more(&self) -> Option<u64> {
        (self.buffer.is_empty() && self.window_has_room()).then_some(self.read_up_to)
    }

    /// Reads the next records from the store.
    pub(crate) fn fill(&mut self) -> Result<(), String> {
        let records = self
            .drain
            .outbox
            .read_from(&mut self.read_up_to, READ_BATCH)
            .map_err(|e| format!("reading the outbox: {e}"))?;
        self.buffer.extend(records);
        Ok(())
    }

    /// Reads the next records from the store; whether there were any.
    pub(crate) fn fill_some(&mut self) -> Result<bool, String> {
        let before = self.buffer.len();
        self.fill()?;
        Ok(self.buffer.len() > before)
    }

    /// The next record to put on the wire.
    pub(crate) fn next_to_send(&mut self) -> Option<(u64, Vec<u8>)> {
        self.buffer.pop_front()
    }

    /// A publish was handed to rumqttc: `id` for telemetry, `None` for other traffic.
    pub(crate) fn requested(&mut self, id: Option<u64>) {
        self.awaiting_pkid.push_back(id);
    }

    /// rumqttc put the oldest requested publish on the wire under `pkid`.
    pub(crate) fn sent(&mut self, pkid: u16) {
        if let Some(Some(id)) = self.awaiting_pkid.pop_front() {
            self.in_flight.insert(pkid, id);
        }
    }

    /// Deletes a record that can never be sent.
    pub(crate) fn forget(&mut self, id: u64) {
        // Deleted and counted as dropped in the outbox's stats, not as delivered.
        self.drain.outbox.discard(&[id]);
    }

    /// A PUBACK: true when it completed a telemetry record, which is deleted from the store.
    pub(crate) fn acknowledged(&mut self, pkid: u16) -> bool {
        match self.in_flight.remove(&pkid) {
            Some(id) => {
                self.drain.outbox.acknowledge(&[id]);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wedge_store::{OutboxLimits, Store, WhenFull};

    async fn outbox_with(records: u8) -> (Store, Outbox) {
        let store = Store::open_in_memory().unwrap();
        let limits = OutboxLimits {
            max_bytes: 1 << 20,
            ttl: None,
            when_full: WhenFull::Reject,
        };
        let outbox = store.outbox(limits);
        for n in 1..=records {
            outbox.append(vec![n]).await.unwrap();
        }
        let drain = Drain {
            outbox,
            id_prefix: "t".into(),
            meta: store.meta(),
        };
        (store, Outbox::new(drain))
    }

    #[tokio::test]
    async fn unacknowledged_records_are_resent_from_the_oldest_after_a_rewind() {
        let (store, mut outbox) = outbox_with(3).await;
        assert_eq!(outbox.wants_more(), Some(0));
        outbox.fill().unwrap();
        for pkid in 1..=3 {
            let (id, _) = outbox.next_to_send().unwrap();
            outbox.requested(Some(id));
            outbox.sent(pkid);
        }
        assert!(!outbox.sendable());
        assert_eq!(outbox.wants_more(), Some(3), "waits beyond what it read");
        assert!(outbox.acknowledged(2));
        assert!(
            !outbox.acknowledged(2),
            "a duplicate PUBACK completes nothing"
        );
        store.flush().await.unwrap();
        outbox.rewind();
        outbox.fill().unwrap();
        let resent: Vec<u64> =
            std::iter::from_fn(|| outbox.next_to_send().map(|(id, _)| id)).collect();
        assert_eq!(resent, [1, 3]);
    }

    #[tokio::test]
    async fn an_empty_read_does_not_wait_for_acknowledged_ids_again() {
        let (store, mut outbox) = outbox_with(2).await;
        store
            .outbox(OutboxLimits {
                max_bytes: 1 << 20,
                ttl: None,
                when_full: WhenFull::Reject,
            })
            .acknowledge(&[1, 2]);
        store.flush().await.unwrap();
        outbox.fill().unwrap();
        assert!(!outbox.sendable());
        assert_eq!(outbox.wants_more(), Some(2));
    }

    #[tokio::test]
    async fn other_traffic_takes_its_packet_id_in_order() {
        let (_store, mut outbox) = outbox_with(1).await;
        outbox.fill().unwrap();
        outbox.requested(None); // e.g. a twin GET requested first
        let (id, _) = outbox.next_to_send().unwrap();
        outbox.requested(Some(id));
        outbox.sent(7);
        outbox.sent(8);
        assert!(!outbox.acknowledged(7), "packet 7 was the twin GET");
        assert!(outbox.acknowledged(8));
    }
}
