//! Integration tests of the agent library and binary.

mod collect;
mod config;
mod enrol;
mod spool;
mod support;
mod uplink;
