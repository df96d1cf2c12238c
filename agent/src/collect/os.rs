//! Operating-system identity and uptime: distribution from `etc/os-release`, kernel
//! release, hostname, boot time (`proc/stat` btime) and uptime (`proc/uptime`).
//!
//! It reads system-wide files only; it must never read who is logged in (utmp,
//! sessions) or anything under a user's home.

use std::path::Path;

use chrono::{DateTime, Utc};
use parc_protocol::inventory::Os;

use super::read::{self, Notes};

pub(crate) fn read(root: &Path, notes: &mut Notes) -> Os {
    let release = os_release(root);
    let (name, version) = match &release {
        Ok(fields) => {
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .filter(|v| !v.is_empty())
            };
            let name = get("NAME").or_else(|| get("PRETTY_NAME"));
            // Rolling distributions (Arch, Debian sid) have no VERSION_ID.
            let version = get("VERSION_ID").or_else(|| get("VERSION"));
            if name.is_none() {
                notes.push("os.name", "not in os-release");
            }
            if version.is_none() {
                notes.push("os.version", "not in os-release");
            }
            (name, version)
        }
        Err(reason) => {
            notes.push("os.name", reason.clone());
            notes.push("os.version", reason.clone());
            (None, None)
        }
    };
    let kernel = notes.take(
        "os.kernel",
        read::text(&root.join("proc/sys/kernel/osrelease")),
    );
    let hostname = notes.take("os.hostname", hostname(root));
    let boot_time = notes.take("os.boot_time", boot_time(root));
    Os {
        name,
        version,
        kernel,
        hostname,
        boot_time,
    }
}

/// `etc/os-release`, falling back to `usr/lib/os-release` as the os-release(5) spec
/// says.
fn os_release(root: &Path) -> Result<Vec<(String, String)>, String> {
    let text = read::text(&root.join("etc/os-release"))
        .or_else(|_| read::text(&root.join("usr/lib/os-release")))?;
    Ok(parse_os_release(&text))
}

/// KEY=value lines; values may be quoted with shell quoting and backslash escapes.
fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), unquote(v.trim())))
        .collect()
}

fn unquote(v: &str) -> String {
    let quoted = v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')));
    if !quoted {
        return v.to_string();
    }
    let inner = &v[1..v.len() - 1];
    if v.starts_with('\'') {
        return inner.to_string();
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The kernel's view first: `etc/hostname` may be stale when the name was changed at
/// run time.
fn hostname(root: &Path) -> Result<String, String> {
    read::text(&root.join("proc/sys/kernel/hostname"))
        .or_else(|_| read::text(&root.join("etc/hostname")))
        .map(|h| h.lines().next().unwrap_or_default().trim().to_string())
        .and_then(|h| {
            if h.is_empty() || h == "(none)" {
                Err("not set".to_string())
            } else {
                Ok(h)
            }
        })
}

pub(crate) fn boot_time(root: &Path) -> Result<DateTime<Utc>, String> {
    let stat = read::text(&root.join("proc/stat"))?;
    let secs = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .ok_or("no btime line in proc/stat")?
        .trim()
        .parse::<i64>()
        .map_err(|_| "unparsable btime".to_string())?;
    DateTime::from_timestamp(secs, 0).ok_or_else(|| format!("btime {secs} out of range"))
}

pub(crate) fn uptime_seconds(root: &Path) -> Result<u64, String> {
    let text = read::text(&root.join("proc/uptime"))?;
    let first = text.split_whitespace().next().unwrap_or_default();
    let secs: f64 = first
        .parse()
        .map_err(|_| format!("unparsable uptime {first:?}"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("implausible uptime {first:?}"));
    }
    Ok(secs as u64)
}
