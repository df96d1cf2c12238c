//! Command-line interface of `parc-server`: argument parsing and dispatch to the
//! library. It must never hold logic a test would want to reach; it only wires.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "parc-server",
    version,
    about = "Parc server: fleet inventory, warranty and maintenance for classroom devices"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {}
}
