//! Command-line interface of `parc-agent`: argument parsing and dispatch to the
//! library. It must never hold logic a test would want to reach; it only wires.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::AgentConfig;

#[derive(Debug, Parser)]
#[command(
    name = "parc-agent",
    version,
    about = "Parc agent: reports the hardware identity and health of a classroom device"
)]
pub struct Cli {
    /// Configuration file (default: /etc/parc/agent.toml if it exists, else built-in defaults).
    #[arg(long, short, global = true, env = "PARC_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the effective configuration (defaults, file and environment merged).
    PrintConfig {
        /// Print the embedded default file with its comments instead.
        #[arg(long)]
        default: bool,
    },
    /// Check the configuration and report the first problem with its key.
    ValidateConfig,
    /// Collect one inventory and one health sample and print them as
    /// `{"inventory": …, "health": …}` protocol messages; publishes nothing.
    Collect {
        /// Read /sys, /proc, /etc… under this directory instead of `collect.root`.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::PrintConfig { default: true } => {
            print!("{}", crate::config::DEFAULT_TOML);
            Ok(ExitCode::SUCCESS)
        }
        Command::PrintConfig { default: false } => {
            let cfg = AgentConfig::load(cli.config.as_deref()).context("loading configuration")?;
            print!("{}", cfg.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::ValidateConfig => {
            AgentConfig::load(cli.config.as_deref()).context("invalid configuration")?;
            println!("configuration is valid");
            Ok(ExitCode::SUCCESS)
        }
        Command::Collect { root, pretty } => {
            let cfg = AgentConfig::load(cli.config.as_deref()).context("loading configuration")?;
            let json = crate::collect::report::collect_json(&cfg, root.as_deref(), pretty)?;
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
