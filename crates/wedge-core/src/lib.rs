//! What the parts of wedge share, and nothing that needs wasmtime or a network: the
//! [`Message`] modules send and the limits on it, the outbox record of an `$upstream` message
//! ([`UpstreamMessage`]), the [`Upstream`] port the runtime sends through and every upstream
//! implements, the deployment documents every upstream carries ([`doc`]), JSON merge patch
//! ([`json`]), MQTT topic templates, and how files in the data directory are written
//! ([`files`]).
#![deny(missing_docs)]

pub mod doc;
pub mod files;
mod message;
mod topic_template;
mod upstream;

pub use doc::{DesiredStatus, RestartPolicy};
pub use message::{
    MAX_BODY_BYTES, MAX_METHOD_PAYLOAD_BYTES, MAX_PROPERTIES, MAX_PROPERTY_LEN, MAX_REPORTED_BYTES,
    Message, SendError, truncate,
};
pub use topic_template::{TemplateError, TopicTemplate};
pub use upstream::{Upstream, UpstreamMessage};

/// JSON merge patch (RFC 7396), the one way wedge combines configuration, desired deployments
/// and reported properties.
pub mod json {
    pub use crate::doc::merge::{merge_patch, merged, patch_between};
}
