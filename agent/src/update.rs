//! Self-update: installs a signed agent release announced by the server, keeps the
//! previous binary, and restores it when the new version does not prove healthy in time.
//!
//! Downloading, checking and installing go through `self_update`'s manifest backend with
//! the ed25519 (zipsign) verifying keys embedded at build time ([`RELEASE_KEYS`]): an
//! archive is installed only if its SHA-256 matches the manifest, one of the keys signed
//! it (under its published file name), and the extracted binary reports the announced
//! version. Downgrades are refused before anything is downloaded. Each refusal becomes an
//! `update_refused` event with a stable `reason`.
//!
//! State lives in `state.dir/update/`: `previous-parc-agent` (the binary replaced last),
//! `pending.json` (an installed version still on probation, with its deadline) and
//! `rolled-back.json` (a rollback not yet reported). This module must never install
//! anything without a signature check (the key list can never be empty: `build.rs`
//! refuses that), never install an older version, and never touch the network or the
//! filesystem outside the install path and that directory.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parc_protocol::Event;
use parc_protocol::body::event_type;
use serde::{Deserialize, Serialize};

use crate::config::AgentConfig;
use crate::state::write_atomic;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/release_keys.rs"));
}
/// The release verifying keys embedded at build time (several during a key rotation).
pub use embedded::{RELEASE_KEYS, RELEASE_KEYS_ARE_TEST_ONLY};

/// Name of the executable inside a release archive, and of the kept previous binary.
pub const BIN_NAME: &str = "parc-agent";
pub const UPDATE_DIR: &str = "update";
/// Exit status of `parc-agent run` when the service manager must start the binary now
/// installed (after an update or a rollback): EX_TEMPFAIL.
pub const EXIT_RESTART: u8 = 75;
const PREVIOUS_FILE: &str = "previous-parc-agent";
const PENDING_FILE: &str = "pending.json";
const ROLLED_BACK_FILE: &str = "rolled-back.json";

/// Why an update was not installed. `reason()` is the stable code sent to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `update.enabled = false`.
    Disabled,
    /// The announced version is not newer than the running one.
    Downgrade,
    /// The archive carries no signature.
    Unsigned,
    /// The archive is signed, but by no embedded key (or its content was altered).
    BadSignature,
    /// The downloaded bytes do not match the manifest's SHA-256.
    ChecksumMismatch,
    /// The extracted binary does not report the announced version.
    VersionMismatch,
    /// The manifest does not offer this version for this device and platform.
    NotOffered,
    /// Manifest or archive could not be fetched.
    Download,
    /// Keeping the previous binary or replacing the current one failed.
    Install,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::Downgrade => "downgrade",
            Refusal::Unsigned => "unsigned",
            Refusal::BadSignature => "bad_signature",
            Refusal::ChecksumMismatch => "checksum_mismatch",
            Refusal::VersionMismatch => "version_mismatch",
            Refusal::NotOffered => "not_offered",
            Refusal::Download => "download_failed",
            Refusal::Install => "install_failed",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("update to {version} refused ({}): {detail}", .reason.reason())]
pub struct UpdateRefused {
    pub version: String,
    pub reason: Refusal,
    pub detail: String,
}

impl UpdateRefused {
    fn new(version: &str, reason: Refusal, detail: impl Into<String>) -> Self {
        Self {
            version: version.to_string(),
            reason,
            detail: detail.into(),
        }
    }

    /// The `update_refused` event reporting this refusal.
    pub fn event(&self, current_version: &str, now: DateTime<Utc>) -> Event {
        let mut data = serde_json::Map::new();
        data.insert("reason".into(), self.reason.reason().into());
        data.insert("version".into(), self.version.clone().into());
        data.insert("current_version".into(), current_version.into());
        Event {
            event_type: event_type::UPDATE_REFUSED.into(),
            occurred_at: now,
            detail: Some(truncate(&self.to_string(), 500)),
            data,
        }
    }
}

/// An installed version on probation: it must report healthy before `deadline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub from_version: String,
    pub to_version: String,
    pub installed_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RolledBack {
    from_version: String,
    to_version: String,
    at: DateTime<Utc>,
    reason: String,
}

/// Downloads, verifies and installs releases.
#[derive(Debug, Clone)]
pub struct Updater {
    pub enabled: bool,
    pub current_version: String,
    /// The executable replaced by an update.
    pub install_path: PathBuf,
    /// `state.dir/update`.
    pub dir: PathBuf,
    pub keys: Vec<[u8; 32]>,
    /// PEM of a private CA for the downloads.
    pub ca_pem: Option<Vec<u8>>,
    pub health_timeout: Duration,
    /// Target triple the release asset must be built for.
    pub target: String,
}

impl Updater {
    /// From the configuration, with the embedded keys and this build's target.
    pub fn from_config(cfg: &AgentConfig, current_version: &str) -> Result<Self, String> {
        let install_path = if cfg.update.install_path.as_os_str().is_empty() {
            std::env::current_exe()
                .map_err(|e| format!("cannot locate the running executable: {e}"))?
        } else {
            cfg.update.install_path.clone()
        };
        let ca_pem = if cfg.update.ca_file.as_os_str().is_empty() {
            None
        } else {
            Some(
                std::fs::read(&cfg.update.ca_file)
                    .map_err(|e| format!("update.ca_file {}: {e}", cfg.update.ca_file.display()))?,
            )
        };
        Ok(Self {
            enabled: cfg.update.enabled,
            current_version: current_version.to_string(),
            install_path,
            dir: cfg.state.dir.join(UPDATE_DIR),
            keys: RELEASE_KEYS.to_vec(),
            ca_pem,
            health_timeout: Duration::from_secs(u64::from(cfg.update.health_timeout_seconds)),
            target: self_update::get_target().to_string(),
        })
    }

    pub fn previous_path(&self) -> PathBuf {
        self.dir.join(PREVIOUS_FILE)
    }

    /// Installs `version` from the manifest at `manifest_url`, keeping the running binary
    /// as the previous one and putting the new version on probation. Blocking (HTTP and
    /// file IO): call it from `spawn_blocking`.
    pub fn apply(
        &self,
        manifest_url: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> Result<Pending, UpdateRefused> {
        let refuse = |reason, detail: String| UpdateRefused::new(version, reason, detail);
        if !self.enabled {
            return Err(refuse(
                Refusal::Disabled,
                "updates are disabled on this device (update.enabled = false)".into(),
            ));
        }
        let current = semver::Version::parse(&self.current_version).map_err(|e| {
            refuse(
                Refusal::Install,
                format!("running version {:?}: {e}", self.current_version),
            )
        })?;
        let wanted = semver::Version::parse(version)
            .map_err(|e| refuse(Refusal::NotOffered, format!("not a version: {e}")))?;
        if wanted <= current {
            return Err(refuse(
                Refusal::Downgrade,
                format!("{wanted} is not newer than the running {current}: downgrades are refused"),
            ));
        }
        if self.keys.is_empty() {
            // build.rs makes this impossible for the embedded list; a caller-built
            // Updater must not turn verification off either.
            return Err(refuse(
                Refusal::BadSignature,
                "no verifying key: refusing to install without a signature check".into(),
            ));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            refuse(
                Refusal::Install,
                format!("creating {}: {e}", self.dir.display()),
            )
        })?;
        // Keep the running binary before anything replaces it.
        let previous = self.previous_path();
        copy_atomic(&self.install_path, &previous).map_err(|e| {
            refuse(
                Refusal::Install,
                format!(
                    "keeping {} as {}: {e}",
                    self.install_path.display(),
                    previous.display()
                ),
            )
        })?;

        let expected = format!("{BIN_NAME} {version}");
        let mut builder = self_update::backends::manifest::Update::configure();
        builder
            .manifest_url(manifest_url)
            .bin_name(BIN_NAME)
            .current_version(self.current_version.clone())
            .release_tag(version)
            .target(self.target.clone())
            .bin_install_path(&self.install_path)
            .verifying_keys(self.keys.clone())
            .timeout(Duration::from_secs(120))
            .unattended()
            .verify_binary(move |path| {
                let out = version_of(path, Duration::from_secs(10))
                    .map_err(self_update::errors::Error::verification_rejected)?;
                if out == expected {
                    Ok(())
                } else {
                    Err(self_update::errors::Error::verification_rejected(format!(
                        "the archive's binary reports {out:?}, expected {expected:?}"
                    )))
                }
            });
        if let Some(pem) = &self.ca_pem {
            builder.add_root_certificate(self_update::Certificate::from_pem(pem.clone()));
        }
        let status = builder
            .build()
            .and_then(|u| u.update_extended())
            .map_err(|e| classify(version, &e))?;
        if !status.is_updated() {
            return Err(refuse(
                Refusal::NotOffered,
                "the manifest offers nothing to install".into(),
            ));
        }
        let pending = Pending {
            from_version: self.current_version.clone(),
            to_version: version.to_string(),
            installed_at: now,
            deadline: now
                + chrono::Duration::from_std(self.health_timeout)
                    .unwrap_or(chrono::Duration::seconds(300)),
        };
        let json = serde_json::to_vec_pretty(&pending).expect("pending serializes");
        write_atomic(&self.dir.join(PENDING_FILE), &json, 0o644).map_err(|e| {
            refuse(
                Refusal::Install,
                format!("recording the probation of {version}: {e}"),
            )
        })?;
        Ok(pending)
    }

    /// The version on probation, if any.
    pub fn pending(&self) -> Option<Pending> {
        read_json(&self.dir.join(PENDING_FILE))
    }

    /// The new version proved healthy: it stays, and this is the `update_applied` event.
    pub fn confirm(&self, now: DateTime<Utc>) -> std::io::Result<Option<Event>> {
        let Some(p) = self.pending() else {
            return Ok(None);
        };
        remove_if_exists(&self.dir.join(PENDING_FILE))?;
        let mut data = serde_json::Map::new();
        data.insert("from_version".into(), p.from_version.clone().into());
        data.insert("to_version".into(), p.to_version.clone().into());
        Ok(Some(Event {
            event_type: event_type::UPDATE_APPLIED.into(),
            occurred_at: now,
            detail: Some(format!(
                "updated from {} to {}",
                p.from_version, p.to_version
            )),
            data,
        }))
    }

    /// Restores the previous binary over the install path and records the rollback for
    /// the restored version to report. Returns false when nothing was on probation.
    pub fn rollback(&self, reason: &str, now: DateTime<Utc>) -> std::io::Result<bool> {
        let Some(p) = self.pending() else {
            return Ok(false);
        };
        copy_atomic(&self.previous_path(), &self.install_path)?;
        let record = RolledBack {
            from_version: p.to_version.clone(),
            to_version: p.from_version.clone(),
            at: now,
            reason: reason.to_string(),
        };
        let json = serde_json::to_vec_pretty(&record).expect("record serializes");
        write_atomic(&self.dir.join(ROLLED_BACK_FILE), &json, 0o644)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        remove_if_exists(&self.dir.join(PENDING_FILE))?;
        Ok(true)
    }

    /// Run before the agent starts (systemd `ExecStartPre`, with the kept previous
    /// binary, so that it works even when the new one cannot start at all): rolls back a
    /// version whose probation ended without confirmation.
    pub fn guard(&self, now: DateTime<Utc>) -> std::io::Result<bool> {
        match self.pending() {
            Some(p) if now >= p.deadline => self.rollback(
                &format!(
                    "{} did not report healthy within {} s of its installation",
                    p.to_version,
                    (p.deadline - p.installed_at).num_seconds()
                ),
                now,
            ),
            _ => Ok(false),
        }
    }

    /// The `update_rolled_back` event of a rollback not yet reported. Call
    /// [`Updater::clear_rollback_report`] once it is spooled.
    pub fn rollback_report(&self) -> Option<Event> {
        let r: RolledBack = read_json(&self.dir.join(ROLLED_BACK_FILE))?;
        let mut data = serde_json::Map::new();
        data.insert("from_version".into(), r.from_version.clone().into());
        data.insert("to_version".into(), r.to_version.clone().into());
        data.insert("reason".into(), r.reason.clone().into());
        Some(Event {
            event_type: event_type::UPDATE_ROLLED_BACK.into(),
            occurred_at: r.at,
            detail: Some(truncate(
                &format!(
                    "rolled back from {} to {}: {}",
                    r.from_version, r.to_version, r.reason
                ),
                500,
            )),
            data,
        })
    }

    pub fn clear_rollback_report(&self) -> std::io::Result<()> {
        remove_if_exists(&self.dir.join(ROLLED_BACK_FILE))
    }
}

/// Maps self_update's error to a refusal reason. Signature errors are opaque boxes
/// whose texts are zipsign's: "no matching key/signature pair" when signed by no known
/// key (or altered after signing), anything else when no signature block is found.
fn classify(version: &str, e: &self_update::errors::Error) -> UpdateRefused {
    use self_update::errors::Error as E;
    let detail = error_chain(e);
    let reason = match e {
        E::ChecksumMismatch { .. } => Refusal::ChecksumMismatch,
        E::NoSignatures(_) | E::SignatureNonUTF8 => Refusal::Unsigned,
        E::Signature(_) if detail.contains("no matching key") => Refusal::BadSignature,
        E::Signature(_) => Refusal::Unsigned,
        E::VerificationRejected { .. } => Refusal::VersionMismatch,
        E::NoReleaseFound { .. } | E::NotFound { .. } => Refusal::NotOffered,
        E::Transport(_) | E::HttpStatus { .. } | E::InvalidResponse { .. } | E::Json(_) => {
            Refusal::Download
        }
        _ => Refusal::Install,
    };
    UpdateRefused::new(version, reason, detail)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// `BIN --version`, trimmed, killed after `limit`.
fn version_of(path: &Path, limit: Duration) -> Result<String, String> {
    let mut child = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run the new binary: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() >= limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the new binary did not answer --version within {limit:?}"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the new binary: {e}")),
        }
    }
    let mut out = String::new();
    if let Some(so) = child.stdout.take() {
        let _ = so.take(4096).read_to_string(&mut out);
    }
    Ok(out.trim().to_string())
}

/// Copies `from` over `to` through a temporary file in `to`'s directory and a rename,
/// keeping the permission bits: a power cut leaves either file whole, and a running
/// executable at `to` keeps its old inode.
fn copy_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        to.file_name().and_then(|n| n.to_str()).unwrap_or("parc"),
        std::process::id()
    ));
    std::fs::copy(from, &tmp)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, to).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable update state file");
            None
        }
    }
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
