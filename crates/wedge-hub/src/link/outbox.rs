//! Telemetry waiting for the broker's PUBACK, and which of it is on the wire.

use std::collections::{BTreeMap, HashMap, VecDeque};

use wedge_runtime::UpstreamMessage;

/// QoS 1 publishes awaiting their PUBACK at once.
pub(crate) const MAX_IN_FLIGHT: usize = 100;

/// Telemetry not yet acknowledged, in order of acceptance, plus the bookkeeping that maps
/// rumqttc's packet ids back to entries.
#[derive(Default)]
pub(crate) struct Outbox {
    next_id: u64,
    entries: BTreeMap<u64, UpstreamMessage>,
    /// Entries sent on this connection and not yet acknowledged, by packet id.
    in_flight: HashMap<u16, u64>,
    /// The next id to send.
    cursor: u64,
    /// Publishes handed to rumqttc, in order, waiting for their packet id: `Some(id)` for
    /// telemetry, `None` for the protocol's own traffic (twin, methods, reported state).
    /// rumqttc reports `Outgoing::Publish(pkid)` in the order publishes were requested.
    awaiting_pkid: VecDeque<Option<u64>>,
}

impl Outbox {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn push(&mut self, message: UpstreamMessage) {
        self.next_id += 1;
        self.entries.insert(self.next_id, message);
    }

    /// A new connection: everything unacknowledged is sent again, from the oldest.
    pub(crate) fn rewind(&mut self) {
        self.in_flight.clear();
        self.awaiting_pkid.clear();
        self.cursor = self
            .entries
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_id + 1);
    }

    /// Whether an entry is waiting to be sent and the in-flight window has room for it.
    pub(crate) fn sendable(&self) -> bool {
        self.in_flight.len() + self.awaiting_pkid.iter().flatten().count() < MAX_IN_FLIGHT
            && self.entries.range(self.cursor..).next().is_some()
    }

    /// The next entry to put on the wire.
    pub(crate) fn next_to_send(&mut self) -> Option<(u64, &UpstreamMessage)> {
        let (&id, message) = self.entries.range(self.cursor..).next()?;
        self.cursor = id + 1;
        Some((id, message))
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

    /// Drops an entry that cannot be sent.
    pub(crate) fn forget(&mut self, id: u64) {
        self.entries.remove(&id);
    }

    /// A PUBACK: true when it completed a telemetry entry (which is forgotten).
    pub(crate) fn acknowledged(&mut self, pkid: u16) -> bool {
        match self.in_flight.remove(&pkid) {
            Some(id) => self.entries.remove(&id).is_some(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use wedge_runtime::Message;

    fn message(n: u8) -> UpstreamMessage {
        UpstreamMessage {
            module: "m".into(),
            output: "o".into(),
            message: Message {
                body: vec![n],
                ..Message::default()
            },
            enqueued: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn unacknowledged_entries_are_resent_from_the_oldest_after_a_rewind() {
        let mut outbox = Outbox::default();
        for n in 1..=3 {
            outbox.push(message(n));
        }
        outbox.rewind();
        for pkid in 1..=3 {
            let (id, _) = outbox.next_to_send().unwrap();
            outbox.requested(Some(id));
            outbox.sent(pkid);
        }
        assert!(!outbox.sendable());
        assert!(outbox.acknowledged(2));
        assert!(
            !outbox.acknowledged(2),
            "a duplicate PUBACK completes nothing"
        );
        outbox.rewind();
        let resent: Vec<u64> =
            std::iter::from_fn(|| outbox.next_to_send().map(|(id, _)| id)).collect();
        assert_eq!(resent, [1, 3]);
    }

    #[test]
    fn other_traffic_takes_its_packet_id_in_order() {
        let mut outbox = Outbox::default();
        outbox.push(message(1));
        outbox.rewind();
        outbox.requested(None); // e.g. a twin GET requested first
        let (id, _) = outbox.next_to_send().unwrap();
        outbox.requested(Some(id));
        outbox.sent(7);
        outbox.sent(8);
        assert!(!outbox.acknowledged(7), "packet 7 was the twin GET");
        assert!(outbox.acknowledged(8));
        assert_eq!(outbox.len(), 0);
    }
}
