//! Upstreams of the wedge host: where `$upstream` telemetry goes and where desired
//! configuration comes from. [`local::LocalHub`] is the embedded default: a hub in the data
//! directory, so modules work with no cloud account.
#![deny(missing_docs)]

pub mod iothub;
pub mod local;
pub mod telemetry_record;
