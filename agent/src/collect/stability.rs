//! Stability since the previous report: unexpected shutdowns (from the `var/log/wtmp`
//! boot and shutdown records), crashes (crash reports dropped in `var/crash` and kernel
//! oops/panic records kept in `sys/fs/pstore`) and machine-check exceptions (the `MCE:`
//! line of `proc/interrupts`).
//!
//! "Since the previous report" is tracked by a [`State`] the [`super::Collector`] keeps:
//! the first sample reports what happened since boot — whether the current boot followed
//! an unexpected shutdown (unknown, with its reason, when wtmp does not reach back
//! before the current boot), crash reports written since boot, every pstore record still
//! present (the kernel keeps them until they are removed, and they tell how an earlier
//! session ended) and the machine checks counted since boot. Later samples report only
//! what is new since the previous one. wtmp is read incrementally from where the
//! previous sample stopped, so a sample costs a few syscalls, not a file scan.
//!
//! Privacy: wtmp also records logins. Only each record's type and time are used, plus,
//! for run-level records (written by init, never by a person), whether the user field
//! is the fixed marker `shutdown`; user, line and host fields of login records are never
//! read, and no value from wtmp leaves this module but counts. Crash reports are counted
//! by name, never opened (their names carry program paths); of a pstore record only the
//! kernel's first-line header ("Panic#1 Part1") is read, never the log it holds. Nothing
//! is written, removed or acknowledged: other tools own these files.

use std::fs::{self, File};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use parc_protocol::health::Stability;

use super::read::{self, Notes};

/// glibc's `struct utmp` on 64-bit Linux (x86_64, aarch64): 384 bytes, 32-bit times.
pub(crate) const UTMP_RECORD_BYTES: usize = 384;
const UT_TYPE_RUN_LVL: i16 = 1;
const UT_TYPE_BOOT_TIME: i16 = 2;
const UT_USER_OFFSET: usize = 44;
const UT_TV_SEC_OFFSET: usize = 340;
/// How much earlier than the kernel's `btime` the current boot's wtmp record may be
/// stamped (btime is rounded to the second and moves with clock adjustments).
const BOOT_RECORD_SLACK_SECONDS: i64 = 300;

/// What the previous sample saw, so that the next one reports only what is new.
#[derive(Debug, Clone)]
pub(crate) struct State {
    /// When the previous sample was taken: crash reports and pstore records modified
    /// after it are new.
    since: SystemTime,
    /// Where reading wtmp stopped; `None` until wtmp could be read once.
    wtmp: Option<WtmpCursor>,
    /// The machine-check counter at the previous sample.
    machine_checks: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WtmpCursor {
    inode: u64,
    offset: u64,
    /// A boot record has been seen (the first boot of a file has no known predecessor).
    booted: bool,
    /// A shutdown record has been seen since the latest boot record.
    clean: bool,
}

/// One stability sample. `boot_time` is the kernel's (`proc/stat` btime) when known;
/// `now` becomes the cutoff of the next sample.
pub(crate) fn read(
    root: &Path,
    boot_time: Option<DateTime<Utc>>,
    state: &mut Option<State>,
    now: SystemTime,
    notes: &mut Notes,
) -> Option<Stability> {
    let previous = state.take();
    let boot = boot_time.map(SystemTime::from);

    let mut cursor = previous.as_ref().and_then(|p| p.wtmp);
    let unexpected_shutdowns = notes.take(
        "stability.unexpected_shutdowns",
        unexpected_shutdowns(&root.join("var/log/wtmp"), &mut cursor, boot_time),
    );

    // Crash reports newer than the previous sample, or than boot on the first one.
    let since = match &previous {
        Some(p) => Ok(p.since),
        None => boot.ok_or_else(|| "boot time unknown".to_string()),
    };
    let var_crash = since.and_then(|t| crash_reports(&root.join("var/crash"), t));
    let pstore_since = previous.as_ref().map(|p| p.since);
    let pstore = kernel_crashes(&root.join("sys/fs/pstore"), pstore_since);
    let crashes = match (var_crash, pstore) {
        (Err(a), Err(b)) => {
            notes.push(
                "stability.crashes",
                format!("var/crash: {a}; sys/fs/pstore: {b}"),
            );
            None
        }
        (a, b) => {
            // One source is enough to report a count; the other's absence is noted so
            // that the reading is known to be partial.
            if let Err(reason) = &a {
                notes.push("stability.crashes.var_crash", reason.clone());
            }
            if let Err(reason) = &b {
                notes.push("stability.crashes.pstore", reason.clone());
            }
            Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0)))
        }
    };

    let counter = notes.take("stability.machine_checks", machine_checks(root));
    let machine_checks = counter.map(|now_count| {
        match previous.as_ref().and_then(|p| p.machine_checks) {
            // The counter only grows within a boot; a smaller value means a new boot.
            Some(before) if now_count >= before => now_count - before,
            _ => now_count,
        }
    });

    *state = Some(State {
        since: now,
        wtmp: cursor,
        machine_checks: counter,
    });
    if unexpected_shutdowns.is_none() && crashes.is_none() && machine_checks.is_none() {
        return None;
    }
    Some(Stability {
        unexpected_shutdowns,
        crashes,
        machine_checks,
    })
}

/// Boot records not preceded by a shutdown record since the previous boot record, among
/// the records appended since `cursor`. When wtmp is read for the first time, only the
/// current boot counts (a record at most a few minutes older than `boot_time`).
fn unexpected_shutdowns(
    path: &Path,
    cursor: &mut Option<WtmpCursor>,
    boot_time: Option<DateTime<Utc>>,
) -> Result<u32, String> {
    let mut file = File::open(path).map_err(|e| read::reason_for(&e))?;
    let meta = file.metadata().map_err(|e| read::reason_for(&e))?;
    let first = cursor.is_none();
    let current_boot_from = if first {
        let boot = boot_time.ok_or("boot time unknown")?;
        Some(boot.timestamp() - BOOT_RECORD_SLACK_SECONDS)
    } else {
        None
    };
    let mut c = cursor.unwrap_or(WtmpCursor {
        inode: meta.ino(),
        offset: 0,
        booted: false,
        clean: false,
    });
    // Rotated (a new file) or truncated: start over at its beginning; the boot state
    // carries on, the new file continues the old one.
    if c.inode != meta.ino() || meta.len() < c.offset {
        c.inode = meta.ino();
        c.offset = 0;
    }
    file.seek(SeekFrom::Start(c.offset))
        .map_err(|e| read::reason_for(&e))?;
    let mut bytes = Vec::with_capacity(meta.len().saturating_sub(c.offset) as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| read::reason_for(&e))?;

    let mut count = 0u32;
    // On a first read: whether the current boot's record was found, and whether wtmp
    // went back far enough to say how the session before it ended.
    let mut current_boot = None;
    // A trailing partial record is being written: leave it for the next sample.
    let whole = bytes.len() - bytes.len() % UTMP_RECORD_BYTES;
    for record in bytes[..whole].chunks_exact(UTMP_RECORD_BYTES) {
        match record_type(record) {
            UT_TYPE_BOOT_TIME => {
                let unexpected = c.booted && !c.clean;
                let counted = current_boot_from.is_none_or(|from| record_time(record) >= from);
                if counted && current_boot.is_none() {
                    current_boot = Some(c.booted);
                }
                if unexpected && counted {
                    count = count.saturating_add(1);
                }
                c.booted = true;
                c.clean = false;
            }
            UT_TYPE_RUN_LVL if is_shutdown_marker(record) => c.clean = true,
            _ => {}
        }
    }
    c.offset += whole as u64;
    // Later samples continue from here whatever this one could tell.
    *cursor = Some(c);
    if first {
        // A wtmp rotated since boot, or one without boot records (no
        // systemd-update-utmp), cannot say how the previous session ended: unknown is
        // not 0.
        match current_boot {
            None => return Err("no record of the current boot in wtmp".into()),
            Some(false) => return Err("no record before the current boot in wtmp".into()),
            Some(true) => {}
        }
    }
    Ok(count)
}

fn record_type(record: &[u8]) -> i16 {
    i16::from_le_bytes([record[0], record[1]])
}

fn record_time(record: &[u8]) -> i64 {
    let b = &record[UT_TV_SEC_OFFSET..UT_TV_SEC_OFFSET + 4];
    i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Only called on run-level records, which init writes with the fixed user names
/// "runlevel" or "shutdown": never a person's.
fn is_shutdown_marker(record: &[u8]) -> bool {
    let user = &record[UT_USER_OFFSET..UT_USER_OFFSET + 32];
    user.starts_with(b"shutdown") && user.get(8).is_none_or(|&b| b == 0)
}

/// Crash reports (apport's `*.crash`, kdump's dump directories) modified after `since`.
/// Upload markers, kdump's `kexec_cmd` and hidden files are not reports.
fn crash_reports(dir: &Path, since: SystemTime) -> Result<u32, String> {
    let entries = fs::read_dir(dir).map_err(|e| read::reason_for(&e))?;
    let mut count = 0u32;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.')
            || name.ends_with(".upload")
            || name.ends_with(".uploaded")
            || name == "kexec_cmd"
        {
            continue;
        }
        let newer = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > since);
        if newer {
            count = count.saturating_add(1);
        }
    }
    Ok(count)
}

/// Kernel oops and panic records in pstore (`dmesg-*` entries), one per event: a long
/// record is split into parts and only "Part1" counts. With `since`, only records
/// modified after it; without (the first sample), all that are present.
fn kernel_crashes(dir: &Path, since: Option<SystemTime>) -> Result<u32, String> {
    let entries = fs::read_dir(dir).map_err(|e| read::reason_for(&e))?;
    let mut count = 0u32;
    for entry in entries.filter_map(Result::ok) {
        if !entry.file_name().to_string_lossy().starts_with("dmesg-") {
            continue;
        }
        if let Some(since) = since {
            let newer = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > since);
            if !newer {
                continue;
            }
        }
        if is_first_part(&entry.path()) {
            count = count.saturating_add(1);
        }
    }
    Ok(count)
}

/// Reads the header line only ("Oops#1 Part1", "Panic#2 Part3"). A record without a
/// recognisable header counts as one event: better a crash counted than one hidden.
fn is_first_part(path: &Path) -> bool {
    let mut head = [0u8; 64];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let line = String::from_utf8_lossy(&head[..n]);
    let line = line.lines().next().unwrap_or_default();
    match line.split_whitespace().find_map(|w| w.strip_prefix("Part")) {
        Some(part) => part.parse::<u32>().map_or(true, |p| p == 1),
        None => true,
    }
}

/// Machine-check exceptions since boot, summed over CPUs, from the `MCE:` line of
/// `proc/interrupts` (x86 only; other architectures have none).
fn machine_checks(root: &Path) -> Result<u64, String> {
    let text = read::list(&root.join("proc/interrupts"))?;
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("MCE:"))
        .ok_or("no MCE line in proc/interrupts")?;
    Ok(line
        .split_whitespace()
        .map_while(|w| w.parse::<u64>().ok())
        .fold(0u64, u64::saturating_add))
}
