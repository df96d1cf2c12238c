use std::process::ExitCode;

use clap::Parser as _;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    parc_server::allocator::tune();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARC_LOG")
                .unwrap_or_else(|_| "info,rumqttd=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match parc_server::cli::run(parc_server::cli::Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("parc-server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
