//! The agent's state directory (`state.dir`): the enrolment credentials
//! (`enrollment.json`), the spool (`spool.redb`, which also holds the epoch and the
//! sequence counter, see [`crate::spool`]) and the last status snapshot the daemon
//! wrote for `parc-agent status` (`status.json`).
//!
//! Files are replaced atomically (temporary file, fsync, rename, fsync of the
//! directory) so that a power cut leaves either the old or the new version, never half
//! of one. The enrolment file holds the device key and broker password: it is created
//! with mode 0600 and must never be logged, printed or made readable by others.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use parc_protocol::{DeviceId, DeviceKey, Epoch};
use serde::{Deserialize, Serialize};

pub const ENROLLMENT_FILE: &str = "enrollment.json";
pub const SPOOL_FILE: &str = "spool.redb";
pub const STATUS_FILE: &str = "status.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid enrolment file: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "this device is not enrolled (no {0}): run `parc-agent enroll --server URL --token TOKEN`"
    )]
    NotEnrolled(PathBuf),
}

/// What enrolment gave this device.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    pub device_id: DeviceId,
    /// Base64 of the 32-byte HMAC key.
    pub device_key: String,
    pub mqtt_username: String,
    pub mqtt_password: String,
    /// The server that enrolled the device.
    pub server_url: String,
}

// The key and the password never reach a log line.
impl std::fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrollment")
            .field("device_id", &self.device_id)
            .field("mqtt_username", &self.mqtt_username)
            .field("server_url", &self.server_url)
            .finish_non_exhaustive()
    }
}

impl Enrollment {
    pub fn key(&self) -> Result<DeviceKey, String> {
        DeviceKey::from_base64(&self.device_key)
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (mode 0700) if needed.
    pub fn create(&self) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io)?;
        }
        Ok(())
    }

    pub fn spool_path(&self) -> PathBuf {
        self.dir.join(SPOOL_FILE)
    }

    pub fn enrollment_path(&self) -> PathBuf {
        self.dir.join(ENROLLMENT_FILE)
    }

    pub fn status_path(&self) -> PathBuf {
        self.dir.join(STATUS_FILE)
    }

    /// The enrolment, or [`StateError::NotEnrolled`].
    pub fn enrollment(&self) -> Result<Enrollment, StateError> {
        let path = self.enrollment_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotEnrolled(path));
            }
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let e: Enrollment = serde_json::from_str(&text).map_err(|e| StateError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        e.key()
            .map_err(|message| StateError::Invalid { path, message })?;
        Ok(e)
    }

    /// Stores the enrolment atomically, readable by the owner only.
    pub fn save_enrollment(&self, e: &Enrollment) -> Result<(), StateError> {
        self.create()?;
        let json = serde_json::to_vec_pretty(e).map_err(|e| StateError::Invalid {
            path: self.enrollment_path(),
            message: e.to_string(),
        })?;
        write_atomic(&self.enrollment_path(), &json, 0o600)
    }
}

/// A fresh random epoch (16 bytes from the OS, hex).
pub fn random_epoch() -> Epoch {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not something an agent can work around; a
    // time-derived fallback still makes a reused epoch very unlikely.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = (nanos ^ (u128::from(std::process::id()) << 64)).to_be_bytes();
    }
    Epoch::from_random(bytes)
}

/// Writes `data` to `path` so that readers see the old or the new content, never a mix:
/// temporary file in the same directory (created with `mode`), fsync, rename, fsync of
/// the directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        // `mode` is filtered by the umask at creation; set it exactly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
