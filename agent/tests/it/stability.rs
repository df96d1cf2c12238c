//! Stability over a temporary root: unexpected shutdowns from a binary wtmp written here
//! with glibc's 384-byte x86_64 `struct utmp` layout, crash reports in `var/crash`,
//! pstore records and the `MCE:` line; first sample since boot, later samples since
//! the previous one; and nothing from wtmp's login records in the output.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parc_agent::collect::Collector;
use parc_protocol::health::Stability;

const RECORD: usize = 384;
const RUN_LVL: i16 = 1;
const BOOT_TIME: i16 = 2;
const USER_PROCESS: i16 = 7;
const DEAD_PROCESS: i16 = 8;

/// One `struct utmp`: ut_type i16 @0, pid i32 @4, line[32] @8, id[4] @40, user[32] @44,
/// host[256] @76, exit @332, session @336, tv_sec i32 @340, tv_usec @344, addr_v6 @348.
fn utmp(kind: i16, user: &str, line: &str, host: &str, tv_sec: i64) -> Vec<u8> {
    let mut r = vec![0u8; RECORD];
    r[0..2].copy_from_slice(&kind.to_le_bytes());
    r[4..8].copy_from_slice(&4242i32.to_le_bytes());
    r[8..8 + line.len()].copy_from_slice(line.as_bytes());
    r[40..44].copy_from_slice(b"ts/2");
    r[44..44 + user.len()].copy_from_slice(user.as_bytes());
    r[76..76 + host.len()].copy_from_slice(host.as_bytes());
    r[340..344].copy_from_slice(&(tv_sec as i32).to_le_bytes());
    r[344..348].copy_from_slice(&123i32.to_le_bytes());
    r[348..352].copy_from_slice(&[10, 0, 0, 5]);
    r
}

fn boot(t: i64) -> Vec<u8> {
    utmp(BOOT_TIME, "reboot", "~", "6.1.0-28-amd64", t)
}

fn runlevel(t: i64) -> Vec<u8> {
    utmp(RUN_LVL, "runlevel", "~", "6.1.0-28-amd64", t)
}

fn shutdown(t: i64) -> Vec<u8> {
    utmp(RUN_LVL, "shutdown", "~~", "6.1.0-28-amd64", t)
}

fn login(t: i64) -> Vec<u8> {
    utmp(USER_PROCESS, "marie.curie", "tty2", "10.0.0.5", t)
}

fn logout(t: i64) -> Vec<u8> {
    utmp(DEAD_PROCESS, "", "tty2", "", t)
}

fn append(path: &Path, records: &[Vec<u8>]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for r in records {
        f.write_all(r).unwrap();
    }
}

fn touch(path: &Path, content: &str, mtime: SystemTime) {
    fs::write(path, content).unwrap();
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn interrupts(root: &Path, mce: &str) {
    fs::write(
        root.join("proc/interrupts"),
        format!(
            "            CPU0       CPU1\n  0:         20          0   IO-APIC   2-edge      timer\n\
             MCE: {mce}   Machine check exceptions\nMCP:         40         40   Machine check polls\n"
        ),
    )
    .unwrap();
}

struct Tree {
    dir: tempfile::TempDir,
    btime: i64,
}

impl Tree {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["proc", "var/log", "var/crash", "sys/fs/pstore"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let btime = now - 3600;
        fs::write(
            root.join("proc/stat"),
            format!("cpu  1 0 1 10 0 0 0 0 0 0\nbtime {btime}\n"),
        )
        .unwrap();
        Self { dir, btime }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn wtmp(&self) -> std::path::PathBuf {
        self.root().join("var/log/wtmp")
    }
}

fn stability(c: &mut Collector) -> Stability {
    let h = c.health();
    h.stability
        .unwrap_or_else(|| panic!("no stability: {:?}", h.unsupported))
}

#[test]
fn the_first_sample_counts_since_boot_and_later_ones_since_the_previous() {
    let t = Tree::new();
    let b = t.btime;
    append(
        &t.wtmp(),
        &[
            boot(b - 86_400),
            runlevel(b - 86_390),
            login(b - 86_000),
            logout(b - 80_000),
            shutdown(b - 50_000),
            // A clean reboot, then one that was not: both before this boot, so not
            // reported by the first sample.
            boot(b - 40_000),
            login(b - 39_000),
            boot(b - 30_000),
            // The current boot, not preceded by a shutdown record.
            boot(b + 3),
            runlevel(b + 10),
            login(b + 60),
        ],
    );
    let crash = t.root().join("var/crash");
    touch(&crash.join("_usr_bin_foo.1000.crash"), "x", at(b + 100));
    touch(&crash.join("_usr_bin_foo.1000.upload"), "", at(b + 100));
    touch(&crash.join("_usr_bin_old.1000.crash"), "x", at(b - 1000));
    touch(&crash.join("kexec_cmd"), "", at(b + 100));
    fs::create_dir(crash.join("202601051200")).unwrap();
    File::open(crash.join("202601051200"))
        .unwrap()
        .set_modified(at(b + 200))
        .unwrap();
    let pstore = t.root().join("sys/fs/pstore");
    // One panic in two parts, one oops, and a console log that is no crash. Records
    // from before boot count on the first sample: they tell how the last session ended.
    touch(
        &pstore.join("dmesg-efi-1"),
        "Panic#1 Part1\n<0>Kernel panic\n",
        at(b - 5),
    );
    touch(
        &pstore.join("dmesg-efi-2"),
        "Panic#1 Part2\n<4>Call Trace\n",
        at(b - 5),
    );
    touch(
        &pstore.join("dmesg-ramoops-0"),
        "Oops#1 Part1\nBUG\n",
        at(b - 9000),
    );
    touch(&pstore.join("console-ramoops-0"), "console\n", at(b - 5));
    interrupts(t.root(), "         2          1");

    let mut c = Collector::new(t.root(), None, "t");
    assert_eq!(
        stability(&mut c),
        Stability {
            unexpected_shutdowns: Some(1),
            crashes: Some(2 + 2),
            machine_checks: Some(3),
        }
    );

    // Since then: a clean reboot, an unclean one, a crash report, a kernel oops and
    // three more machine checks.
    // Written after the first sample (whose time is the cutoff) and before the next.
    let later = SystemTime::now();
    let now = b + 3600;
    append(
        &t.wtmp(),
        &[shutdown(now + 1), boot(now + 30), boot(now + 90)],
    );
    touch(&crash.join("_usr_bin_bar.1000.crash"), "x", later);
    touch(&pstore.join("dmesg-efi-9"), "Oops#2 Part1\n", later);
    interrupts(t.root(), "         4          2");
    assert_eq!(
        stability(&mut c),
        Stability {
            unexpected_shutdowns: Some(1),
            crashes: Some(2),
            machine_checks: Some(3),
        }
    );

    // Nothing new: zero of each, a check made and nothing found.
    assert_eq!(
        stability(&mut c),
        Stability {
            unexpected_shutdowns: Some(0),
            crashes: Some(0),
            machine_checks: Some(0),
        }
    );
}

#[test]
fn a_rotated_wtmp_and_a_record_being_written_are_read_correctly() {
    let t = Tree::new();
    let b = t.btime;
    append(&t.wtmp(), &[boot(b - 9000), shutdown(b - 100), boot(b + 2)]);
    let mut c = Collector::new(t.root(), None, "t");
    assert_eq!(stability(&mut c).unexpected_shutdowns, Some(0));

    // Half a record: being written, left for the next sample.
    let unclean = boot(b + 500);
    append(&t.wtmp(), &[unclean[..100].to_vec()]);
    assert_eq!(stability(&mut c).unexpected_shutdowns, Some(0));
    append(&t.wtmp(), &[unclean[100..].to_vec()]);
    assert_eq!(stability(&mut c).unexpected_shutdowns, Some(1));

    // logrotate: a new, shorter file continues the old one.
    fs::remove_file(t.wtmp()).unwrap();
    append(&t.wtmp(), &[shutdown(b + 900), boot(b + 960)]);
    assert_eq!(stability(&mut c).unexpected_shutdowns, Some(0));
    append(&t.wtmp(), &[boot(b + 2000)]);
    assert_eq!(stability(&mut c).unexpected_shutdowns, Some(1));
}

#[test]
fn nothing_from_wtmp_login_records_or_crash_report_names_is_reported() {
    let t = Tree::new();
    let b = t.btime;
    append(
        &t.wtmp(),
        &[boot(b - 500), login(b - 400), boot(b + 1), login(b + 30)],
    );
    touch(
        &t.root()
            .join("var/crash/_home_marie.curie_bin_jeu.1000.crash"),
        "ProcCmdline: secret",
        at(b + 50),
    );
    let mut c = Collector::new(t.root(), None, "t");
    let h = c.health();
    let json = serde_json::to_string(&h).unwrap();
    for personal in [
        "marie", "curie", "tty2", "10.0.0.5", "jeu", "secret", "ts/2",
    ] {
        assert!(!json.contains(personal), "{personal} in {json}");
    }
    let s = h.stability.unwrap();
    assert_eq!(s.unexpected_shutdowns, Some(1));
    assert_eq!(s.crashes, Some(1));
}

#[test]
fn missing_sources_are_absent_with_reasons_not_zero() {
    let t = Tree::new();
    fs::remove_dir(t.root().join("var/crash")).unwrap();
    fs::remove_dir(t.root().join("sys/fs/pstore")).unwrap();
    let mut c = Collector::new(t.root(), None, "t");
    let h = c.health();
    assert_eq!(h.stability, None);
    let reason = |signal: &str| {
        h.unsupported
            .iter()
            .find(|u| u.signal == signal)
            .map(|u| u.reason.clone())
    };
    assert_eq!(
        reason("stability.unexpected_shutdowns").as_deref(),
        Some("not present")
    );
    assert_eq!(
        reason("stability.crashes").as_deref(),
        Some("var/crash: not present; sys/fs/pstore: not present")
    );
    assert_eq!(
        reason("stability.machine_checks").as_deref(),
        Some("not present")
    );

    // One crash source is enough for a count; the other is noted as missing.
    fs::create_dir_all(t.root().join("sys/fs/pstore")).unwrap();
    interrupts(t.root(), "         0          0");
    let h = Collector::new(t.root(), None, "t").health();
    let s = h.stability.unwrap();
    assert_eq!(s.crashes, Some(0));
    assert_eq!(s.machine_checks, Some(0));
    assert!(
        h.unsupported
            .iter()
            .any(|u| u.signal == "stability.crashes.var_crash" && u.reason == "not present")
    );

    // A wtmp that does not reach back before the current boot cannot tell how the
    // previous session ended; the next sample reads on from there.
    let b = t.btime;
    append(&t.wtmp(), &[login(b - 100)]);
    let mut c = Collector::new(t.root(), None, "t");
    let h = c.health();
    assert_eq!(h.stability.as_ref().unwrap().unexpected_shutdowns, None);
    assert!(
        h.unsupported
            .iter()
            .any(|u| u.signal == "stability.unexpected_shutdowns"
                && u.reason == "no record of the current boot in wtmp")
    );
    fs::remove_file(t.wtmp()).unwrap();
    append(&t.wtmp(), &[boot(b + 1), login(b + 30)]);
    let mut c = Collector::new(t.root(), None, "t");
    let h = c.health();
    assert_eq!(h.stability.as_ref().unwrap().unexpected_shutdowns, None);
    assert!(
        h.unsupported
            .iter()
            .any(|u| u.signal == "stability.unexpected_shutdowns"
                && u.reason == "no record before the current boot in wtmp")
    );
    assert_eq!(stability(&mut c).unexpected_shutdowns, Some(0));
    append(&t.wtmp(), &[boot(b + 500)]);
    assert_eq!(stability(&mut c).unexpected_shutdowns, Some(1));

    // Without a boot time the first sample cannot tell the current boot's records.
    fs::write(t.root().join("proc/stat"), "cpu  1 0 1 10 0 0 0 0 0 0\n").unwrap();
    append(&t.wtmp(), &[boot(1)]);
    let h = Collector::new(t.root(), None, "t").health();
    assert!(
        h.unsupported.iter().any(
            |u| u.signal == "stability.unexpected_shutdowns" && u.reason == "boot time unknown"
        ),
        "{:?}",
        h.unsupported
    );
}
