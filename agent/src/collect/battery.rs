//! Batteries and mains power from `sys/class/power_supply`: identity for the inventory,
//! charge, wear and cycles for health.
//!
//! Only the device's own batteries are read: supplies with `scope` "Device" (a
//! wireless mouse, a stylus, a phone plugged in to charge) belong to peripherals or to
//! people and must never be reported. Capacities go on the wire in mWh; a battery that
//! reports charge without a design voltage keeps mAh, and the two are never mixed.

use std::path::{Path, PathBuf};

use parc_protocol::health::BatteryHealth;
use parc_protocol::inventory::BatteryInfo;
use parc_protocol::normalize_serial;

use super::read::{self, Notes};

struct Supply {
    name: String,
    dir: PathBuf,
    kind: String,
}

fn supplies(root: &Path, notes: &mut Notes) -> Vec<Supply> {
    let entries = match read::entries(&root.join("sys/class/power_supply")) {
        Ok(e) => e,
        Err(reason) => {
            notes.push("power_supply", reason);
            return Vec::new();
        }
    };
    entries
        .into_iter()
        .filter_map(|(name, dir)| {
            let kind = read::text(&dir.join("type")).ok()?;
            let peripheral = read::text(&dir.join("scope")).is_ok_and(|s| s == "Device");
            (!peripheral).then_some(Supply { name, dir, kind })
        })
        .collect()
}

/// Capacities of one battery, converted once so inventory and health agree.
#[derive(Debug, Default, PartialEq)]
struct Capacities {
    full_design_mwh: Option<u64>,
    full_mwh: Option<u64>,
    now_mwh: Option<u64>,
    full_design_mah: Option<u64>,
    full_mah: Option<u64>,
    now_mah: Option<u64>,
}

impl Capacities {
    /// Batteries report either energy (µWh) or charge (µAh). Charge is converted to
    /// energy with the design voltage, the only voltage that does not move with the
    /// charge level; without it, mAh is kept as is rather than guessed.
    fn read(dir: &Path, signal: &str, notes: &mut Notes) -> Self {
        let opt = |file: &str| read::uint(&dir.join(file)).ok();
        let energy = [
            opt("energy_full_design"),
            opt("energy_full"),
            opt("energy_now"),
        ];
        if energy.iter().any(Option::is_some) {
            let [d, f, n] = energy.map(|v| v.map(|uwh| uwh / 1000));
            return Self {
                full_design_mwh: d,
                full_mwh: f,
                now_mwh: n,
                ..Self::default()
            };
        }
        let charge = [
            opt("charge_full_design"),
            opt("charge_full"),
            opt("charge_now"),
        ];
        if charge.iter().all(Option::is_none) {
            notes.push(format!("{signal}.capacity"), "no energy or charge files");
            return Self::default();
        }
        match opt("voltage_min_design").filter(|&uv| uv > 0) {
            Some(uv) => {
                // µAh × µV = 10⁻¹² Wh = 10⁻⁹ mWh; u128 so that no real value overflows.
                let [d, f, n] = charge.map(|v| {
                    v.map(|uah| (u128::from(uah) * u128::from(uv) / 1_000_000_000) as u64)
                });
                Self {
                    full_design_mwh: d,
                    full_mwh: f,
                    now_mwh: n,
                    ..Self::default()
                }
            }
            None => {
                let [d, f, n] = charge.map(|v| v.map(|uah| uah / 1000));
                Self {
                    full_design_mah: d,
                    full_mah: f,
                    now_mah: n,
                    ..Self::default()
                }
            }
        }
    }

    /// Wear as full over design, in whichever unit the battery reports; capped at 100
    /// because a new battery often holds a little more than its design.
    fn health_percent(&self) -> Option<f64> {
        let (full, design) = match (self.full_mwh, self.full_design_mwh) {
            (Some(f), Some(d)) => (f, d),
            _ => (self.full_mah?, self.full_design_mah?),
        };
        (design > 0).then(|| (full as f64 / design as f64 * 100.0).min(100.0))
    }
}

pub(crate) fn inventory(root: &Path, notes: &mut Notes) -> Vec<BatteryInfo> {
    supplies(root, &mut Notes::default())
        .into_iter()
        .filter(|s| s.kind == "Battery")
        .map(|s| {
            let signal = format!("batteries.{}", s.name);
            let mut text = |file: &str, what: &str| {
                notes.take(&format!("{signal}.{what}"), read::text(&s.dir.join(file)))
            };
            let manufacturer = text("manufacturer", "manufacturer");
            let model = text("model_name", "model");
            let technology = text("technology", "technology");
            let serial = notes.take(
                &format!("{signal}.serial"),
                read::text(&s.dir.join("serial_number")).and_then(|raw| {
                    normalize_serial(&raw).ok_or_else(|| format!("placeholder {raw:?}"))
                }),
            );
            let caps = Capacities::read(&s.dir, &signal, notes);
            BatteryInfo {
                name: s.name,
                manufacturer,
                model,
                serial,
                technology,
                energy_full_design_mwh: caps.full_design_mwh,
                charge_full_design_mah: caps.full_design_mah,
            }
        })
        .collect()
}

#[derive(Debug, Default)]
pub(crate) struct Power {
    pub batteries: Vec<BatteryHealth>,
    pub ac_online: Option<bool>,
}

pub(crate) fn health(root: &Path, notes: &mut Notes) -> Power {
    // A missing power_supply class is said by the two notes below.
    let supplies = supplies(root, &mut Notes::default());
    let mut batteries = Vec::new();
    let mut mains = Vec::new();
    for s in &supplies {
        match s.kind.as_str() {
            "Battery" => batteries.push(battery_health(s, notes)),
            "Mains" => mains.push(read::int(&s.dir.join("online")).map(|v| v != 0)),
            _ => {}
        }
    }
    if batteries.is_empty() {
        notes.push("batteries", "not present");
    }
    // Several mains supplies (dock, USB-C ports) may exist: the device is on AC when any
    // of them is online.
    let ac_online = if mains.is_empty() {
        notes.push("ac_online", "not present");
        None
    } else if mains.iter().any(|m| matches!(m, Ok(true))) {
        Some(true)
    } else if let Some(Err(reason)) = mains.iter().find(|m| m.is_err()) {
        notes.push("ac_online", reason.clone());
        None
    } else {
        Some(false)
    };
    Power {
        batteries,
        ac_online,
    }
}

fn battery_health(s: &Supply, notes: &mut Notes) -> BatteryHealth {
    let signal = format!("batteries.{}", s.name);
    let caps = Capacities::read(&s.dir, &signal, &mut Notes::default());
    let status = notes.take(
        &format!("{signal}.status"),
        read::text(&s.dir.join("status")),
    );
    let charge_percent = match read::uint(&s.dir.join("capacity")) {
        Ok(p) => Some(p.min(100) as f64),
        Err(reason) => {
            // Some firmware omits `capacity`; the level is then now over full.
            let computed = match (caps.now_mwh, caps.full_mwh) {
                (Some(n), Some(f)) if f > 0 => Some(n as f64 / f as f64 * 100.0),
                _ => match (caps.now_mah, caps.full_mah) {
                    (Some(n), Some(f)) if f > 0 => Some(n as f64 / f as f64 * 100.0),
                    _ => None,
                },
            };
            if computed.is_none() {
                notes.push(format!("{signal}.charge_percent"), reason);
            }
            computed.map(|p| p.min(100.0))
        }
    };
    let cycle_count = notes.take(
        &format!("{signal}.cycle_count"),
        read::uint(&s.dir.join("cycle_count"))
            .and_then(|c| u32::try_from(c).map_err(|_| format!("implausible cycle count {c}"))),
    );
    let health_percent = caps.health_percent();
    if health_percent.is_none() {
        notes.push(
            format!("{signal}.health_percent"),
            "full or design capacity not reported",
        );
    }
    BatteryHealth {
        name: s.name.clone(),
        status,
        charge_percent,
        cycle_count,
        energy_full_design_mwh: caps.full_design_mwh,
        energy_full_mwh: caps.full_mwh,
        energy_now_mwh: caps.now_mwh,
        charge_full_design_mah: caps.full_design_mah,
        charge_full_mah: caps.full_mah,
        charge_now_mah: caps.now_mah,
        health_percent,
    }
}
