//! The wedge host as a library: everything `wedge run` does between parsing its arguments and
//! waiting for a signal. [`Host::start`] opens the data dir's store, binds the control socket,
//! picks the upstream the deployment names (the embedded local hub, Azure IoT Hub or an MQTT
//! broker), starts the modules, and serves what the cloud and local clients ask; [`control`]
//! is the socket's protocol, which the CLI speaks too.
#![deny(missing_docs)]

mod base;
pub mod check;
mod cloud;
pub mod config;
pub mod control;
mod data_version;
mod get_logs;
mod host;
mod metrics;
mod reconcile;
mod requests;
mod service;
mod status;
mod upstreams;

pub use data_version::DataVersionError;
pub use host::Host;
