//! Integration tests of the agent library and binary.

mod collect;
mod collect_cli;
mod commands_tls;
mod config;
mod enrol;
mod probes;
mod spool;
mod stability;
mod support;
mod update;
mod uplink;
