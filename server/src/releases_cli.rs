//! `parc-server release …`: publishing agent archives and widening their rollout from
//! the command line, and [`publish`], the library function behind it (tests call it).
//!
//! The server does not verify release signatures — the agents do, with keys built into
//! them — so a compromised server cannot make agents install anything. It refuses
//! archives whose name does not follow the signed-name convention, and never replaces
//! a published archive.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use sha2::{Digest as _, Sha256};

use crate::config::ServerConfig;
use crate::releases::{
    ReleaseError, ReleaseInfo, check_archive_name, check_channel, check_rollout,
};
use crate::store::{NewRelease, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Store a signed agent archive (parc-agent-VERSION-TARGET.tar.gz, signed with
    /// zipsign under that name). Nobody gets it until `rollout` says so, unless
    /// --percent or --site is given here.
    Publish {
        archive: PathBuf,
        /// Its version (bare semver, e.g. 1.4.0).
        #[arg(long)]
        version: String,
        /// "stable" or "pilot".
        #[arg(long, default_value = "stable")]
        channel: String,
        /// Share of the channel's devices that get it at once (0–100).
        #[arg(long, default_value_t = 0)]
        percent: i64,
        /// Schools (UAI) whose devices get it at once; repeatable.
        #[arg(long = "site")]
        sites: Vec<String>,
    },
    /// Set who gets a release: a percentage of the channel's devices and/or named sites.
    Rollout {
        version: String,
        #[arg(long, default_value = "stable")]
        channel: String,
        #[arg(long)]
        percent: i64,
        #[arg(long = "site")]
        sites: Vec<String>,
    },
    /// List releases with their rollout.
    List,
    /// Agent versions in the fleet.
    Versions,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Invalid(#[from] ReleaseError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a gzip file")]
    NotGzip(PathBuf),
    #[error("{file} is already published on {channel}: publish a new version instead")]
    Exists { file: String, channel: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks and stores an archive under its own file name.
pub async fn publish(
    store: &Store,
    archive: &Path,
    version: &str,
    channel: &str,
    percent: i64,
    sites: &[String],
    now: DateTime<Utc>,
) -> Result<ReleaseInfo, PublishError> {
    check_channel(channel)?;
    let sites = check_rollout(percent, sites)?;
    let file_name = archive
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let target = check_archive_name(&file_name, version)?;
    let bytes = std::fs::read(archive).map_err(|source| PublishError::Read {
        path: archive.to_path_buf(),
        source,
    })?;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(PublishError::NotGzip(archive.to_path_buf()));
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let stored = store
        .publish_release(
            &NewRelease {
                channel,
                version,
                file_name: &file_name,
                target: &target,
                sha256: &sha256,
                archive: &bytes,
                percent,
                sites: &sites,
            },
            now,
        )
        .await?;
    if !stored {
        return Err(PublishError::Exists {
            file: file_name,
            channel: channel.to_string(),
        });
    }
    Ok(store
        .releases(Some(channel))
        .await?
        .into_iter()
        .find(|r| r.file_name == file_name)
        .expect("just published"))
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

fn print_release(r: &ReleaseInfo) {
    println!(
        "{} {} {} ({} bytes, sha256 {}) rollout {}%{}",
        r.channel,
        r.version,
        r.file_name,
        r.size_bytes,
        r.sha256,
        r.rollout.percent,
        if r.rollout.sites.is_empty() {
            String::new()
        } else {
            format!(" + sites {}", r.rollout.sites.join(","))
        }
    );
}

pub fn run(command: ReleaseCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cfg = ServerConfig::load(config).context("loading configuration")?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let store = open_store(&cfg).await?;
        let now = Utc::now();
        match command {
            ReleaseCommand::Publish {
                archive,
                version,
                channel,
                percent,
                sites,
            } => {
                let r = publish(&store, &archive, &version, &channel, percent, &sites, now)
                    .await
                    .with_context(|| format!("publishing {}", archive.display()))?;
                print!("published: ");
                print_release(&r);
            }
            ReleaseCommand::Rollout {
                version,
                channel,
                percent,
                sites,
            } => {
                check_channel(&channel)?;
                let sites = check_rollout(percent, &sites)?;
                let n = store
                    .set_rollout(&channel, &version, percent, &sites, now)
                    .await?;
                anyhow::ensure!(n > 0, "no release {version} on channel {channel}");
                for r in store.releases(Some(&channel)).await? {
                    if r.version == version {
                        print_release(&r);
                    }
                }
            }
            ReleaseCommand::List => {
                for r in store.releases(None).await? {
                    print_release(&r);
                }
            }
            ReleaseCommand::Versions => {
                for v in store.fleet_versions().await? {
                    println!(
                        "{}\t{} device(s), {} online",
                        v.agent_version.as_deref().unwrap_or("(never reported)"),
                        v.devices,
                        v.online
                    );
                }
            }
        }
        store.close().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
