//! Integration tests of the agent library and binary.

mod collect;
mod collect_cli;
mod config;
mod probes;
mod stability;
