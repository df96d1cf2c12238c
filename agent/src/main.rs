use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    // `Targets` ("info", "warn,parc_agent::uplink=debug") rather than EnvFilter: it
    // needs no regex engine, which keeps the agent's code — and its resident memory —
    // smaller.
    let filter = std::env::var("PARC_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    match parc_agent::cli::run(parc_agent::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("parc-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
