//! `parc-server import …`: loads a procurement dataset or a delivery manifest from a
//! file into the configured database, with a progress bar on a terminal and a summary
//! (every refused line with its number and reason, and the time taken) at the end.
//!
//! Only wiring between files, the pure checks in `crate::procurement` and the store:
//! it must never check a line itself or speak SQL.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Subcommand;

use crate::config::ServerConfig;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a delivery manifest (CSV: serial, model, order_reference, lot, site_uai,
    /// delivery_date[, acceptance_date][, cart]). Good lines are stored even when others
    /// are refused; importing the same file again changes nothing. Exits with status 2
    /// when some lines were refused.
    Deliveries {
        file: PathBuf,
        /// Check every line against the database and report, without writing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Load (create or update) organisations, schools, carts, contract holders,
    /// contracts, lots and orders from a TOML dataset (see server/demo-data/dataset.toml).
    Dataset { file: PathBuf },
}

async fn open_store(cfg: &ServerConfig) -> anyhow::Result<Store> {
    if cfg.database.url.is_none() {
        std::fs::create_dir_all(&cfg.storage.data_dir).with_context(|| {
            format!(
                "creating the data directory {}",
                cfg.storage.data_dir.display()
            )
        })?;
    }
    Store::connect(&cfg.database_url())
        .await
        .context("opening the database")
}

fn read(file: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar() -> impl Fn(u64, u64) + Sync {
    let tty = std::io::stderr().is_terminal();
    move |done: u64, total: u64| {
        if !tty || total == 0 {
            return;
        }
        const WIDTH: u64 = 40;
        let filled = (done * WIDTH / total) as usize;
        let bar = format!(
            "{}{}",
            "#".repeat(filled),
            "-".repeat(WIDTH as usize - filled)
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\rwriting deliveries [{bar}] {done}/{total}");
        if done >= total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

pub fn run(command: ImportCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = ServerConfig::load(config).context("loading configuration")?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let store = open_store(&cfg).await?;
        let code = match command {
            ImportCommand::Dataset { file } => {
                let dataset = crate::procurement::parse_dataset(&read(&file)?)
                    .with_context(|| format!("checking {}", file.display()))?;
                let counts = store.load_dataset(&dataset).await?;
                println!(
                    "loaded {}: {} organisations, {} sites, {} carts, {} contract holders, {} contracts, {} lots, {} orders",
                    file.display(),
                    counts.organisations,
                    counts.sites,
                    counts.carts,
                    counts.holders,
                    counts.contracts,
                    counts.lots,
                    counts.orders
                );
                ExitCode::SUCCESS
            }
            ImportCommand::Deliveries { file, dry_run } => {
                let started = Instant::now();
                let text = read(&file)?;
                let parsed = crate::procurement::parse_manifest(&text)
                    .with_context(|| format!("reading the manifest {}", file.display()))?;
                let report = store
                    .import_deliveries(&parsed, dry_run, chrono::Utc::now(), &progress_bar())
                    .await?;
                for e in &report.errors {
                    println!("{}: {e}", file.display());
                }
                println!(
                    "{}: {report} in {:.2} s",
                    file.display(),
                    started.elapsed().as_secs_f64()
                );
                if report.errors.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                }
            }
        };
        store.close().await;
        anyhow::Ok(code)
    })
}
