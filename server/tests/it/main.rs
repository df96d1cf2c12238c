//! Integration tests of the server library and binary.

#[macro_use]
mod support;

mod access;
mod browser;
mod config;
mod crash;
mod demo;
mod enrol;
mod fleet;
mod ingest;
mod pipeline;
mod procurement;
mod store;
mod tickets;
