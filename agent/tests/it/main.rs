//! Integration tests of the agent library and binary.

mod collect;
mod collect_cli;
mod commands_tls;
mod config;
mod enrol;
mod mosquitto_certs;
mod packaging;
mod probes;
mod spool;
mod stability;
mod support;
mod update;
mod uplink;
