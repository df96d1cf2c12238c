//! Physical disks (`sys/block`) and the space left on real filesystems
//! (`proc/self/mounts` + statvfs).
//!
//! It reports devices and mount points, never what is stored on them: it must never
//! list directories or open files on a filesystem. Mount points under /media, /run/media,
//! /run/user and /home/* are left out because they carry a person's login name.

use std::path::Path;

use parc_protocol::health::Filesystem;
use parc_protocol::inventory::Disk;
use parc_protocol::normalize_serial;

use super::read::{self, Notes};

/// Kernel block devices that are not hardware: loop files, RAM disks, compressed swap,
/// device-mapper and network block devices.
const VIRTUAL_PREFIXES: &[&str] = &["loop", "ram", "zram", "dm-", "nbd", "md"];

/// Filesystem types that live on a local disk. Everything else (proc, tmpfs, overlay,
/// squashfs snaps, network shares) is either not a disk or not ours to measure.
const REAL_FILESYSTEMS: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat", "ntfs", "ntfs3", "fuseblk", "f2fs",
    "jfs", "reiserfs", "hfsplus", "zfs", "bcachefs",
];

pub(crate) fn disks(root: &Path, notes: &mut Notes) -> Vec<Disk> {
    let entries = match read::entries(&root.join("sys/block")) {
        Ok(e) => e,
        Err(reason) => {
            notes.push("disks", reason);
            return Vec::new();
        }
    };
    entries
        .into_iter()
        .filter(|(name, _)| !VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p)))
        // eMMC boot and replay-protected areas show up as block devices of their own,
        // but they are parts of the `mmcblkN` disk, not disks.
        .filter(|(name, _)| {
            !(name.starts_with("mmcblk") && (name.contains("boot") || name.contains("rpmb")))
        })
        .map(|(name, dir)| disk(name, &dir, notes))
        .collect()
}

fn disk(name: String, dir: &Path, notes: &mut Notes) -> Disk {
    let signal = |what: &str| format!("disks.{name}.{what}");
    // `size` counts 512-byte sectors whatever the device's logical block size. A size
    // of 0 is an empty card reader or optical drive, not a zero-byte disk.
    let capacity_bytes = notes.take(
        &signal("capacity_bytes"),
        read::uint(&dir.join("size")).and_then(|sectors| match sectors {
            0 => Err("no medium".to_string()),
            n => n
                .checked_mul(512)
                .ok_or_else(|| "size overflows".to_string()),
        }),
    );
    let media = notes.take(
        &signal("media"),
        read::int(&dir.join("queue/rotational"))
            .map(|r| if r == 0 { "ssd" } else { "hdd" }.to_string()),
    );
    let removable = notes.take(
        &signal("removable"),
        read::int(&dir.join("removable")).map(|r| r != 0),
    );
    let device = dir.join("device");
    // SCSI/SATA and NVMe name the model `model`; MMC/SD cards call it `name`.
    let model = notes.take(
        &signal("model"),
        read::text(&device.join("model")).or_else(|_| read::text(&device.join("name"))),
    );
    // NVMe and MMC export `serial`; SATA disks behind the SCSI layer only expose it in
    // the Unit Serial Number VPD page (0x80), and USB sticks often nowhere.
    let serial = notes.take(
        &signal("serial"),
        read::text(&device.join("serial"))
            .or_else(|_| vpd_serial(&device.join("vpd_pg80")))
            .and_then(|raw| normalize_serial(&raw).ok_or_else(|| format!("placeholder {raw:?}"))),
    );
    Disk {
        name,
        model,
        serial,
        capacity_bytes,
        media,
        removable,
    }
}

/// SCSI VPD page 0x80: a 4-byte header whose last byte is the length of the ASCII
/// serial that follows.
fn vpd_serial(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| read::reason_for(&e))?;
    if bytes.len() < 4 || bytes[1] != 0x80 {
        return Err("malformed VPD page 0x80".to_string());
    }
    let len = usize::from(bytes[3]).min(bytes.len() - 4);
    let s = String::from_utf8_lossy(&bytes[4..4 + len])
        .trim()
        .to_string();
    if s.is_empty() {
        Err("empty".to_string())
    } else {
        Ok(s)
    }
}

pub(crate) fn filesystems(root: &Path, notes: &mut Notes) -> Vec<Filesystem> {
    let text = match read::text(&root.join("proc/self/mounts")) {
        Ok(t) => t,
        Err(reason) => {
            notes.push("filesystems", reason);
            return Vec::new();
        }
    };
    // statvfs asks the running kernel about a path: under a fixture root the mount
    // points are the host's, so the figures would describe another machine.
    let measure = root == Path::new("/");
    if !measure {
        notes.push("filesystems.space", "not measured under a fixture root");
    }
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_source), Some(mount), Some(fstype)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mount = unescape_mount(mount);
        if !REAL_FILESYSTEMS.contains(&fstype) || names_a_person(&mount) || seen.contains(&mount) {
            continue;
        }
        seen.push(mount.clone());
        let (total_bytes, available_bytes) = if measure {
            match statvfs(&mount) {
                Ok((t, a)) => (Some(t), Some(a)),
                Err(reason) => {
                    notes.push(format!("filesystems.{mount}"), reason);
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        out.push(Filesystem {
            mount,
            total_bytes,
            available_bytes,
        });
    }
    out
}

/// Desktop environments mount removable media as /media/LOGIN/LABEL or
/// /run/media/LOGIN/LABEL, and a per-user home may be a mount of its own.
fn names_a_person(mount: &str) -> bool {
    ["/media/", "/run/media/", "/run/user/", "/home/"]
        .iter()
        .any(|p| mount.starts_with(p))
}

/// The kernel escapes space, tab, newline and backslash in mount paths as `\ooo`.
fn unescape_mount(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && oct.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = oct
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Total and available space as a non-root user would see it (f_bavail, not f_bfree:
/// the blocks reserved for root are not available to people).
fn statvfs(mount: &str) -> Result<(u64, u64), String> {
    let path = std::ffi::CString::new(mount).map_err(|_| "path contains NUL".to_string())?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid NUL-terminated string and `st` points to writable
    // memory of the right size; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(read::reason_for(&std::io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so it initialised the whole struct.
    let st = unsafe { st.assume_init() };
    #[allow(
        clippy::unnecessary_cast,
        reason = "the statvfs fields are 32-bit on some targets"
    )]
    let (frsize, blocks, bavail) = (st.f_frsize as u64, st.f_blocks as u64, st.f_bavail as u64);
    Ok((blocks.saturating_mul(frsize), bavail.saturating_mul(frsize)))
}
