//! Command-line interface of `parc-server`: argument parsing and dispatch to the
//! library. It must never hold logic a test would want to reach; it only wires.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::ServerConfig;

#[derive(Debug, Parser)]
#[command(
    name = "parc-server",
    version,
    about = "Parc server: fleet inventory, warranty and maintenance for classroom devices"
)]
pub struct Cli {
    /// Configuration file (default: built-in defaults).
    #[arg(long, short, global = true, env = "PARC_SERVER_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole loop on this machine: embedded broker, ingest, HTTP API and a
    /// simulated fleet. Free ports are used when the preferred ones are taken.
    Demo {
        /// Preferred HTTP address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: SocketAddr,
        /// Preferred MQTT address of the embedded broker.
        #[arg(long, default_value = "127.0.0.1:1883")]
        mqtt: SocketAddr,
        /// Where the demo keeps its SQLite database.
        #[arg(long, default_value = "parc-demo-data")]
        data_dir: PathBuf,
        /// Number of simulated devices.
        #[arg(long, default_value_t = 30)]
        devices: usize,
        /// Seconds between two health samples of a simulated device.
        #[arg(long, default_value_t = 2)]
        interval_seconds: u64,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration_seconds: Option<u64>,
    },
    /// Run the server: ingest from the embedded broker (or `mqtt.url`), store in
    /// SQLite (or `database.url`), serve the HTTP API on `http.listen`.
    Run,
    /// Print the Mosquitto ACL file for Parc (devices limited to their own topics;
    /// the server's account reads device topics and writes commands).
    PrintMosquittoAcl {
        /// Broker user name of the server.
        #[arg(long, default_value = "parc-server")]
        server_user: String,
    },
    /// Print the effective configuration (defaults, file and environment merged).
    PrintConfig {
        /// Print the embedded default file with its comments instead.
        #[arg(long)]
        default: bool,
    },
    /// Check the configuration and report the first problem with its key.
    ValidateConfig,
    /// Import procurement data (dataset, delivery manifests) into the database.
    Import {
        #[command(subcommand)]
        what: crate::procurement_cli::ImportCommand,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::PrintConfig { default: true } => print!("{}", crate::config::DEFAULT_TOML),
        Command::PrintConfig { default: false } => {
            let cfg = ServerConfig::load(cli.config.as_deref()).context("loading configuration")?;
            print!("{}", cfg.to_toml());
        }
        Command::ValidateConfig => {
            ServerConfig::load(cli.config.as_deref()).context("invalid configuration")?;
            println!("configuration is valid");
        }
        Command::Import { what } => {
            return crate::procurement_cli::run(what, cli.config.as_deref());
        }
        Command::PrintMosquittoAcl { server_user } => print!("{}", mosquitto_acl(&server_user)),
        Command::Run => {
            let cfg = ServerConfig::load(cli.config.as_deref()).context("loading configuration")?;
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async {
                let http = tokio::net::TcpListener::bind(cfg.http.listen)
                    .await
                    .with_context(|| {
                        format!(
                            "HTTP address {} is not available; choose another with `[http] listen = \"127.0.0.1:PORT\"` or PARC_SERVER_HTTP__LISTEN",
                            cfg.http.listen
                        )
                    })?;
                let prepared = crate::app::Prepared::new(cfg).await?;
                tracing::info!(
                    http = %http.local_addr()?,
                    engine = prepared.ingest.store.engine().as_str(),
                    "parc-server running"
                );
                prepared.run(http, shutdown_signal()).await?;
                anyhow::Ok(())
            })?;
        }
        Command::Demo {
            http,
            mqtt,
            data_dir,
            devices,
            interval_seconds,
            duration_seconds,
        } => {
            let opts = crate::demo::DemoOptions {
                http,
                mqtt,
                data_dir,
                devices,
                interval: Duration::from_secs(interval_seconds.max(1)),
                duration: duration_seconds.map(Duration::from_secs),
            };
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(crate::demo::run(opts, shutdown_signal()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The ACL file shipped as packaging/mosquitto/parc.acl.
pub fn mosquitto_acl(server_user: &str) -> String {
    let mut out = String::from(
        "# Parc ACL for Mosquitto, generated by `parc-server print-mosquitto-acl`.\n\
         # Each device's broker user name is its device id (or its client certificate CN\n\
         # with use_identity_as_username): it may write only its own data topics and read\n\
         # only its own command topic.\n",
    );
    for line in parc_protocol::mosquitto_device_acl() {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("\n# The server's account.\n");
    for line in parc_protocol::mosquitto_server_acl(server_user) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
