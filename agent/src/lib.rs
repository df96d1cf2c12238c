//! The Parc agent library: everything `parc-agent` does, testable without the binary.
//! `main.rs` only parses arguments and reports errors.

pub mod cli;
pub mod collect;
pub mod config;
pub mod enroll;
pub mod outbox;
pub mod release_keys;
pub mod runtime;
pub mod spool;
pub mod state;
pub mod update;
pub mod uplink;
