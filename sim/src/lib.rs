//! `parc-sim`: a fleet of simulated classroom devices for demos and benchmarks. Each
//! device is a real MQTT client run by the agent's own code (enrolment, spool, outbox,
//! uplink), with hardware that ages and fails on a simulated, optionally accelerated
//! clock. `main.rs` only parses arguments.
//!
//! It must never write as another device, nor invent a wire format: everything it sends
//! is what a real agent would send.

pub mod cli;
pub mod clock;
pub mod device;
pub mod fleet;
pub mod profile;

pub use clock::SimClock;
pub use device::{DeviceSpec, Fault, SimDevice};
pub use fleet::{FleetOptions, FleetReport, ScheduledFault, plan, run, specs};
pub use profile::Profile;
