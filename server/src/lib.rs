//! The Parc server library: everything `parc-server` does, testable without the
//! binary. `main.rs` only parses arguments and reports errors.

pub mod cli;
