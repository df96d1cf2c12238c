//! Parc's wire format, shared by the agent and the server: the MQTT topic scheme,
//! versioned messages with their validating decoder, the authenticated frame that
//! carries them, and the serial normaliser both sides match devices with.
//!
//! This crate is the only one that defines wire types. It does no IO (no sockets,
//! files, clocks or randomness: callers pass `now` and random bytes in) and knows
//! nothing of MQTT clients. The format is documented in `protocol/README.md` and pinned
//! by the golden files under `tests/data/`.

pub mod body;
pub mod enroll;
mod error;
mod frame;
pub mod health;
pub mod inventory;
mod message;
mod serial;
pub mod ticket;
mod topic;
mod validate;
pub use validate::MAX_SEQ;

pub use body::{Command, Event, Hello, Presence, Status};
pub use error::DecodeError;
pub use frame::{DeviceKey, Frame, seal, seal_raw};
pub use health::Health;
pub use inventory::Inventory;
pub use message::{
    Body, DEFAULT_MAX_FUTURE_HOURS, DEFAULT_MAX_PAYLOAD_BYTES, Epoch, Header, Limits, Message,
    SCHEMA_MAJOR, SCHEMA_VERSION,
};
pub use serial::normalize_serial;
pub use topic::{
    DeviceId, Kind, TOPIC_ROOT, device_command_filter, device_may_publish, mosquitto_device_acl,
    mosquitto_server_acl, parse_topic, server_filters, topic,
};
