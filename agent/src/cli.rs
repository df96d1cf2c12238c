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
    /// Enrol this device with a Parc server and store its credentials (mode 0600).
    Enroll {
        /// Server base URL (default: server.url from the configuration).
        #[arg(long)]
        server: Option<String>,
        /// Enrolment token given by the administrator.
        #[arg(long, env = "PARC_ENROLL_TOKEN", hide_env_values = true)]
        token: String,
        /// PEM file of a private CA to trust (only) for the server's HTTPS certificate.
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Run the agent daemon until SIGTERM or Ctrl-C.
    Run,
    /// Collect one inventory and one health sample, deliver the whole spool, then exit:
    /// 0 only when the broker acknowledged everything.
    Once {
        #[arg(long, default_value_t = 60)]
        timeout_seconds: u64,
    },
    /// Before the daemon starts (systemd ExecStartPre, run with the kept previous
    /// binary): restore the previous version if the installed one is on probation past
    /// its deadline. Exit 0 either way.
    UpdateGuard {
        /// The executable the service runs and updates replace.
        #[arg(long)]
        install_path: Option<PathBuf>,
    },
    /// Show enrolment, broker reachability, last publication and spool figures.
    Status {
        /// Machine-readable JSON.
        #[arg(long)]
        json: bool,
        /// Do not try to connect to the broker.
        #[arg(long)]
        no_probe: bool,
    },
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One thread does the agent's waiting; collectors borrow a blocking thread that
    // goes away soon after: an idle agent costs one thread, not a pool.
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(4)
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Completes on SIGTERM or SIGINT.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
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
        Command::Enroll {
            server,
            token,
            ca_file,
        } => {
            let cfg = AgentConfig::load(cli.config.as_deref()).context("loading configuration")?;
            let server = server.unwrap_or_else(|| cfg.server.url.clone());
            let collector =
                crate::collect::Collector::from_config(&cfg.collect, crate::runtime::AGENT_VERSION);
            let req = crate::enroll::request_from_inventory(
                &collector.inventory(),
                &token,
                crate::runtime::AGENT_VERSION,
            );
            let state = crate::state::StateDir::new(&cfg.state.dir);
            let e = tokio_runtime()?
                .block_on(crate::enroll::enroll(
                    &server,
                    &req,
                    ca_file.as_deref(),
                    &state,
                ))
                .context("enrolment failed")?;
            println!(
                "enrolled as {} (credentials in {})",
                e.device_id,
                state.enrollment_path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            let cfg = AgentConfig::load(cli.config.as_deref()).context("loading configuration")?;
            let outcome = tokio_runtime()?
                .block_on(crate::runtime::run(cfg, termination()))
                .context("agent failed")?;
            Ok(match outcome {
                crate::runtime::RunOutcome::Stopped => ExitCode::SUCCESS,
                // systemd (Restart=on-failure, RestartForceExitStatus=75) starts the binary
                // now installed.
                crate::runtime::RunOutcome::RestartForUpdate { .. }
                | crate::runtime::RunOutcome::RolledBack { .. } => {
                    ExitCode::from(crate::update::EXIT_RESTART)
                }
            })
        }
        Command::UpdateGuard { install_path } => {
            let mut cfg =
                AgentConfig::load(cli.config.as_deref()).context("loading configuration")?;
            if let Some(p) = install_path {
                cfg.update.install_path = p;
            }
            anyhow::ensure!(
                !cfg.update.install_path.as_os_str().is_empty(),
                "update-guard needs --install-path or update.install_path (it runs as the kept \
                 previous binary, not as the installed one)"
            );
            let u = crate::update::Updater::from_config(&cfg, crate::runtime::AGENT_VERSION)
                .map_err(anyhow::Error::msg)?;
            if u.guard(chrono::Utc::now())
                .context("restoring the previous version")?
            {
                println!("the version on probation missed its deadline: previous version restored");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Once { timeout_seconds } => {
            let cfg = AgentConfig::load(cli.config.as_deref()).context("loading configuration")?;
            let r = tokio_runtime()?
                .block_on(crate::runtime::once(
                    cfg,
                    std::time::Duration::from_secs(timeout_seconds),
                ))
                .context("collection run failed")?;
            if r.pending == 0 {
                println!("all messages acknowledged by the broker");
                return Ok(ExitCode::SUCCESS);
            }
            let why = match (&r.connected, &r.last_error) {
                (false, Some(e)) => format!("the broker could not be reached: {e}"),
                (false, None) => "the broker could not be reached".to_string(),
                (true, _) => "the broker did not acknowledge them in time".to_string(),
            };
            eprintln!(
                "parc-agent: {} message(s) still in the spool after {timeout_seconds} s: {why}",
                r.pending
            );
            Ok(ExitCode::from(2))
        }
        Command::Status { json, no_probe } => {
            let cfg = AgentConfig::load(cli.config.as_deref()).context("loading configuration")?;
            let report = tokio_runtime()?.block_on(crate::runtime::status(&cfg, !no_probe));
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("encoding the status")?
                );
            } else {
                print!("{}", report.to_text());
            }
            Ok(if report.enrolled {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
    }
}
