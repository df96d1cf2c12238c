//! Small-file reading under the collection root, shared by every collector: a reading
//! is either a value or the reason it could not be made, so that each collector can
//! report an absent value with its reason instead of a 0.
//!
//! It only reads the exact paths it is given; it must never walk a tree on its own,
//! follow paths outside the root it was handed, or write anything.

// Only the Linux collectors read files; elsewhere only `reason_for` and `Notes` serve.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use parc_protocol::inventory::Unsupported;

/// Why a file could not be read, in the words that go on the wire.
pub fn reason_for(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::NotFound => "not present".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        // sysfs answers ENODATA/EIO/EAGAIN for a sensor or battery that exists but has
        // nothing to say right now; keep the kernel's words so it can be told apart
        // from a missing file.
        _ => format!("read error: {err}"),
    }
}

/// A file's text, trimmed; an empty file is an absent reading. Invalid UTF-8 is
/// replaced rather than refused: DMI strings are sometimes Latin-1.
pub(crate) fn text(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| reason_for(&e))?;
    let s = String::from_utf8_lossy(&bytes).trim().to_string();
    if s.is_empty() {
        Err("empty".to_string())
    } else {
        Ok(s)
    }
}

/// A file's whole text, where an empty file is a reading too (a list with no entries).
pub(crate) fn list(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| reason_for(&e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A file holding one integer (sysfs style: decimal, maybe signed, trailing newline).
pub(crate) fn int(path: &Path) -> Result<i64, String> {
    let s = text(path)?;
    s.parse::<i64>()
        .map_err(|_| format!("unparsable value {s:?}"))
}

/// Like [`int`] for quantities that cannot be negative.
pub(crate) fn uint(path: &Path) -> Result<u64, String> {
    let s = text(path)?;
    s.parse::<u64>()
        .map_err(|_| format!("unparsable value {s:?}"))
}

/// Names and paths of a directory's entries, sorted so that reports are stable.
pub(crate) fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let rd = fs::read_dir(dir).map_err(|e| reason_for(&e))?;
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    Ok(out)
}

/// Orders "hwmon2" before "hwmon10" so that sensor lists read like `ls -v`.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| {
        let cut = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (head, tail) = s.split_at(cut);
        (head.to_string(), tail.parse::<u64>().ok())
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

/// The `unsupported` list a collector fills as it goes.
#[derive(Debug, Default)]
pub(crate) struct Notes(pub Vec<Unsupported>);

impl Notes {
    pub fn push(&mut self, signal: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Unsupported {
            signal: signal.into(),
            reason: reason.into(),
        });
    }

    /// The value, or `None` with the reason noted under `signal`.
    pub fn take<T>(&mut self, signal: &str, reading: Result<T, String>) -> Option<T> {
        match reading {
            Ok(v) => Some(v),
            Err(reason) => {
                self.push(signal, reason);
                None
            }
        }
    }
}
