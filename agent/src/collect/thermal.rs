//! Temperatures and fans from `sys/class/hwmon` and `sys/class/thermal`.
//!
//! Reading a sensor must never wake the device it belongs to: reading the temperature
//! of a runtime-suspended discrete GPU or NVMe disk powers it up and drains the
//! battery, so a hwmon chip whose device is "suspended" is skipped and reported as
//! such.

use std::path::Path;

use parc_protocol::health::{Fan, Temperature};

use super::PLAUSIBLE_CELSIUS;
use super::read::{self, Notes};

/// Millidegrees as the kernel reports them, refused when out of the plausible range.
fn celsius(milli: i64) -> Result<f64, String> {
    let c = milli as f64 / 1000.0;
    if PLAUSIBLE_CELSIUS.contains(&c) {
        Ok(c)
    } else {
        Err(format!("implausible value {c} °C"))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Sensors {
    pub temperatures: Vec<Temperature>,
    pub fans: Vec<Fan>,
}

pub(crate) fn read(root: &Path, notes: &mut Notes) -> Sensors {
    let mut out = Sensors::default();
    hwmon(root, notes, &mut out);
    thermal_zones(root, notes, &mut out);
    if out.temperatures.is_empty() {
        notes.push("temperatures", "no readable sensor");
    }
    out
}

fn hwmon(root: &Path, notes: &mut Notes, out: &mut Sensors) {
    let chips = match read::entries(&root.join("sys/class/hwmon")) {
        Ok(e) => e,
        Err(reason) => {
            notes.push("hwmon", reason);
            return;
        }
    };
    for (chip, dir) in chips {
        if read::text(&dir.join("device/power/runtime_status")).is_ok_and(|s| s == "suspended") {
            notes.push(format!("hwmon.{chip}"), "runtime-suspended, not woken");
            continue;
        }
        let chip_name = read::text(&dir.join("name")).ok();
        let label_of = |prefix: &str| {
            let own = read::text(&dir.join(format!("{prefix}_label"))).ok();
            match (&chip_name, own) {
                (Some(c), Some(l)) => Some(format!("{c} {l}")),
                (c, l) => l.or_else(|| c.clone()),
            }
        };
        let Ok(files) = read::entries(&dir) else {
            continue;
        };
        for (file, path) in &files {
            if let Some(prefix) = file.strip_suffix("_input")
                && prefix.starts_with("temp")
            {
                let sensor = format!("{chip}/{prefix}");
                // A sensor that exists but cannot answer now (EAGAIN, ENODATA) is
                // left out of the list and noted, never reported as 0 °C.
                match read::int(path).and_then(celsius) {
                    Ok(value) => out.temperatures.push(Temperature {
                        sensor,
                        label: label_of(prefix),
                        celsius: value,
                        critical_celsius: read::int(&dir.join(format!("{prefix}_crit")))
                            .and_then(celsius)
                            .ok(),
                    }),
                    Err(reason) => notes.push(format!("temperatures.{sensor}"), reason),
                }
            } else if let Some(prefix) = file.strip_suffix("_input")
                && prefix.starts_with("fan")
            {
                let sensor = format!("{chip}/{prefix}");
                let rpm = notes.take(
                    &format!("fans.{sensor}"),
                    read::uint(path).and_then(|r| {
                        u32::try_from(r).map_err(|_| format!("implausible speed {r}"))
                    }),
                );
                out.fans.push(Fan {
                    sensor,
                    label: label_of(prefix),
                    rpm,
                });
            }
        }
    }
}

fn thermal_zones(root: &Path, notes: &mut Notes, out: &mut Sensors) {
    let zones = match read::entries(&root.join("sys/class/thermal")) {
        Ok(e) => e,
        Err(reason) => {
            notes.push("thermal", reason);
            return;
        }
    };
    for (zone, dir) in zones
        .into_iter()
        .filter(|(n, _)| n.starts_with("thermal_zone"))
    {
        if read::text(&dir.join("mode")).is_ok_and(|m| m == "disabled") {
            notes.push(format!("temperatures.{zone}"), "zone disabled");
            continue;
        }
        match read::int(&dir.join("temp")).and_then(celsius) {
            Ok(value) => out.temperatures.push(Temperature {
                sensor: zone.clone(),
                label: read::text(&dir.join("type")).ok(),
                celsius: value,
                critical_celsius: critical_trip(&dir),
            }),
            Err(reason) => notes.push(format!("temperatures.{zone}"), reason),
        }
    }
}

/// The temperature of the zone's trip point of type "critical", where the kernel
/// shuts the machine down.
fn critical_trip(dir: &Path) -> Option<f64> {
    for i in 0u32.. {
        let kind = read::text(&dir.join(format!("trip_point_{i}_type"))).ok()?;
        if kind == "critical" {
            return read::int(&dir.join(format!("trip_point_{i}_temp")))
                .and_then(celsius)
                .ok();
        }
    }
    None
}
