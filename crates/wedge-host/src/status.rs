//! The host's status document: what `wedge status` and the `wedge.status` direct method show.

use serde_json::{Value, json};
use wedge_hub::Cloud;
use wedge_runtime::Runtime;
use wedge_store::Outbox;

/// `{"modules": [...], "upstream": {"kind", "link"}, "outbox": {...}}`.
pub fn document(runtime: &Runtime, outbox: &Outbox, cloud: Option<&dyn Cloud>) -> Value {
    let upstream = match cloud {
        Some(cloud) => {
            let mut upstream = json!({ "kind": cloud.kind(), "link": cloud.status() });
            if let Some(identity) = cloud.identity() {
                upstream["identity"] = identity;
            }
            upstream
        }
        None => json!({ "kind": "local" }),
    };
    let stats = outbox.stats();
    json!({
        "modules": runtime.status(),
        "upstream": upstream,
        "outbox": {
            "depth": stats.depth,
            "bytes": stats.bytes,
            "oldest-age-ms": stats.oldest_age.map(|age| age.as_millis() as u64),
            "dropped": stats.dropped,
            "expired": stats.expired,
        },
    })
}
