//! The deployment last applied, kept in the store: a restart (offline too) applies it again
//! before the cloud is reachable, with the binaries it ran taken from the store's blobs.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wedge_store::{Blobs, Meta};

/// Name of the store's meta document.
const NAME: &str = "applied-deployment";

#[derive(Clone, Serialize, Deserialize)]
struct Record {
    /// The desired version it was applied at.
    version: Option<u64>,
    /// The desired section as it was applied.
    desired: Value,
    /// Each module's source to the sha256 of the binary it resolved to (a tag may move).
    sha256: BTreeMap<String, String>,
}

/// The last applied deployment.
pub(crate) struct Applied {
    meta: Meta,
    record: Mutex<Record>,
}

impl Applied {
    /// What the store holds (nothing applied yet on a new data dir).
    ///
    /// # Errors
    /// The store cannot be read or its document is damaged.
    pub(crate) fn load(meta: Meta) -> anyhow::Result<Self> {
        let record = match meta.get(NAME)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("the store's `{NAME}` document is damaged"))?,
            None => Record {
                version: None,
                desired: json!({}),
                sha256: BTreeMap::new(),
            },
        };
        Ok(Applied {
            meta,
            record: Mutex::new(record),
        })
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The version and desired section last applied.
    pub(crate) fn desired(&self) -> (Option<u64>, Value) {
        let record = self.record();
        (record.version, record.desired.clone())
    }

    /// The sha256 of the binary `source` resolved to when this was applied: what a restart
    /// runs again (from the store) rather than fetching the source anew.
    pub(crate) fn sha256(&self, source: &str) -> Option<String> {
        self.record().sha256.get(source).cloned()
    }

    /// Keeps what was just applied (`resolved`: module to its source and the sha256 that
    /// resolved to), durably, and lets the store forget binaries no module runs any more.
    pub(crate) async fn save(
        &self,
        version: Option<u64>,
        desired: &Value,
        resolved: &BTreeMap<String, (String, String)>,
        blobs: &Blobs,
    ) {
        let record = Record {
            version,
            desired: desired.clone(),
            sha256: resolved.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec(&record).expect("JSON values serialize");
        *self.record() = record;
        if let Err(e) = self.meta.set(NAME, bytes).await {
            tracing::error!(error = %e, "cannot keep the applied deployment for the next start");
            return;
        }
        let keep: Vec<String> = resolved.values().map(|(_, sha)| sha.clone()).collect();
        match blobs.retain(&keep).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "binaries no module runs removed from the store"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot remove unused binaries"),
        }
    }
}
