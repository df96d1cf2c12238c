//! The `inventory` body: what a device *is* — hardware and OS identity, components and
//! their serials — sent at start and whenever its content changes.
//!
//! Device facts only: it must never carry user or login names, files, browsing or
//! per-user software. A reading the agent could not make is absent (`None`) and listed
//! in `unsupported` with the reason, never 0.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// A signal the agent could not read on this device, and why
/// ("not present", "permission denied", "smartctl not installed"…).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unsupported {
    pub signal: String,
    pub reason: String,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub identity: Identity,
    pub os: Os,
    pub agent_version: String,
    pub cpu: Option<Cpu>,
    pub memory_total_bytes: Option<u64>,
    pub swap_total_bytes: Option<u64>,
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub batteries: Vec<BatteryInfo>,
    #[serde(default)]
    pub displays: Vec<Display>,
    #[serde(default)]
    pub input_devices: Vec<InputDevice>,
    #[serde(default)]
    pub usb_devices: Vec<UsbDevice>,
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterface>,
    #[serde(default)]
    pub unsupported: Vec<Unsupported>,
}

/// SMBIOS/DMI identity. `system_serial` is normalised with
/// [`crate::normalize_serial`]: placeholders such as "To be filled by O.E.M." are absent.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub system_serial: Option<String>,
    pub system_manufacturer: Option<String>,
    pub product_name: Option<String>,
    pub product_version: Option<String>,
    pub product_family: Option<String>,
    pub product_sku: Option<String>,
    /// SMBIOS chassis type in words: "laptop", "notebook", "convertible", "all-in-one",
    /// "desktop", "tablet"… (an open set: new values may appear within v1).
    pub chassis_type: Option<String>,
    pub board_serial: Option<String>,
    pub bios_vendor: Option<String>,
    pub bios_version: Option<String>,
    pub bios_date: Option<String>,
    pub system_uuid: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Os {
    pub name: Option<String>,
    pub version: Option<String>,
    pub kernel: Option<String>,
    pub hostname: Option<String>,
    pub boot_time: Option<DateTime<Utc>>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub model: Option<String>,
    pub physical_cores: Option<u32>,
    pub logical_cpus: Option<u32>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Kernel name: "sda", "nvme0n1", "mmcblk0".
    pub name: String,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub capacity_bytes: Option<u64>,
    /// "ssd" or "hdd" (from the rotational flag).
    pub media: Option<String>,
    pub removable: Option<bool>,
}

/// What identifies a battery; its changing readings are in the health body.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatteryInfo {
    /// power_supply name: "BAT0".
    pub name: String,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub technology: Option<String>,
    pub energy_full_design_mwh: Option<u64>,
    /// Only when the battery reports charge without a design voltage to convert it.
    pub charge_full_design_mah: Option<u64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Display {
    /// DRM connector: "card0-HDMI-A-1".
    pub connector: String,
    pub connected: bool,
    pub edid: Option<Edid>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Edid {
    /// Three-letter PNP id: "SAM", "GSM".
    pub manufacturer_id: String,
    pub product_code: u16,
    pub serial_number: Option<u32>,
    pub monitor_name: Option<String>,
    pub monitor_serial: Option<String>,
    pub width_cm: Option<u16>,
    pub height_cm: Option<u16>,
    pub manufacture_year: Option<u16>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InputDevice {
    pub name: String,
    /// A direct-input device or one with multitouch axes: a touch panel.
    pub touchscreen: bool,
    /// Four hex digits.
    pub vendor_id: Option<String>,
    pub product_id: Option<String>,
    /// "usb", "i2c", "bluetooth"…
    pub bus: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsbDevice {
    /// Four hex digits.
    pub vendor_id: String,
    pub product_id: String,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub serial: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub name: String,
    pub mac: Option<String>,
    /// "wired", "wireless", "virtual".
    pub link: Option<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
}
