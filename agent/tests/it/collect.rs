//! Collectors over fixture trees (`tests/fixtures/`): what each reads, what it refuses
//! to report, and that a missing reading is absent with a reason, never 0.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{TimeZone as _, Utc};
use parc_agent::collect::{Collector, SmartError, parse_edid, parse_smartctl_json, reason_for};
use parc_protocol::inventory::Unsupported;
use parc_protocol::{Body, DeviceId, Epoch, Header, Kind, Limits, Message};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn collector(name: &str) -> Collector {
    Collector::new(fixture(name), None, "0.1.0-test")
}

fn reason<'a>(unsupported: &'a [Unsupported], signal: &str) -> Option<&'a str> {
    unsupported
        .iter()
        .find(|u| u.signal == signal)
        .map(|u| u.reason.as_str())
}

fn smartctl_fixture(name: &str) -> String {
    fs::read_to_string(fixture("smartctl").join(name)).unwrap()
}

/// Runs the protocol's own validating decoder over a body, as the server will.
fn decodes(body: Body, kind: Kind) {
    let now = Utc::now();
    let id = DeviceId::parse("pc-042").unwrap();
    let msg = Message::new(
        Header {
            device_id: id.clone(),
            epoch: Epoch::from_random([7; 16]),
            seq: 1,
            collected_at: now,
            sent_at: now,
        },
        body,
    );
    let json = msg.to_json();
    if let Err(e) = Message::decode(json.as_bytes(), Some((&id, kind)), now, &Limits::default()) {
        panic!("{e}\n{json}");
    }
}

// ---------------------------------------------------------------- identity and OS

#[test]
fn laptop_identity_is_read_and_the_serial_normalised() {
    let inv = collector("laptop").inventory();
    let id = &inv.identity;
    assert_eq!(id.system_serial.as_deref(), Some("PF2ABCDE"));
    assert_eq!(id.system_manufacturer.as_deref(), Some("LENOVO"));
    assert_eq!(id.product_name.as_deref(), Some("20XW0055FR"));
    assert_eq!(
        id.product_version.as_deref(),
        Some("ThinkPad X1 Carbon Gen 9")
    );
    assert_eq!(id.chassis_type.as_deref(), Some("notebook"));
    assert_eq!(id.board_serial.as_deref(), Some("L1HF1AB0123"));
    assert_eq!(id.bios_version.as_deref(), Some("N32ET75W (1.51 )"));
    assert_eq!(id.bios_date.as_deref(), Some("02/15/2022"));
    assert_eq!(
        id.system_uuid.as_deref(),
        Some("4c4c4544-0042-3510-8052-b4c04f4e3232")
    );
    assert_eq!(inv.agent_version, "0.1.0-test");
}

#[test]
fn an_all_in_one_chassis_is_named_in_words() {
    let inv = collector("display").inventory();
    assert_eq!(inv.identity.chassis_type.as_deref(), Some("all-in-one"));
    assert_eq!(inv.identity.system_serial.as_deref(), Some("SP75A1234567"));
}

#[test]
fn placeholder_serials_and_uuid_are_absent_with_a_reason() {
    let inv = collector("placeholder").inventory();
    let id = &inv.identity;
    assert_eq!(id.system_serial, None);
    assert_eq!(id.board_serial, None);
    assert_eq!(id.system_uuid, None);
    assert_eq!(id.system_manufacturer, None);
    assert_eq!(id.chassis_type.as_deref(), Some("desktop"));
    assert_eq!(id.bios_version.as_deref(), Some("P1.10"));
    let u = &inv.unsupported;
    assert!(
        reason(u, "identity.system_serial").is_some_and(|r| r.contains("placeholder")),
        "{u:?}"
    );
    assert!(reason(u, "identity.board_serial").is_some_and(|r| r.contains("placeholder")));
    assert!(reason(u, "identity.system_uuid").is_some_and(|r| r.contains("placeholder")));
    assert!(reason(u, "identity.system_manufacturer").is_some_and(|r| r.contains("placeholder")));
    // product_family is simply not there in this fixture.
    assert_eq!(reason(u, "identity.product_family"), Some("not present"));
}

#[test]
fn an_unreadable_serial_is_permission_denied_not_a_crash() {
    // The kernel makes product_serial root-only.
    assert_eq!(
        reason_for(&std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        "permission denied"
    );
    assert_eq!(
        reason_for(&std::io::Error::from(std::io::ErrorKind::NotFound)),
        "not present"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // Traversable by the unprivileged user the root case switches to.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dmi = dir.path().join("sys/class/dmi/id");
    fs::create_dir_all(&dmi).unwrap();
    fs::write(dmi.join("product_serial"), "PF2ABCDE\n").unwrap();
    fs::set_permissions(
        dmi.join("product_serial"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let (serial, why) = if unsafe { libc::geteuid() } == 0 {
        // Root reads a mode-000 file anyway: collect as `nobody` in a child process.
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_parc-agent"))
            .args(["collect", "--root"])
            .arg(dir.path())
            .output()
            .expect("setpriv (util-linux) runs the agent unprivileged");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let body = &v["inventory"]["body"];
        let why = body["unsupported"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["signal"] == "identity.system_serial")
            .map(|u| u["reason"].as_str().unwrap().to_string());
        (
            body["identity"]["system_serial"]
                .as_str()
                .map(str::to_string),
            why,
        )
    } else {
        let inv = Collector::new(dir.path(), None, "t").inventory();
        let why = reason(&inv.unsupported, "identity.system_serial").map(str::to_string);
        (inv.identity.system_serial, why)
    };
    assert_eq!(serial, None);
    assert_eq!(why.as_deref(), Some("permission denied"));
}

#[test]
fn os_release_kernel_and_hostname_are_read() {
    let inv = collector("laptop").inventory();
    assert_eq!(inv.os.name.as_deref(), Some("Debian GNU/Linux"));
    assert_eq!(inv.os.version.as_deref(), Some("12"));
    assert_eq!(inv.os.kernel.as_deref(), Some("6.1.0-28-amd64"));
    // The kernel's hostname wins over a stale etc/hostname.
    assert_eq!(inv.os.hostname.as_deref(), Some("clg-jaures-pc042"));
    assert_eq!(
        inv.os.boot_time,
        Some(Utc.timestamp_opt(1_767_600_000, 0).unwrap())
    );
}

#[test]
fn cpu_and_memory_are_counted() {
    let inv = collector("laptop").inventory();
    let cpu = inv.cpu.unwrap();
    assert_eq!(
        cpu.model.as_deref(),
        Some("11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz")
    );
    assert_eq!(cpu.logical_cpus, Some(4));
    assert_eq!(cpu.physical_cores, Some(2));
    assert_eq!(inv.memory_total_bytes, Some(16_106_084 * 1024));
    assert_eq!(inv.swap_total_bytes, Some(2_097_148 * 1024));

    let h = collector("laptop").health();
    assert_eq!(h.memory_used_bytes, Some((16_106_084 - 11_000_000) * 1024));
    assert_eq!(h.swap_used_bytes, Some((2_097_148 - 1_048_574) * 1024));
    assert_eq!(
        (h.load_1, h.load_5, h.load_15),
        (Some(0.52), Some(0.41), Some(0.30))
    );
    assert_eq!(h.uptime_seconds, Some(3600));
}

#[test]
fn cpu_usage_needs_two_samples_and_is_measured_between_them() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("proc")).unwrap();
    let stat = dir.path().join("proc/stat");
    fs::write(
        &stat,
        "cpu  100 0 100 700 100 0 0 0 0 0\nbtime 1767600000\n",
    )
    .unwrap();
    let mut c = Collector::new(dir.path(), None, "t");
    let first = c.health();
    assert_eq!(first.cpu_usage_percent, None);
    assert!(reason(&first.unsupported, "cpu_usage_percent").is_some());
    // +100 busy (user 60, system 40), +300 idle, +100 iowait: 100 of 500 ticks busy.
    fs::write(
        &stat,
        "cpu  160 0 140 1000 200 0 0 0 0 0\nbtime 1767600000\n",
    )
    .unwrap();
    let second = c.health();
    let usage = second.cpu_usage_percent.unwrap();
    assert!((usage - 20.0).abs() < 1e-9, "{usage}");
}

// ---------------------------------------------------------------- power

#[test]
fn battery_health_is_computed_from_energy_files() {
    let h = collector("laptop").health();
    // The Bluetooth mouse's battery (scope Device) is not the laptop's.
    assert_eq!(h.batteries.len(), 1, "{:?}", h.batteries);
    let b = &h.batteries[0];
    assert_eq!(b.name, "BAT0");
    assert_eq!(b.status.as_deref(), Some("Discharging"));
    assert_eq!(b.charge_percent, Some(81.0));
    assert_eq!(b.cycle_count, Some(123));
    assert_eq!(b.energy_full_design_mwh, Some(57_000));
    assert_eq!(b.energy_full_mwh, Some(51_300));
    assert_eq!(b.energy_now_mwh, Some(41_553));
    assert_eq!(b.charge_full_mah, None);
    assert_eq!(b.health_percent, Some(90.0));
    assert_eq!(h.ac_online, Some(false));

    let inv = collector("laptop").inventory();
    assert_eq!(inv.batteries.len(), 1);
    let info = &inv.batteries[0];
    assert_eq!(info.serial.as_deref(), Some("1A2B"));
    assert_eq!(info.manufacturer.as_deref(), Some("SMP"));
    assert_eq!(info.model.as_deref(), Some("5B10W13975"));
    assert_eq!(info.technology.as_deref(), Some("Li-poly"));
    assert_eq!(info.energy_full_design_mwh, Some(57_000));
}

#[test]
fn charge_files_are_converted_to_mwh_with_the_design_voltage() {
    let h = collector("charge-battery").health();
    let b = h.batteries.iter().find(|b| b.name == "BAT0").unwrap();
    // 4.4 Ah × 11.1 V = 48.84 Wh.
    assert_eq!(b.energy_full_design_mwh, Some(48_840));
    assert_eq!(b.energy_full_mwh, Some(44_400));
    assert_eq!(b.energy_now_mwh, Some(22_200));
    assert_eq!(b.charge_full_design_mah, None);
    let health = b.health_percent.unwrap();
    assert!((health - 4_000_000.0 / 4_400_000.0 * 100.0).abs() < 1e-6);
    assert_eq!(h.ac_online, Some(true));
}

#[test]
fn charge_files_without_design_voltage_stay_in_mah() {
    let h = collector("charge-battery").health();
    let b = h.batteries.iter().find(|b| b.name == "BAT1").unwrap();
    assert_eq!(b.charge_full_design_mah, Some(3_000));
    assert_eq!(b.charge_full_mah, Some(2_850));
    assert_eq!(b.charge_now_mah, Some(1_500));
    assert_eq!(b.energy_full_design_mwh, None);
    assert_eq!(b.energy_full_mwh, None);
    assert_eq!(b.health_percent, Some(95.0));
    // No `capacity` file: the level is computed from now over full.
    let level = b.charge_percent.unwrap();
    assert!((level - 1_500.0 / 2_850.0 * 100.0).abs() < 1e-9);

    let inv = collector("charge-battery").inventory();
    let info = inv.batteries.iter().find(|b| b.name == "BAT1").unwrap();
    assert_eq!(info.charge_full_design_mah, Some(3_000));
    assert_eq!(info.energy_full_design_mwh, None);
    // "0000" is a placeholder serial.
    let bat0 = inv.batteries.iter().find(|b| b.name == "BAT0").unwrap();
    assert_eq!(bat0.serial, None);
}

// ---------------------------------------------------------------- sensors

#[test]
fn temperatures_and_fans_are_read_with_labels() {
    let h = collector("laptop").health();
    let t = |sensor: &str| h.temperatures.iter().find(|t| t.sensor == sensor);
    let pkg = t("hwmon3/temp1").unwrap();
    assert_eq!(pkg.celsius, 52.0);
    assert_eq!(pkg.label.as_deref(), Some("coretemp Package id 0"));
    assert_eq!(pkg.critical_celsius, Some(100.0));
    assert_eq!(t("hwmon0/temp1").unwrap().label.as_deref(), Some("acpitz"));
    let zone = t("thermal_zone0").unwrap();
    assert_eq!(zone.celsius, 53.0);
    assert_eq!(zone.label.as_deref(), Some("x86_pkg_temp"));
    assert_eq!(zone.critical_celsius, Some(105.0));
    assert_eq!(h.fans.len(), 1, "{:?}", h.fans);
    assert_eq!(h.fans[0].sensor, "hwmon5/fan1");
    assert_eq!(h.fans[0].rpm, Some(2950));
    assert_eq!(h.fans[0].label.as_deref(), Some("thinkpad"));
}

#[test]
fn a_runtime_suspended_hwmon_device_is_not_read() {
    let h = collector("laptop").health();
    assert!(
        !h.temperatures
            .iter()
            .any(|t| t.sensor.starts_with("hwmon7/")),
        "{:?}",
        h.temperatures
    );
    assert!(!h.fans.iter().any(|f| f.sensor.starts_with("hwmon7/")));
    assert_eq!(
        reason(&h.unsupported, "hwmon.hwmon7"),
        Some("runtime-suspended, not woken")
    );
}

#[test]
fn an_implausible_temperature_is_dropped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hw = dir.path().join("sys/class/hwmon/hwmon0");
    fs::create_dir_all(&hw).unwrap();
    fs::write(hw.join("temp1_input"), "-273150\n").unwrap();
    fs::write(hw.join("temp2_input"), "45000\n").unwrap();
    fs::write(hw.join("temp2_crit"), "65261850\n").unwrap();
    let h = Collector::new(dir.path(), None, "t").health();
    assert_eq!(h.temperatures.len(), 1);
    assert_eq!(h.temperatures[0].celsius, 45.0);
    assert_eq!(h.temperatures[0].critical_celsius, None);
    assert!(reason(&h.unsupported, "temperatures.hwmon0/temp1").is_some());
}

// ---------------------------------------------------------------- displays and input

#[test]
fn a_touch_display_is_detected_and_a_touchpad_is_not_a_touchscreen() {
    let h = collector("display").health();
    assert_eq!(h.touch_devices, Some(2));
    let inv = collector("display").inventory();
    let names: Vec<_> = inv.input_devices.iter().map(|d| d.name.as_str()).collect();
    // Virtual (uinput) devices are named by user programs: left out.
    assert!(!names.iter().any(|n| n.contains("ydotool")), "{names:?}");
    let ilitek = inv
        .input_devices
        .iter()
        .find(|d| d.name == "ILITEK ILITEK-TP")
        .unwrap();
    assert!(ilitek.touchscreen);
    assert_eq!(ilitek.vendor_id.as_deref(), Some("222a"));
    assert_eq!(ilitek.product_id.as_deref(), Some("0001"));
    assert_eq!(ilitek.bus.as_deref(), Some("usb"));
    // An old driver without INPUT_PROP_DIRECT: multitouch axes make it a panel.
    assert!(
        inv.input_devices
            .iter()
            .any(|d| d.name.starts_with("eGalax") && d.touchscreen)
    );
    let keyboard = inv
        .input_devices
        .iter()
        .find(|d| d.name.contains("Keyboard"))
        .unwrap();
    assert!(!keyboard.touchscreen);

    assert_eq!(collector("laptop").health().touch_devices, Some(0));
    let inv = collector("laptop").inventory();
    let pad = inv
        .input_devices
        .iter()
        .find(|d| d.name.contains("Touchpad"))
        .unwrap();
    assert!(!pad.touchscreen);
    assert_eq!(pad.bus.as_deref(), Some("i2c"));
    // A Bluetooth peripheral carries its owner's chosen name: never reported.
    assert!(!inv.input_devices.iter().any(|d| d.name.contains("Marie")));
}

#[test]
fn edid_of_the_connected_outputs_is_parsed() {
    let inv = collector("laptop").inventory();
    let connectors: Vec<_> = inv.displays.iter().map(|d| d.connector.as_str()).collect();
    assert_eq!(connectors, ["card0-HDMI-A-1", "card0-eDP-1"]);
    let panel = &inv.displays[1];
    assert!(panel.connected);
    let edid = panel.edid.as_ref().unwrap();
    assert_eq!(edid.manufacturer_id, "LGD");
    assert_eq!(edid.product_code, 0x0625);
    assert_eq!(edid.serial_number, None);
    assert_eq!(edid.monitor_name, None);
    assert_eq!((edid.width_cm, edid.height_cm), (Some(31), Some(17)));
    assert_eq!(edid.manufacture_year, Some(2021));
    assert!(!inv.displays[0].connected);
    assert_eq!(inv.displays[0].edid, None);

    // The interactive-display PC drives its panel and a second screen.
    let inv = collector("display").inventory();
    let connectors: Vec<_> = inv.displays.iter().map(|d| d.connector.as_str()).collect();
    assert_eq!(
        connectors,
        ["card0-DP-1", "card0-HDMI-A-1", "card0-HDMI-A-2"]
    );
    let second = inv.displays[0].edid.as_ref().unwrap();
    assert_eq!(second.manufacturer_id, "GSM");
    assert_eq!(second.product_code, 0x5b09);
    assert_eq!(second.monitor_name.as_deref(), Some("LG 24MK6"));
    assert_eq!(second.monitor_serial.as_deref(), Some("905NTAB12345"));
    assert!(!inv.displays[2].connected);
    let edid = inv.displays[1].edid.as_ref().unwrap();
    assert_eq!(edid.manufacturer_id, "SPE");
    assert_eq!(edid.product_code, 0x7550);
    assert_eq!(edid.serial_number, Some(0x0102_0304));
    assert_eq!(edid.monitor_name.as_deref(), Some("IFP 75-A"));
    assert_eq!(edid.monitor_serial.as_deref(), Some("SP75A1234567"));
    assert_eq!((edid.width_cm, edid.height_cm), (Some(165), Some(93)));
    assert_eq!(collector("display").health().displays_connected, Some(2));
}

#[test]
fn a_corrupt_edid_is_refused_not_half_read() {
    let good = fs::read(fixture("display/sys/class/drm/card0-HDMI-A-1/edid")).unwrap();
    assert_eq!(good.len(), 128);
    assert!(parse_edid(&good).is_ok());
    let mut bad = good.clone();
    bad[20] ^= 0x01;
    assert!(parse_edid(&bad).is_err());
    assert!(parse_edid(&good[..100]).is_err());
    let mut no_header = good;
    no_header[0] = 0x11;
    assert!(parse_edid(&no_header).is_err());
}

// ---------------------------------------------------------------- disks, network, usb

#[test]
fn physical_disks_are_listed_and_virtual_ones_left_out() {
    let inv = collector("laptop").inventory();
    assert_eq!(inv.disks.len(), 1, "{:?}", inv.disks);
    let d = &inv.disks[0];
    assert_eq!(d.name, "nvme0n1");
    assert_eq!(d.capacity_bytes, Some(1_000_215_216 * 512));
    assert_eq!(d.media.as_deref(), Some("ssd"));
    assert_eq!(d.model.as_deref(), Some("SAMSUNG MZVL2512HCJQ-00BL7"));
    assert_eq!(d.serial.as_deref(), Some("S64KNX0R123456"));
    assert_eq!(d.removable, Some(false));

    let inv = collector("display").inventory();
    let sda = inv.disks.iter().find(|d| d.name == "sda").unwrap();
    // SATA serial from the VPD page 0x80.
    assert_eq!(sda.serial.as_deref(), Some("50026B7784A1B2C3"));
    let names: Vec<_> = inv.disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["mmcblk0", "sda", "sdb"]);
    let emmc = &inv.disks[0];
    assert_eq!(emmc.model.as_deref(), Some("DA4064"));
    assert_eq!(emmc.serial.as_deref(), Some("0X9A3B2C1D"));
    let sdb = inv.disks.iter().find(|d| d.name == "sdb").unwrap();
    assert_eq!(sdb.capacity_bytes, None);
    assert_eq!(
        reason(&inv.unsupported, "disks.sdb.capacity_bytes"),
        Some("no medium")
    );
}

#[test]
fn filesystems_are_listed_without_personal_mount_points() {
    let h = collector("laptop").health();
    let mounts: Vec<_> = h.filesystems.iter().map(|f| f.mount.as_str()).collect();
    assert_eq!(mounts, ["/", "/boot/efi", "/srv/donn es"]);
    // Under a fixture root statvfs would measure the host: not done.
    assert!(h.filesystems.iter().all(|f| f.total_bytes.is_none()));
    assert!(reason(&h.unsupported, "filesystems.space").is_some());
}

#[test]
fn network_interfaces_and_wifi_signal_are_read() {
    let inv = collector("laptop").inventory();
    let names: Vec<_> = inv
        .network_interfaces
        .iter()
        .map(|n| (n.name.as_str(), n.link.as_deref()))
        .collect();
    assert_eq!(
        names,
        [("virbr0", Some("virtual")), ("wlp0s20f3", Some("wireless"))]
    );
    assert_eq!(
        inv.network_interfaces[1].mac.as_deref(),
        Some("3c:a9:f4:12:34:56")
    );
    let h = collector("laptop").health();
    assert_eq!(h.wifi.len(), 1);
    assert_eq!(h.wifi[0].interface, "wlp0s20f3");
    assert_eq!(h.wifi[0].signal_dbm, Some(-54.0));
    assert!((h.wifi[0].quality_percent.unwrap() - 80.0).abs() < 1e-9);
    let wired = collector("display").inventory();
    assert_eq!(wired.network_interfaces[0].link.as_deref(), Some("wired"));
}

#[test]
fn usb_devices_keep_serials_of_built_in_devices_only() {
    let inv = collector("laptop").inventory();
    // The root hub is the kernel's, not hardware.
    assert_eq!(inv.usb_devices.len(), 2, "{:?}", inv.usb_devices);
    let camera = inv
        .usb_devices
        .iter()
        .find(|u| u.vendor_id == "04f2")
        .unwrap();
    assert_eq!(camera.product.as_deref(), Some("Integrated Camera"));
    assert_eq!(camera.serial.as_deref(), Some("0001"));
    let phone = inv
        .usb_devices
        .iter()
        .find(|u| u.vendor_id == "18d1")
        .unwrap();
    assert_eq!(phone.serial, None);
}

// ---------------------------------------------------------------- absent readings

#[test]
fn a_desktop_has_no_battery_and_no_mains_reading_and_ignores_a_wireless_mouse() {
    let mut c = collector("desktop");
    let inv = c.inventory();
    assert_eq!(inv.identity.chassis_type.as_deref(), Some("desktop"));
    assert_eq!(
        inv.identity.system_manufacturer.as_deref(),
        Some("Dell Inc.")
    );
    assert_eq!(inv.identity.product_name.as_deref(), Some("OptiPlex 7010"));
    assert_eq!(inv.identity.system_serial.as_deref(), Some("7XK2B93"));
    assert!(inv.batteries.is_empty(), "{:?}", inv.batteries);
    assert_eq!(inv.os.name.as_deref(), Some("Debian GNU/Linux"));
    assert_eq!(inv.os.version.as_deref(), Some("12"));
    assert_eq!(inv.os.hostname.as_deref(), Some("salle-b12-poste03"));
    assert_eq!(inv.memory_total_bytes, Some(8_052_788 * 1024));
    assert_eq!(inv.disks.len(), 1);
    assert_eq!(inv.disks[0].name, "nvme0n1");

    let h = c.health();
    // The mouse's battery (scope Device) is not the device's.
    assert!(h.batteries.is_empty(), "{:?}", h.batteries);
    assert_eq!(reason(&h.unsupported, "batteries"), Some("not present"));
    // No mains supply in sysfs: unknown, not "on battery".
    assert_eq!(h.ac_online, None);
    assert_eq!(reason(&h.unsupported, "ac_online"), Some("not present"));
    assert_eq!(h.displays_connected, Some(1));
    assert_eq!(h.touch_devices, Some(0));
    assert_eq!(h.memory_total_bytes, Some(8_052_788 * 1024));
    assert_eq!(h.temperatures.len(), 1);
    assert_eq!(h.temperatures[0].celsius, 41.0);
    assert_eq!(
        h.temperatures[0].label.as_deref(),
        Some("coretemp Package id 0")
    );
    // An MCE line of zeros is a check made: 0 machine checks since boot.
    let stability = h.stability.expect("machine checks are readable");
    assert_eq!(stability.machine_checks, Some(0));
    assert_eq!(stability.unexpected_shutdowns, None);
    assert_eq!(
        reason(&h.unsupported, "stability.unexpected_shutdowns"),
        Some("not present")
    );
    assert_eq!(stability.crashes, None);
    assert!(
        reason(&h.unsupported, "stability.crashes").is_some_and(|r| r.contains("not present")),
        "{:?}",
        h.unsupported
    );
}

#[test]
fn a_dmi_directory_with_most_files_missing_reports_each_one() {
    // As root every file is readable, so "unreadable" DMI is simulated by a directory
    // holding only the world-readable strings (what an unprivileged agent sees of the
    // root-only serial files is covered by the permission test above).
    let inv = collector("unreadable-dmi").inventory();
    let id = &inv.identity;
    assert_eq!(id.system_manufacturer.as_deref(), Some("HP"));
    assert_eq!(id.product_name.as_deref(), Some("HP ProBook 450 G8"));
    assert_eq!(id.chassis_type.as_deref(), Some("notebook"));
    assert_eq!(id.system_serial, None);
    assert_eq!(id.system_uuid, None);
    assert_eq!(id.board_serial, None);
    assert_eq!(id.bios_version, None);
    let u = &inv.unsupported;
    assert_eq!(reason(u, "identity.system_serial"), Some("not present"));
    assert_eq!(reason(u, "identity.system_uuid"), Some("not present"));
    assert_eq!(reason(u, "identity.bios_vendor"), Some("not present"));
    assert_eq!(reason(u, "identity.bios_version"), Some("not present"));
    assert_eq!(reason(u, "identity.bios_date"), Some("not present"));
    // An empty sysfs file is a reading the firmware did not fill, not a serial "".
    assert_eq!(reason(u, "identity.board_serial"), Some("empty"));
    // The directory exists: each field has its own reason, not one for all.
    assert_eq!(reason(u, "identity"), None);
}

#[test]
fn missing_readings_are_none_never_zero() {
    let mut c = collector("placeholder");
    let h = c.health();
    assert_eq!(h.uptime_seconds, None);
    assert_eq!(h.boot_time, None);
    assert_eq!(h.load_1, None);
    assert_eq!(h.cpu_usage_percent, None);
    assert_eq!(h.memory_total_bytes, None);
    assert_eq!(h.memory_used_bytes, None);
    assert_eq!(h.ac_online, None);
    assert_eq!(h.memory_errors, None);
    assert_eq!(h.displays_connected, None);
    assert_eq!(h.touch_devices, None);
    assert!(h.batteries.is_empty() && h.temperatures.is_empty() && h.fans.is_empty());
    for signal in [
        "uptime_seconds",
        "memory",
        "ac_online",
        "memory_errors",
        "displays",
        "touch_devices",
        "temperatures",
    ] {
        assert_eq!(
            reason(&h.unsupported, signal),
            if signal == "temperatures" {
                Some("no readable sensor")
            } else {
                Some("not present")
            },
            "{signal}: {:?}",
            h.unsupported
        );
    }
    let inv = c.inventory();
    assert_eq!(inv.cpu, None);
    assert_eq!(inv.memory_total_bytes, None);
    assert_eq!(inv.os.kernel, None);
    assert_eq!(reason(&inv.unsupported, "os.kernel"), Some("not present"));

    // Memory errors are absent on a laptop without EDAC, not "0 errors".
    let h = collector("laptop").health();
    assert_eq!(h.memory_errors, None);
    assert_eq!(reason(&h.unsupported, "memory_errors"), Some("not present"));
}

#[test]
fn a_machine_without_dmi_reports_its_identity_absent_once() {
    let dir = tempfile::tempdir().unwrap();
    let inv = Collector::new(dir.path(), None, "t").inventory();
    assert_eq!(inv.identity, Default::default());
    assert_eq!(reason(&inv.unsupported, "identity"), Some("not present"));
    assert!(
        !inv.unsupported
            .iter()
            .any(|u| u.signal.starts_with("identity."))
    );
}

#[test]
fn an_empty_input_list_is_zero_touch_devices_not_a_missing_reading() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("proc/bus/input")).unwrap();
    fs::write(dir.path().join("proc/bus/input/devices"), "").unwrap();
    let h = Collector::new(dir.path(), None, "t").health();
    assert_eq!(h.touch_devices, Some(0));
    assert_eq!(reason(&h.unsupported, "touch_devices"), None);
}

#[test]
fn memory_errors_are_summed_over_controllers() {
    let dir = tempfile::tempdir().unwrap();
    for (mc, ce, ue) in [("mc0", 3, 0), ("mc1", 2, 1)] {
        let d = dir.path().join("sys/devices/system/edac/mc").join(mc);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("ce_count"), format!("{ce}\n")).unwrap();
        fs::write(d.join("ue_count"), format!("{ue}\n")).unwrap();
    }
    let e = Collector::new(dir.path(), None, "t")
        .health()
        .memory_errors
        .unwrap();
    assert_eq!((e.corrected, e.uncorrected), (5, 1));
}

// ---------------------------------------------------------------- SMART

#[test]
fn smartctl_json_of_a_healthy_sata_ssd_is_parsed() {
    let s = parse_smartctl_json(&smartctl_fixture("sata-ok.json")).unwrap();
    assert_eq!(s.device, "sda");
    assert_eq!(s.passed, Some(true));
    assert_eq!(s.reallocated_sectors, Some(0));
    assert_eq!(s.pending_sectors, Some(0));
    assert_eq!(s.power_on_hours, Some(8123));
    assert_eq!(s.temperature_celsius, Some(31.0));
    assert_eq!(s.nvme_percentage_used_percent, None);
    assert_eq!(s.media_errors, None);
}

#[test]
fn smartctl_json_of_a_failing_sata_disk_shows_reallocated_sectors() {
    let s = parse_smartctl_json(&smartctl_fixture("sata-failing.json")).unwrap();
    assert_eq!(s.passed, Some(false));
    assert_eq!(s.reallocated_sectors, Some(3856));
    assert_eq!(s.pending_sectors, Some(216));
    assert_eq!(s.power_on_hours, Some(34567));
    assert_eq!(s.temperature_celsius, Some(38.0));
}

#[test]
fn smartctl_json_of_an_nvme_disk_gives_wear_and_media_errors() {
    let s = parse_smartctl_json(&smartctl_fixture("nvme.json")).unwrap();
    assert_eq!(s.device, "nvme0n1");
    assert_eq!(s.passed, Some(true));
    assert_eq!(s.nvme_percentage_used_percent, Some(7.0));
    assert_eq!(s.media_errors, Some(2));
    assert_eq!(s.power_on_hours, Some(4321));
    assert_eq!(s.temperature_celsius, Some(36.0));
    assert_eq!(s.reallocated_sectors, None);
    assert_eq!(s.pending_sectors, None);
}

#[test]
fn smartctl_json_without_data_is_an_error_carrying_smartctls_message() {
    let e = parse_smartctl_json(&smartctl_fixture("permission-denied.json")).unwrap_err();
    assert!(
        matches!(&e, SmartError::NoData(m) if m.contains("Permission denied")),
        "{e}"
    );
    let e = parse_smartctl_json(&smartctl_fixture("standby.json")).unwrap_err();
    assert!(
        matches!(&e, SmartError::NoData(m) if m.contains("STANDBY")),
        "{e}"
    );
    assert!(matches!(
        parse_smartctl_json("Permission denied\n"),
        Err(SmartError::NotJson(_))
    ));
}

#[test]
fn a_missing_smartctl_is_reported_as_not_installed() {
    let mut c = Collector::new(
        fixture("laptop"),
        Some(PathBuf::from("/nonexistent/parc-test/smartctl")),
        "t",
    );
    let h = c.health_with_storage();
    assert!(h.storage.is_empty());
    assert_eq!(
        reason(&h.unsupported, "storage"),
        Some("smartctl not installed")
    );
    // Plain health samples never run smartctl.
    assert_eq!(reason(&c.health().unsupported, "storage"), None);
    let mut off = collector("laptop");
    assert!(
        reason(&off.health_with_storage().unsupported, "storage")
            .is_some_and(|r| r.contains("disabled"))
    );
}

#[test]
fn smartctl_is_run_per_disk_and_its_output_parsed() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("smartctl");
    let args = dir.path().join("args");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > '{}'\ncat '{}'\nexit 0\n",
            args.display(),
            fixture("smartctl/nvme.json").display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Collector::new(fixture("laptop"), Some(script), "t");
    let h = c.health_with_storage();
    assert_eq!(h.storage.len(), 1, "{:?}", h.unsupported);
    assert_eq!(h.storage[0].device, "nvme0n1");
    assert_eq!(h.storage[0].media_errors, Some(2));
    let args = fs::read_to_string(args).unwrap();
    assert!(args.starts_with("--json -a -n standby "), "{args}");
    assert!(args.trim_end().ends_with("/dev/nvme0n1"), "{args}");
}

// ---------------------------------------------------------------- whole bodies

#[test]
fn fixture_bodies_pass_the_protocol_validator() {
    for name in [
        "laptop",
        "display",
        "placeholder",
        "charge-battery",
        "desktop",
        "unreadable-dmi",
    ] {
        let mut c = collector(name);
        decodes(Body::Inventory(Box::new(c.inventory())), Kind::Inventory);
        c.health();
        decodes(Body::Health(Box::new(c.health())), Kind::Health);
    }
}

#[test]
fn a_run_on_the_real_machine_does_not_panic() {
    let mut c = Collector::new("/", None, env!("CARGO_PKG_VERSION"));
    let inv = c.inventory();
    assert_eq!(inv.agent_version, env!("CARGO_PKG_VERSION"));
    let _ = c.health();
    let h = c.health();
    decodes(Body::Inventory(Box::new(inv)), Kind::Inventory);
    decodes(Body::Health(Box::new(h)), Kind::Health);
}

// ---------------------------------------------------------------- cost of a health sample

#[test]
fn a_health_sample_reads_no_edid_usb_or_smart() {
    // EDID and USB descriptor files are named pipes here: reading one would block, so a
    // health sample that touched them would not return. smartctl is a script leaving a
    // mark if run.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let connector = root.join("sys/class/drm/card0-HDMI-A-1");
    let usb = root.join("sys/bus/usb/devices/1-1");
    fs::create_dir_all(&connector).unwrap();
    fs::create_dir_all(&usb).unwrap();
    fs::create_dir_all(root.join("sys/block/sda/device")).unwrap();
    fs::write(connector.join("status"), "connected\n").unwrap();
    fs::write(root.join("sys/block/sda/size"), "1000\n").unwrap();
    for fifo in [
        connector.join("edid"),
        usb.join("idVendor"),
        usb.join("serial"),
    ] {
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let mark = root.join("smartctl-ran");
    let smartctl = root.join("smartctl");
    fs::write(
        &smartctl,
        format!("#!/bin/sh\ntouch '{}'\n", mark.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&smartctl, fs::Permissions::from_mode(0o755)).unwrap();

    let mut c = Collector::new(root, Some(smartctl), "t");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = c.health();
        let second = c.health();
        let _ = tx.send((first, second));
    });
    let (_, h) = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a health sample opened an EDID or USB file");
    assert_eq!(h.displays_connected, Some(1));
    assert!(h.storage.is_empty());
    assert!(!mark.exists(), "health() ran smartctl");
}

#[test]
fn interface_addresses_are_attributed_to_their_interface() {
    let inv = collector("laptop").inventory();
    let by_name = |n: &str| {
        inv.network_interfaces
            .iter()
            .find(|i| i.name == n)
            .unwrap()
            .addresses
            .clone()
    };
    assert_eq!(
        by_name("wlp0s20f3"),
        ["192.168.10.42", "fe80::a00:27ff:fe4e:8a2e"]
    );
    assert_eq!(by_name("virbr0"), ["192.168.122.1"]);
    assert!(!inv.network_interfaces.iter().any(|i| i.name == "lo"));
}
