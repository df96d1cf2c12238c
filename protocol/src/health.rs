//! The `health` body: a periodic sample of how the device is doing — batteries,
//! temperatures, fans, disks, memory errors, displays and touch, stability, probes.
//!
//! Every reading is optional: absent means "not read", never 0. Units are in the field
//! names. It must never carry anything about the people using the device.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::inventory::Unsupported;

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub boot_time: Option<DateTime<Utc>>,
    pub uptime_seconds: Option<u64>,
    pub load_1: Option<f64>,
    pub load_5: Option<f64>,
    pub load_15: Option<f64>,
    pub cpu_usage_percent: Option<f64>,
    pub memory_total_bytes: Option<u64>,
    pub memory_used_bytes: Option<u64>,
    pub swap_used_bytes: Option<u64>,
    #[serde(default)]
    pub filesystems: Vec<Filesystem>,
    #[serde(default)]
    pub batteries: Vec<BatteryHealth>,
    pub ac_online: Option<bool>,
    #[serde(default)]
    pub temperatures: Vec<Temperature>,
    #[serde(default)]
    pub fans: Vec<Fan>,
    /// SMART results; filled on inventory cycles only (smartctl is not cheap).
    #[serde(default)]
    pub storage: Vec<StorageHealth>,
    pub memory_errors: Option<MemoryErrors>,
    /// Connected display outputs (DRM connectors with status "connected").
    pub displays_connected: Option<u32>,
    /// Touch input devices present.
    pub touch_devices: Option<u32>,
    pub stability: Option<Stability>,
    #[serde(default)]
    pub probes: Vec<Probe>,
    #[serde(default)]
    pub wifi: Vec<Wifi>,
    #[serde(default)]
    pub unsupported: Vec<Unsupported>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    pub mount: String,
    pub total_bytes: Option<u64>,
    pub available_bytes: Option<u64>,
}

/// One battery's readings. Capacities are in mWh; a battery that reports charge (µAh)
/// without a design voltage keeps mAh in the `charge_*_mah` fields instead.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatteryHealth {
    pub name: String,
    /// "Charging", "Discharging", "Full", "Not charging", "Unknown" (kernel words).
    pub status: Option<String>,
    pub charge_percent: Option<f64>,
    pub cycle_count: Option<u32>,
    pub energy_full_design_mwh: Option<u64>,
    pub energy_full_mwh: Option<u64>,
    pub energy_now_mwh: Option<u64>,
    pub charge_full_design_mah: Option<u64>,
    pub charge_full_mah: Option<u64>,
    pub charge_now_mah: Option<u64>,
    /// Full capacity over design capacity, capped at 100 (a new battery may exceed its
    /// design; the raw capacities above keep the exact figures).
    pub health_percent: Option<f64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    /// Where it comes from: "hwmon2/temp1", "thermal_zone0".
    pub sensor: String,
    pub label: Option<String>,
    pub celsius: f64,
    pub critical_celsius: Option<f64>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fan {
    pub sensor: String,
    pub label: Option<String>,
    pub rpm: Option<u32>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageHealth {
    /// Kernel name: "sda", "nvme0n1".
    pub device: String,
    /// SMART overall assessment.
    pub passed: Option<bool>,
    pub reallocated_sectors: Option<u64>,
    pub pending_sectors: Option<u64>,
    pub nvme_percentage_used_percent: Option<f64>,
    pub media_errors: Option<u64>,
    pub power_on_hours: Option<u64>,
    pub temperature_celsius: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryErrors {
    pub corrected: u64,
    pub uncorrected: u64,
}

/// Counts since the previous report.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stability {
    pub unexpected_shutdowns: Option<u32>,
    pub crashes: Option<u32>,
    pub machine_checks: Option<u64>,
}

/// A configured connectivity probe (e.g. the school's ENT): either a status and a
/// latency, or an error.
#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub target: String,
    pub status_code: Option<u16>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

#[skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Wifi {
    pub interface: String,
    pub signal_dbm: Option<f64>,
    pub quality_percent: Option<f64>,
}
