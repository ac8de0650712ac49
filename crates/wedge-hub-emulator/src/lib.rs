//! Test support for wedge's Azure IoT Hub upstream: a real Mosquitto broker ([`Broker`]) and
//! an emulation of the IoT Hub *service* side on top of it ([`HubEmulator`]).
//!
//! IoT Hub speaks MQTT 3.1.1 to devices over a fixed set of topics (telemetry, twin,
//! direct methods, cloud-to-device messages). Mosquitto routes those topics; the emulator
//! connects as a privileged "service" user and plays the hub's part: it records telemetry,
//! keeps twins, answers twin requests, invokes methods and sends C2D messages. The formats
//! follow Microsoft's "Communicate with an IoT hub using the MQTT protocol" page and the
//! Azure SDK for C (see each module for the specific facts).
//!
//! One limitation is inherent to using a plain broker: IoT Hub scopes the `$iothub/...`
//! topics to the identity of the connection, which an MQTT broker cannot do. The emulator
//! therefore attributes `$iothub` traffic to a single identity per broker (see
//! [`HubEmulator::start`]); use one [`Broker`] per device when several devices need twins
//! or methods at once.
#![deny(missing_docs)]

mod broker;
mod certs;
mod dispatch;
mod dps;
mod emulator;
mod gateway;
mod identity;
mod observer;
mod property_bag;
mod revision;
mod sas;
mod tls;
mod twin;

pub use broker::{Broker, BrokerOptions, SERVICE_USER};
pub use dps::{Assignment, Attestation, DpsEmulator, DpsOptions, Registration};
pub use emulator::{HubEmulator, Telemetry};
pub use identity::Identity;
pub use observer::{MqttObserver, Received};
pub use property_bag::{decode_property_bag, encode_property_bag};
pub use tls::{client_tls_config, client_tls_config_with_cert};
