//! [`Drain`]: the durable outbox as an upstream sees it.

use wedge_store::{Meta, Outbox};

/// The outbox an upstream drains: records in id order, deleted once the upstream's far end has
/// them, and how record ids become message ids.
#[derive(Clone, Debug)]
pub struct Drain {
    /// The outbox.
    pub outbox: Outbox,
    /// Prefix of message ids, unique to the data dir (its store), so that ids stay unique if
    /// the data dir is ever started afresh.
    pub id_prefix: String,
    /// The store's named documents, where an upstream keeps what must outlive a restart (the
    /// MQTT upstream's config version counter).
    pub meta: Meta,
}

impl Drain {
    /// The message id of record `id`: unique per device, the same on every resend and after
    /// restarts, so receivers can de-duplicate.
    pub fn message_id(&self, id: u64) -> String {
        format!("{}-{id}", self.id_prefix)
    }
}
