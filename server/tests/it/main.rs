//! Integration tests of the server library and binary.

mod config;
mod crash;
mod demo;
mod enrol;
mod ingest;
mod pipeline;
mod store;
mod support;
