//! Upstreams of the wedge host: where `$upstream` telemetry goes (drained from the durable
//! outbox, see [`Drain`]) and where desired configuration comes from. [`local::LocalHub`] is the
//! embedded default: a hub in the data directory, so modules work with no cloud account;
//! [`iothub`] speaks Azure IoT Hub's MQTT device protocol and [`mqtt`] any MQTT broker, both over
//! the shared link in `link/`.
#![deny(missing_docs)]

mod drain;
pub mod iothub;
mod link;
pub mod local;
pub mod mqtt;
pub mod telemetry_record;

pub use drain::Drain;
/// The upstreams' TLS trust and client identity, for checks that must see what the link sees.
pub use link::tls;
pub use link::{
    Ack, C2d, CaFileError, Cloud, Desired, Dropped, FailureKind, HubEvents, IOT_HUB_C2D_QUEUE,
    LinkStatus, MethodCall, Offline,
};
