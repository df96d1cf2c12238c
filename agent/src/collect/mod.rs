//! The collectors: what the agent knows about the device it runs on, as the wire's
//! [`Inventory`] (what the device is) and [`Health`] (how it is doing).
//!
//! Every reading is made under a configurable root (`collect.root`, "/" in production)
//! so that tests run the same code over fixture trees of `sys`, `proc` and `etc`. One
//! module per signal; each turns a reading it could not make into `None` plus an
//! `unsupported` entry with the reason ("not present", "permission denied"…), never
//! into 0. The calls are synchronous and may block on sysfs or smartctl: the runtime
//! calls them in `spawn_blocking`.
//!
//! Privacy: the collectors read device facts only. They must never read user or login
//! names, sessions (of wtmp, `stability` uses only the type and time of boot and
//! shutdown records), process lists, anything under /home, files, browsing or
//! per-user software, nor the contents of input events, crash reports or network
//! traffic. Mount points
//! and input devices that would carry a person's name (removable media mounted under
//! /media/USER, Bluetooth peripherals named by their owners) are left out.
//!
//! Linux is the only platform implemented; elsewhere the collector returns empty
//! readings marked "platform not supported", so that a Windows implementation can be
//! added behind its own `cfg` without touching callers.

use std::path::{Path, PathBuf};

use parc_protocol::health::StorageHealth;
use parc_protocol::{Health, Inventory};

pub mod edid;
mod probes;
mod read;
pub mod report;
pub mod smart;

#[cfg(target_os = "linux")]
mod battery;
#[cfg(target_os = "linux")]
mod cpu_mem;
#[cfg(target_os = "linux")]
mod disks;
#[cfg(target_os = "linux")]
mod display;
#[cfg(target_os = "linux")]
mod identity;
#[cfg(target_os = "linux")]
mod input;
#[cfg(target_os = "linux")]
mod memory_errors;
#[cfg(target_os = "linux")]
mod network;
#[cfg(target_os = "linux")]
mod os;
#[cfg(target_os = "linux")]
mod stability;
#[cfg(target_os = "linux")]
mod thermal;
#[cfg(target_os = "linux")]
mod usb;

pub use edid::{EdidError, parse_edid};
pub use probes::probe_all;
pub use read::reason_for;
pub use smart::{SmartError, parse_smartctl_json};

use read::Notes;

/// The temperatures the protocol accepts (its validator refuses a whole health message
/// outside them). Buggy sensors report -273 °C or 255 °C; those readings are dropped
/// with a reason rather than letting one sensor lose the whole sample.
pub(crate) const PLAUSIBLE_CELSIUS: std::ops::RangeInclusive<f64> = -40.0..=150.0;

/// Collects inventory and health under one root. It keeps the previous CPU sample
/// between [`Collector::health`] calls, so one collector should live as long as the
/// agent.
#[derive(Debug)]
pub struct Collector {
    root: PathBuf,
    smartctl: Option<PathBuf>,
    agent_version: String,
    #[cfg(target_os = "linux")]
    previous_cpu: Option<CpuSample>,
    #[cfg(target_os = "linux")]
    previous_stability: Option<stability::State>,
}

/// Cumulative CPU time counters from `proc/stat`, in clock ticks.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuSample {
    pub busy: u64,
    pub total: u64,
}

impl Collector {
    /// `root` is where `sys`, `proc` and `etc` are read ("/" in production);
    /// `smartctl` the executable to run for SMART, `None` to disable it.
    pub fn new(root: impl Into<PathBuf>, smartctl: Option<PathBuf>, agent_version: &str) -> Self {
        Self {
            root: root.into(),
            smartctl,
            agent_version: agent_version.to_string(),
            #[cfg(target_os = "linux")]
            previous_cpu: None,
            #[cfg(target_os = "linux")]
            previous_stability: None,
        }
    }

    /// From the `[collect]` configuration section, where an empty `smartctl` disables
    /// SMART.
    pub fn from_config(section: &crate::config::CollectSection, agent_version: &str) -> Self {
        let smartctl = Some(section.smartctl.trim())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        Self::new(section.root.clone(), smartctl, agent_version)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the device is. Reads a few hundred small files; no SMART here, see
    /// [`Collector::health_with_storage`].
    pub fn inventory(&self) -> Inventory {
        let mut notes = Notes::default();
        let mut inv = Inventory {
            agent_version: self.agent_version.clone(),
            ..Inventory::default()
        };
        self.fill_inventory(&mut inv, &mut notes);
        inv.unsupported = notes.0;
        inv
    }

    /// A health sample without SMART or probes. It must stay cheap (every few minutes on
    /// every device): small files only, no EDID, USB, SMART or network. The CPU usage is
    /// measured between this call and the previous one, so the first call has none;
    /// `stability` counts what happened since the previous call, or since boot on the
    /// first. Connectivity probes are async: see [`probe_all`].
    pub fn health(&mut self) -> Health {
        let mut notes = Notes::default();
        let mut health = Health::default();
        self.fill_health(&mut health, &mut notes);
        health.unsupported = notes.0;
        health
    }

    /// A health sample with SMART results, for inventory cycles: smartctl wakes disks
    /// and takes a second or more per disk, too much for every health sample.
    pub fn health_with_storage(&mut self) -> Health {
        let mut health = self.health();
        let mut notes = Notes::default();
        health.storage = self.storage_health(&mut notes);
        health.unsupported.extend(notes.0);
        health
    }
}

#[cfg(target_os = "linux")]
impl Collector {
    fn fill_inventory(&self, inv: &mut Inventory, notes: &mut Notes) {
        let root = self.root.as_path();
        inv.identity = identity::read(root, notes);
        inv.os = os::read(root, notes);
        inv.cpu = cpu_mem::cpu(root, notes);
        let mem = cpu_mem::memory(root, notes);
        inv.memory_total_bytes = mem.total;
        inv.swap_total_bytes = mem.swap_total;
        inv.disks = disks::disks(root, notes);
        inv.batteries = battery::inventory(root, notes);
        inv.displays = display::displays(root, notes);
        inv.input_devices = input::devices(root, notes);
        inv.usb_devices = usb::devices(root, notes);
        inv.network_interfaces = network::interfaces(root, notes);
    }

    fn fill_health(&mut self, h: &mut Health, notes: &mut Notes) {
        let root = self.root.clone();
        let root = root.as_path();
        h.boot_time = notes.take("boot_time", os::boot_time(root));
        h.uptime_seconds = notes.take("uptime_seconds", os::uptime_seconds(root));
        if let Some([l1, l5, l15]) = notes.take("load", cpu_mem::load(root)) {
            (h.load_1, h.load_5, h.load_15) = (Some(l1), Some(l5), Some(l15));
        }
        let sample = notes.take("cpu_usage_percent", cpu_mem::cpu_sample(root));
        h.cpu_usage_percent = match (self.previous_cpu, sample) {
            (Some(prev), Some(now)) => notes.take("cpu_usage_percent", cpu_mem::usage(prev, now)),
            (None, Some(_)) => {
                notes.push("cpu_usage_percent", "first sample: needs a previous one");
                None
            }
            (_, None) => None,
        };
        if sample.is_some() {
            self.previous_cpu = sample;
        }
        let mem = cpu_mem::memory(root, notes);
        h.memory_total_bytes = mem.total;
        h.memory_used_bytes = mem.used;
        h.swap_used_bytes = mem.swap_used;
        h.filesystems = disks::filesystems(root, notes);
        let power = battery::health(root, notes);
        h.batteries = power.batteries;
        h.ac_online = power.ac_online;
        let sensors = thermal::read(root, notes);
        h.temperatures = sensors.temperatures;
        h.fans = sensors.fans;
        h.memory_errors = memory_errors::read(root, notes);
        h.displays_connected = display::connected_count(root, notes);
        h.touch_devices = input::touch_count(root, notes);
        h.wifi = network::wifi(root, notes);
        h.stability = stability::read(
            root,
            h.boot_time,
            &mut self.previous_stability,
            std::time::SystemTime::now(),
            notes,
        );
    }

    fn storage_health(&self, notes: &mut Notes) -> Vec<StorageHealth> {
        let Some(smartctl) = &self.smartctl else {
            notes.push("storage", "smartctl disabled in configuration");
            return Vec::new();
        };
        let disks = disks::disks(&self.root, &mut Notes::default());
        smart::run(smartctl, &self.root, &disks, notes)
    }
}

#[cfg(not(target_os = "linux"))]
impl Collector {
    fn fill_inventory(&self, _inv: &mut Inventory, notes: &mut Notes) {
        notes.push("inventory", "platform not supported");
    }

    fn fill_health(&mut self, _h: &mut Health, notes: &mut Notes) {
        notes.push("health", "platform not supported");
    }

    fn storage_health(&self, notes: &mut Notes) -> Vec<StorageHealth> {
        let _ = &self.smartctl;
        notes.push("storage", "platform not supported");
        Vec::new()
    }
}
