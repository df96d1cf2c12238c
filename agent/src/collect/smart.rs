//! Disk health from SMART, through `smartctl --json -a` (smartmontools ≥ 7.0, the
//! JSON schema of 7.3): overall verdict, reallocated and pending sectors for ATA,
//! wear and media errors for NVMe, power-on hours and temperature.
//!
//! The parser is a pure function over smartctl's JSON, tested on fixture files. The
//! runner is called on inventory cycles only, runs smartctl without a shell and with
//! a time limit, passes `-n standby` so that a sleeping hard disk is never spun up, and
//! must never send SMART commands that change a disk (no self-tests, no enabling).

use parc_protocol::health::StorageHealth;
use serde_json::Value;

use super::PLAUSIBLE_CELSIUS;

/// Why smartctl's output gave no health.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmartError {
    #[error("smartctl output is not JSON: {0}")]
    NotJson(String),
    /// Valid JSON without any health figure; carries smartctl's own messages
    /// ("Permission denied", "Device is in STANDBY mode"…).
    #[error("no SMART data: {0}")]
    NoData(String),
}

/// Reads the figures Parc tracks from one `smartctl --json -a` document. Absent
/// figures stay `None`: an SSD has no pending sectors attribute, a SATA disk no
/// percentage used.
pub fn parse_smartctl_json(json: &str) -> Result<StorageHealth, SmartError> {
    let v: Value = serde_json::from_str(json).map_err(|e| SmartError::NotJson(e.to_string()))?;
    let device = v
        .pointer("/device/name")
        .and_then(Value::as_str)
        .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
        .unwrap_or_default();
    let passed = v.pointer("/smart_status/passed").and_then(Value::as_bool);
    let attribute = |id: u64| -> Option<u64> {
        v.pointer("/ata_smart_attributes/table")?
            .as_array()?
            .iter()
            .find(|a| a.get("id").and_then(Value::as_u64) == Some(id))?
            .pointer("/raw/value")?
            .as_u64()
    };
    // ATA attribute 5 is Reallocated_Sector_Ct and 197 Current_Pending_Sector on every
    // vendor; their raw values are plain counts (unlike 9 or 194 whose raw packs
    // several fields).
    let reallocated_sectors = attribute(5);
    let pending_sectors = attribute(197);
    let nvme = v.get("nvme_smart_health_information_log");
    let nvme_u64 = |key: &str| nvme.and_then(|n| n.get(key)).and_then(Value::as_u64);
    // One byte in the NVMe log: up to 255, as wear may overrun the rated endurance.
    let nvme_percentage_used_percent = nvme_u64("percentage_used")
        .filter(|p| *p <= 255)
        .map(|p| p as f64);
    let media_errors = nvme_u64("media_errors");
    let power_on_hours = v
        .pointer("/power_on_time/hours")
        .and_then(Value::as_u64)
        .or_else(|| nvme_u64("power_on_hours"));
    let temperature_celsius = v
        .pointer("/temperature/current")
        .and_then(Value::as_f64)
        // Older smartctl versions only put it in the NVMe log (already in °C there).
        .or_else(|| nvme_u64("temperature").map(|t| t as f64))
        .filter(|c| PLAUSIBLE_CELSIUS.contains(c));

    let health = StorageHealth {
        device,
        passed,
        reallocated_sectors,
        pending_sectors,
        nvme_percentage_used_percent,
        media_errors,
        power_on_hours,
        temperature_celsius,
    };
    let empty = StorageHealth {
        device: health.device.clone(),
        ..StorageHealth::default()
    };
    if health == empty {
        return Err(SmartError::NoData(messages(&v)));
    }
    Ok(health)
}

fn messages(v: &Value) -> String {
    let joined = v
        .pointer("/smartctl/messages")
        .and_then(Value::as_array)
        .map(|msgs| {
            msgs.iter()
                .filter_map(|m| m.get("string").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    if joined.is_empty() {
        "smartctl reported nothing".to_string()
    } else {
        joined
    }
}

#[cfg(target_os = "linux")]
pub(crate) use runner::run;

#[cfg(target_os = "linux")]
mod runner {
    use std::io::{self, Read as _};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use parc_protocol::health::StorageHealth;
    use parc_protocol::inventory::Disk;

    use super::{SmartError, parse_smartctl_json};
    use crate::collect::read::Notes;

    /// A disk that does not answer in this time is reported as such; the next
    /// inventory cycle tries again.
    const TIMEOUT: Duration = Duration::from_secs(60);

    pub(crate) fn run(
        smartctl: &Path,
        root: &Path,
        disks: &[Disk],
        notes: &mut Notes,
    ) -> Vec<StorageHealth> {
        let mut out = Vec::new();
        for disk in disks {
            let signal = format!("storage.{}", disk.name);
            // USB keys and SD cards do not speak SMART, and USB bridges may hang on it.
            if disk.removable == Some(true) {
                notes.push(signal, "removable, not queried");
                continue;
            }
            let dev = root.join("dev").join(&disk.name);
            match smartctl_json(smartctl, &dev) {
                Ok(json) => match parse_smartctl_json(&json) {
                    Ok(mut health) => {
                        health.device = disk.name.clone();
                        out.push(health);
                    }
                    Err(SmartError::NoData(msg)) if msg.contains("STANDBY") => {
                        notes.push(signal, "in standby, not woken");
                    }
                    Err(e) => notes.push(signal, e.to_string()),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    notes.push("storage", "smartctl not installed");
                    return out;
                }
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    notes.push("storage", "smartctl not executable: permission denied");
                    return out;
                }
                Err(e) => notes.push(signal, format!("smartctl: {e}")),
            }
        }
        out
    }

    /// smartctl's stdout, whatever its exit status: the status is a bit mask that is
    /// non-zero for a failing disk too, and the JSON says what went wrong.
    fn smartctl_json(smartctl: &Path, dev: &Path) -> io::Result<String> {
        let mut child = Command::new(smartctl)
            .args(["--json", "-a", "-n", "standby"])
            .arg(dev)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        // Read on another thread: `-a` output can exceed a pipe's buffer, and smartctl
        // would block writing while this thread waits for it to exit.
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let reader = std::thread::spawn(move || {
            let mut buf = String::new();
            stdout.read_to_string(&mut buf).map(|_| buf)
        });
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {} s", TIMEOUT.as_secs()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        reader
            .join()
            .map_err(|_| io::Error::other("reader thread panicked"))?
    }
}
