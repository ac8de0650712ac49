//! [`Drain`]: the durable outbox as an upstream sees it.

use wedge_store::{Outbox, StoreError};

/// The outbox an upstream drains: records in id order, deleted once the upstream's far end has
/// them, and how record ids become message ids.
#[derive(Clone, Debug)]
pub struct Drain {
    /// The outbox.
    pub outbox: Outbox,
    /// Prefix of message ids, unique to the data dir (its store), so that ids stay unique if
    /// the data dir is ever started afresh.
    pub id_prefix: String,
}

impl Drain {
    /// The message id of record `id`: unique per device, the same on every resend and after
    /// restarts, so receivers can de-duplicate.
    pub fn message_id(&self, id: u64) -> String {
        format!("{}-{id}", self.id_prefix)
    }

    /// Up to `limit` records after `*read_up_to`, oldest first, advancing `*read_up_to` past
    /// everything they cover, including acknowledged or expired ids (which are simply absent),
    /// so that waiting with [`Outbox::wait_after`]`(*read_up_to)` waits for new records only.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn read(
        &self,
        read_up_to: &mut u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        // Taken before reading: every record committed up to here is visible to the read.
        let committed = self.outbox.last_id();
        let records = self.outbox.read_after(*read_up_to, limit)?;
        if records.len() < limit {
            *read_up_to = (*read_up_to).max(committed);
        }
        if let Some(&(last, _)) = records.last() {
            *read_up_to = (*read_up_to).max(last);
        }
        Ok(records)
    }
}
