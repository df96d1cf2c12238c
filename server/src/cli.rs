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
        /// Where the webhook receiver standing in for the contract holders listens.
        #[arg(long, default_value = "127.0.0.1:8090")]
        webhook: SocketAddr,
        /// Number of simulated devices.
        #[arg(long, default_value_t = 300)]
        devices: usize,
        /// Simulated time runs this many times faster than real time (2016: the week
        /// in five minutes), until it reaches the present.
        #[arg(long, default_value_t = 2016.0)]
        accel: f64,
        /// Simulated minutes between two health samples of a device.
        #[arg(long, default_value_t = 5.0)]
        health_interval_minutes: f64,
        /// Do not run the real agent on this machine.
        #[arg(long)]
        no_agent: bool,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration_seconds: Option<u64>,
    },
    /// Run the server: ingest from the embedded broker (or `mqtt.url`), store in
    /// SQLite (or `database.url`), serve the HTTP API on `http.listen`.
    Run,
    /// Enrolment tokens, issued per member authority or school.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Enrolled devices.
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// Contract holders (titulaires).
    Holder {
        #[command(subcommand)]
        action: HolderAction,
    },
    /// Print Mosquitto's password file for the enrolled devices (user name = device id).
    PrintMosquittoPasswd,
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
    /// Dashboard and API accounts, and their API tokens.
    User {
        #[command(subcommand)]
        action: crate::accounts_cli::UserAction,
    },
    /// Import procurement data (dataset, delivery manifests) into the database.
    Import {
        #[command(subcommand)]
        what: crate::procurement_cli::ImportCommand,
    },
    /// Agent releases: publish signed archives, stage their rollout, fleet versions.
    Release {
        #[command(subcommand)]
        action: crate::releases_cli::ReleaseCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Issue a token and print it once (only its hash is stored).
    Create {
        /// Who it is for: "Commune de Sarreguemines", "École Jean Moulin (0570123X)".
        #[arg(long)]
        label: String,
        /// Member authority or school it enrols devices for.
        #[arg(long)]
        scope: Option<String>,
        /// Days until it expires.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// How many devices it may enrol (default: no limit).
        #[arg(long)]
        max_uses: Option<u32>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id (`tok_…`).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum HolderAction {
    /// Set where a holder's tickets are POSTed and print the secret that signs them
    /// (X-Parc-Signature: sha256=HMAC-SHA256(secret, body)); a new secret each time.
    SetWebhook {
        /// The holder's id in the procurement dataset.
        #[arg(long)]
        holder: String,
        /// https:// address of the holder's ticket endpoint.
        #[arg(long)]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceAction {
    /// Stop accepting a device's messages and broker logins.
    Revoke { device_id: String },
}

async fn open_store(config: Option<&std::path::Path>) -> anyhow::Result<crate::store::Store> {
    let cfg = ServerConfig::load(config).context("loading configuration")?;
    if cfg.database.url.is_none() {
        std::fs::create_dir_all(&cfg.storage.data_dir).with_context(|| {
            format!(
                "creating the data directory {}",
                cfg.storage.data_dir.display()
            )
        })?;
    }
    crate::store::Store::connect(&cfg.database_url())
        .await
        .context("opening the database")
}

async fn admin(config: Option<&std::path::Path>, command: Command) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    let now = chrono::Utc::now();
    match command {
        Command::Token {
            action:
                TokenAction::Create {
                    label,
                    scope,
                    days,
                    max_uses,
                },
        } => {
            anyhow::ensure!(!label.trim().is_empty(), "--label must not be empty");
            anyhow::ensure!(
                (1..=3650).contains(&days),
                "--days must be between 1 and 3650"
            );
            let t = crate::enroll::new_token();
            let expires_at = now + chrono::Duration::days(i64::from(days));
            store
                .create_token(
                    &crate::store::NewTokenRecord {
                        id: &t.id,
                        secret_sha256: &t.secret_sha256,
                        label: label.trim(),
                        scope: scope.as_deref(),
                        expires_at,
                        max_uses: max_uses.map(i64::from),
                    },
                    now,
                )
                .await?;
            println!("{}", t.token);
            eprintln!(
                "Token {} for {label:?}, valid until {}. It is shown only now: give it to whoever installs the agents (parc-agent enroll --token …).",
                t.id,
                expires_at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        Command::Token {
            action: TokenAction::List,
        } => {
            for t in store.tokens().await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at <= now {
                    "expired"
                } else {
                    "active"
                };
                let uses = match t.max_uses {
                    Some(m) => format!("{}/{m}", t.uses),
                    None => t.uses.to_string(),
                };
                println!(
                    "{}\t{state}\tuntil {}\tuses {uses}\t{}{}",
                    t.id,
                    t.expires_at.format("%Y-%m-%d"),
                    t.label,
                    t.scope.map(|s| format!(" [{s}]")).unwrap_or_default()
                );
            }
        }
        Command::Token {
            action: TokenAction::Revoke { id },
        } => {
            anyhow::ensure!(
                store.revoke_token(&id, now).await?,
                "no active token with id {id}"
            );
            println!("token {id} revoked");
        }
        Command::Device {
            action: DeviceAction::Revoke { device_id },
        } => {
            let id = parc_protocol::DeviceId::parse(&device_id)
                .map_err(|e| anyhow::anyhow!("device id: {e}"))?;
            anyhow::ensure!(
                store.revoke_device(&id, now).await?,
                "no enrolled, unrevoked device {id}"
            );
            println!("device {id} revoked; servers refuse its messages within 30 s");
        }
        Command::User { action } => crate::accounts_cli::run(&store, action).await?,
        Command::Holder {
            action: HolderAction::SetWebhook { holder, url },
        } => {
            let parsed = reqwest::Url::parse(&url).with_context(|| format!("--url {url:?}"))?;
            anyhow::ensure!(
                matches!(parsed.scheme(), "https" | "http"),
                "--url must be an http(s):// address"
            );
            let secret = crate::enroll::random_secret();
            anyhow::ensure!(
                store.set_holder_webhook(&holder, &url, &secret).await?,
                "no contract holder with id {holder:?} (import the procurement dataset first)"
            );
            println!(
                "Tickets of {holder} now go to {url}. Signing secret (shown only now; give it to the holder to verify X-Parc-Signature): {secret}"
            );
        }
        Command::PrintMosquittoPasswd => {
            for line in store.mosquitto_password_lines().await? {
                println!("{line}");
            }
        }
        _ => unreachable!("only administrative commands reach here"),
    }
    store.close().await;
    Ok(())
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
        command @ (Command::Token { .. }
        | Command::Device { .. }
        | Command::User { .. }
        | Command::Holder { .. }
        | Command::PrintMosquittoPasswd) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(admin(cli.config.as_deref(), command))?;
        }
        Command::Import { what } => {
            return crate::procurement_cli::run(what, cli.config.as_deref());
        }
        Command::Release { action } => {
            return crate::releases_cli::run(action, cli.config.as_deref());
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
            webhook,
            data_dir,
            devices,
            accel,
            health_interval_minutes,
            no_agent,
            duration_seconds,
        } => {
            anyhow::ensure!(accel >= 1.0, "--accel must be at least 1");
            anyhow::ensure!(
                health_interval_minutes > 0.0,
                "--health-interval-minutes must be positive"
            );
            let opts = crate::demo::DemoOptions {
                http,
                mqtt,
                webhook,
                data_dir,
                devices,
                accel,
                health_interval_minutes,
                real_agent: !no_agent,
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
