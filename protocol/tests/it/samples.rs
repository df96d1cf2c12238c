//! Sample messages shared by the tests; the golden files are these, encoded.

use chrono::{DateTime, TimeZone, Utc};
use parc_protocol::body::{Command, Event, Hello, Presence, Status};
use parc_protocol::health::{
    BatteryHealth, Fan, Filesystem, Health, Probe, StorageHealth, Temperature,
};
use parc_protocol::inventory::{
    BatteryInfo, Cpu, Disk, Display, Edid, Identity, InputDevice, Inventory, NetworkInterface, Os,
    Unsupported, UsbDevice,
};
use parc_protocol::{Body, DeviceId, DeviceKey, Epoch, Header, Message};

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 8, 30, 0).unwrap()
}

pub fn device() -> DeviceId {
    DeviceId::parse("d-0123456789abcdef").unwrap()
}

pub fn key() -> DeviceKey {
    DeviceKey::from_bytes([7; 32])
}

pub fn header(seq: u64) -> Header {
    Header {
        device_id: device(),
        epoch: Epoch::parse("9f86d081884c7d659a2feaa0c55ad015").unwrap(),
        seq,
        collected_at: now(),
        sent_at: now() + chrono::Duration::seconds(1),
    }
}

pub fn hello() -> Message {
    Message::new(
        header(1),
        Body::Hello(Hello {
            agent_version: "0.1.0".into(),
            capabilities: vec!["battery".into(), "smart".into(), "edid".into()],
            health_interval_seconds: Some(300),
            inventory_interval_seconds: Some(86400),
            platform: Some("linux-x86_64".into()),
        }),
    )
}

pub fn status() -> Message {
    Message::new(
        header(2),
        Body::Status(Status {
            state: Presence::Online,
        }),
    )
}

pub fn inventory() -> Message {
    Message::new(
        header(3),
        Body::Inventory(Box::new(Inventory {
            identity: Identity {
                system_serial: Some("PF3ABC12".into()),
                system_manufacturer: Some("LENOVO".into()),
                product_name: Some("20XW00A1FR".into()),
                product_version: Some("ThinkPad X13 Gen 2i".into()),
                product_family: Some("ThinkPad X13 Gen 2i".into()),
                product_sku: None,
                chassis_type: Some("notebook".into()),
                board_serial: Some("L1HF12345678".into()),
                bios_vendor: Some("LENOVO".into()),
                bios_version: Some("N32ET86W (1.62 )".into()),
                bios_date: Some("2024-03-14".into()),
                system_uuid: None,
            },
            os: Os {
                name: Some("Debian GNU/Linux".into()),
                version: Some("12 (bookworm)".into()),
                kernel: Some("6.1.0-27-amd64".into()),
                hostname: Some("ecole-jaures-cm2-07".into()),
                boot_time: Some(Utc.with_ymd_and_hms(2026, 11, 22, 7, 55, 12).unwrap()),
            },
            agent_version: "0.1.0".into(),
            cpu: Some(Cpu {
                model: Some("11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz".into()),
                physical_cores: Some(4),
                logical_cpus: Some(8),
            }),
            memory_total_bytes: Some(8_589_934_592),
            swap_total_bytes: Some(2_147_483_648),
            disks: vec![Disk {
                name: "nvme0n1".into(),
                model: Some("SAMSUNG MZVLB256HBHQ-000L7".into()),
                serial: Some("S4ELNX0R123456".into()),
                capacity_bytes: Some(256_060_514_304),
                media: Some("ssd".into()),
                removable: Some(false),
            }],
            batteries: vec![BatteryInfo {
                name: "BAT0".into(),
                manufacturer: Some("SMP".into()),
                model: Some("5B10W13975".into()),
                serial: Some("1234".into()),
                technology: Some("Li-poly".into()),
                energy_full_design_mwh: Some(54_700),
                charge_full_design_mah: None,
            }],
            displays: vec![Display {
                connector: "card0-eDP-1".into(),
                connected: true,
                edid: Some(Edid {
                    manufacturer_id: "AUO".into(),
                    product_code: 0x2d3d,
                    serial_number: None,
                    monitor_name: None,
                    monitor_serial: None,
                    width_cm: Some(29),
                    height_cm: Some(17),
                    manufacture_year: Some(2021),
                }),
            }],
            input_devices: vec![InputDevice {
                name: "ELAN Touchscreen".into(),
                touchscreen: true,
                vendor_id: Some("04f3".into()),
                product_id: Some("2b7c".into()),
                bus: Some("usb".into()),
            }],
            usb_devices: vec![UsbDevice {
                vendor_id: "04f3".into(),
                product_id: "2b7c".into(),
                manufacturer: Some("ELAN".into()),
                product: Some("Touchscreen".into()),
                serial: None,
            }],
            network_interfaces: vec![NetworkInterface {
                name: "wlp0s20f3".into(),
                mac: Some("f4:6b:8c:12:34:56".into()),
                link: Some("wireless".into()),
                addresses: vec!["10.57.12.34/24".into()],
            }],
            unsupported: vec![Unsupported {
                signal: "identity.system_uuid".into(),
                reason: "permission denied".into(),
            }],
        })),
    )
}

pub fn health() -> Message {
    Message::new(
        header(4),
        Body::Health(Box::new(Health {
            boot_time: Some(Utc.with_ymd_and_hms(2026, 11, 22, 7, 55, 12).unwrap()),
            uptime_seconds: Some(2088),
            load_1: Some(0.42),
            load_5: Some(0.35),
            load_15: Some(0.2),
            cpu_usage_percent: Some(7.5),
            memory_total_bytes: Some(8_589_934_592),
            memory_used_bytes: Some(2_147_483_648),
            swap_used_bytes: Some(0),
            filesystems: vec![Filesystem {
                mount: "/".into(),
                total_bytes: Some(250_000_000_000),
                available_bytes: Some(180_000_000_000),
            }],
            batteries: vec![BatteryHealth {
                name: "BAT0".into(),
                status: Some("Discharging".into()),
                charge_percent: Some(81.0),
                cycle_count: Some(412),
                energy_full_design_mwh: Some(54_700),
                energy_full_mwh: Some(28_444),
                energy_now_mwh: Some(23_040),
                charge_full_design_mah: None,
                charge_full_mah: None,
                charge_now_mah: None,
                health_percent: Some(52.0),
            }],
            ac_online: Some(false),
            temperatures: vec![Temperature {
                sensor: "hwmon3/temp1".into(),
                label: Some("Package id 0".into()),
                celsius: 54.0,
                critical_celsius: Some(100.0),
            }],
            fans: vec![Fan {
                sensor: "hwmon5/fan1".into(),
                label: None,
                rpm: Some(2900),
            }],
            storage: vec![StorageHealth {
                device: "nvme0n1".into(),
                passed: Some(true),
                reallocated_sectors: None,
                pending_sectors: None,
                nvme_percentage_used_percent: Some(3.0),
                media_errors: Some(0),
                power_on_hours: Some(1842),
                temperature_celsius: Some(38.0),
            }],
            memory_errors: None,
            displays_connected: Some(1),
            touch_devices: Some(1),
            stability: None,
            probes: vec![Probe {
                target: "ENT".into(),
                status_code: Some(200),
                latency_ms: Some(84.2),
                error: None,
            }],
            wifi: vec![],
            unsupported: vec![],
        })),
    )
}

pub fn event() -> Message {
    let mut data = serde_json::Map::new();
    data.insert("component".into(), "battery".into());
    data.insert("old_serial".into(), "1234".into());
    data.insert("new_serial".into(), "9876".into());
    Message::new(
        header(5),
        Body::Event(Event {
            event_type: "component_replaced".into(),
            occurred_at: now(),
            detail: Some("battery BAT0 replaced".into()),
            data,
        }),
    )
}

pub fn command() -> Message {
    Message::new(
        header(6),
        Body::Cmd(Command::SetInterval {
            health_interval_seconds: Some(60),
            inventory_interval_seconds: None,
        }),
    )
}

/// Every sample with its golden file name.
pub fn all() -> Vec<(&'static str, Message)> {
    vec![
        ("hello.json", hello()),
        ("status.json", status()),
        ("inventory.json", inventory()),
        ("health.json", health()),
        ("event.json", event()),
        ("cmd.json", command()),
    ]
}
