//! One simulated device's hardware and how it ages: what its inventory says and what
//! each health sample reads. Batteries wear with charge cycles (a cart laptop does
//! about half a cycle per class session); faults from the schedule change the readings
//! from their start time on, the way the real failure would show in the agent's report.
//!
//! Pure: the readings are functions of the device's seed, its history and the
//! simulated time. It must never report anything a real agent would not collect (no
//! user names, no files) and never knows about MQTT.

use chrono::{DateTime, Utc};
use parc_protocol::health::{BatteryHealth, Filesystem, StorageHealth, Temperature};
use parc_protocol::inventory::{BatteryInfo, Cpu, Disk, Display, Identity, InputDevice, Os};
use parc_protocol::{Health, Inventory};

use crate::profile::{Profile, unit};

/// What a simulated device is: matched to the server's deliveries by its serial.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub serial: String,
    pub profile: Profile,
    pub hostname: String,
    /// Devices used together share it (a cart's laptops go to class together).
    pub usage_seed: u64,
}

/// A failure the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// A faulty cell: the battery loses a third of its capacity, then more by the hour.
    BatteryWear,
    /// A display's touch controller disappears.
    TouchLost,
    /// The panel is disconnected from the display's computer.
    DisplayLost,
    /// The disk fails its SMART self-assessment, with reallocated sectors rising.
    DiskFailing,
    /// A blocked fan: the CPU runs within a few degrees of its critical temperature.
    Overheating,
}

impl Fault {
    /// The faults a device of `profile` can develop.
    pub fn possible(profile: Profile) -> &'static [Fault] {
        match profile {
            Profile::CartLaptop => &[
                Fault::BatteryWear,
                Fault::BatteryWear,
                Fault::DiskFailing,
                Fault::Overheating,
            ],
            Profile::Display => &[Fault::TouchLost, Fault::DisplayLost, Fault::TouchLost],
            Profile::OfficePc => &[Fault::DiskFailing, Fault::Overheating],
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimDevice {
    pub spec: DeviceSpec,
    seed: u64,
    /// Charge cycles so far.
    cycles: f64,
    /// Battery health when new (design capacity fraction, %) and wear per cycle.
    battery_new: f64,
    wear_per_cycle: f64,
    faults: Vec<(DateTime<Utc>, Fault)>,
    samples: u64,
}

const BATTERY_DESIGN_MWH: u64 = 54_700;

impl SimDevice {
    pub fn new(spec: DeviceSpec, seed: u64) -> Self {
        // Delivered in 2024: a few hundred cycles already, each costing ~0.02 %.
        let cycles = 150.0 + 350.0 * unit(seed, 1, 0);
        Self {
            spec,
            seed,
            cycles,
            battery_new: 97.0 + 3.0 * unit(seed, 2, 0),
            wear_per_cycle: 0.015 + 0.015 * unit(seed, 3, 0),
            faults: Vec::new(),
            samples: 0,
        }
    }

    pub fn add_fault(&mut self, at: DateTime<Utc>, fault: Fault) {
        self.faults.push((at, fault));
    }

    pub fn faults(&self) -> &[(DateTime<Utc>, Fault)] {
        &self.faults
    }

    fn has(&self, fault: Fault, t: DateTime<Utc>) -> bool {
        self.faults.iter().any(|(at, f)| *f == fault && *at <= t)
    }

    pub fn cycles(&self) -> f64 {
        self.cycles
    }

    /// A session of use ended at `t`: the battery did part of a cycle.
    pub fn session_ended(&mut self, t: DateTime<Utc>, hours: f64) {
        if self.spec.profile == Profile::CartLaptop {
            let _ = t;
            self.cycles += (hours / 3.0).clamp(0.1, 1.0);
        }
    }

    pub fn battery_health_percent(&self, t: DateTime<Utc>) -> f64 {
        let mut h = self.battery_new - self.cycles * self.wear_per_cycle;
        // A faulty cell: the wear since the fault began is much faster.
        if let Some(start) = self
            .faults
            .iter()
            .filter(|(_, f)| *f == Fault::BatteryWear)
            .map(|(at, _)| *at)
            .min()
            && start <= t
        {
            let hours = (t - start).as_seconds_f64() / 3600.0;
            h -= 30.0 + hours.min(100.0) * 0.5;
        }
        (h.clamp(5.0, 100.0) * 10.0).round() / 10.0
    }

    pub fn inventory(&self, agent_version: &str) -> Inventory {
        let (manufacturer, product, chassis) = self.spec.profile.hardware();
        let laptop = self.spec.profile == Profile::CartLaptop;
        let display = self.spec.profile == Profile::Display;
        Inventory {
            identity: Identity {
                system_serial: Some(self.spec.serial.clone()),
                system_manufacturer: Some(manufacturer.into()),
                product_name: Some(product.into()),
                chassis_type: Some(chassis.into()),
                ..Default::default()
            },
            os: Os {
                name: Some("Debian GNU/Linux".into()),
                version: Some("12 (bookworm)".into()),
                kernel: Some("6.1.0-27-amd64".into()),
                hostname: Some(self.spec.hostname.clone()),
                ..Default::default()
            },
            agent_version: agent_version.into(),
            cpu: Some(Cpu {
                model: Some(
                    if laptop {
                        "11th Gen Intel(R) Core(TM) i5-1135G7"
                    } else {
                        "Intel(R) Core(TM) i5-10500"
                    }
                    .into(),
                ),
                physical_cores: Some(4),
                logical_cpus: Some(8),
            }),
            memory_total_bytes: Some(8 << 30),
            disks: vec![Disk {
                name: "nvme0n1".into(),
                model: Some("SAMSUNG MZVL2256HCHQ".into()),
                serial: Some(format!(
                    "S6{}",
                    &self.spec.serial.chars().rev().collect::<String>()
                )),
                capacity_bytes: Some(256_060_514_304),
                media: Some("ssd".into()),
                removable: Some(false),
            }],
            batteries: if laptop {
                vec![BatteryInfo {
                    name: "BAT0".into(),
                    manufacturer: Some("SMP".into()),
                    model: Some("5B10W13975".into()),
                    technology: Some("Li-poly".into()),
                    energy_full_design_mwh: Some(BATTERY_DESIGN_MWH),
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            displays: vec![Display {
                connector: if display {
                    "card0-HDMI-A-1"
                } else {
                    "card0-eDP-1"
                }
                .into(),
                connected: true,
                edid: None,
            }],
            input_devices: if display {
                vec![InputDevice {
                    name: "ILITEK ILITEK-TP".into(),
                    touchscreen: true,
                    vendor_id: Some("222a".into()),
                    product_id: Some("0001".into()),
                    bus: Some("usb".into()),
                }]
            } else {
                vec![]
            },
            ..Default::default()
        }
    }

    /// One health sample at `t`, `uptime` seconds after the device was switched on.
    pub fn health(&mut self, t: DateTime<Utc>, uptime_seconds: u64) -> Health {
        self.samples += 1;
        let n = self.samples;
        let r = |k: u64| unit(self.seed, 100 + k, n);
        let laptop = self.spec.profile == Profile::CartLaptop;
        let hot = self.has(Fault::Overheating, t);
        let temp = if hot {
            96.0 + 2.5 * r(1)
        } else {
            38.0 + 22.0 * r(1)
        };
        let disk_failing = self.has(Fault::DiskFailing, t);
        let hours_failing = self
            .faults
            .iter()
            .filter(|(at, f)| *f == Fault::DiskFailing && *at <= t)
            .map(|(at, _)| ((t - *at).num_minutes() / 30) as u64)
            .max()
            .unwrap_or(0);
        let health = self.battery_health_percent(t);
        Health {
            uptime_seconds: Some(uptime_seconds),
            cpu_usage_percent: Some((100.0 * r(2) * 0.4).round()),
            memory_total_bytes: Some(8 << 30),
            memory_used_bytes: Some(((2.0 + 3.0 * r(3)) * (1u64 << 30) as f64) as u64),
            filesystems: vec![Filesystem {
                mount: "/".into(),
                total_bytes: Some(250_000_000_000),
                available_bytes: Some(180_000_000_000 - (self.cycles as u64) * 10_000_000),
            }],
            batteries: if laptop {
                let full = (BATTERY_DESIGN_MWH as f64 * health / 100.0) as u64;
                let charge = (100.0 - 60.0 * r(4)).round();
                vec![BatteryHealth {
                    name: "BAT0".into(),
                    status: Some("Discharging".into()),
                    charge_percent: Some(charge),
                    cycle_count: Some(self.cycles as u32),
                    energy_full_design_mwh: Some(BATTERY_DESIGN_MWH),
                    energy_full_mwh: Some(full),
                    energy_now_mwh: Some((full as f64 * charge / 100.0) as u64),
                    health_percent: Some(health),
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            ac_online: Some(!laptop),
            temperatures: vec![Temperature {
                sensor: "thermal_zone0".into(),
                label: Some("x86_pkg_temp".into()),
                celsius: (temp * 10.0).round() / 10.0,
                critical_celsius: Some(100.0),
            }],
            storage: vec![StorageHealth {
                device: "nvme0n1".into(),
                passed: Some(!disk_failing),
                reallocated_sectors: Some(if disk_failing {
                    8 + 4 * hours_failing
                } else {
                    0
                }),
                media_errors: Some(if disk_failing { 2 + hours_failing } else { 0 }),
                nvme_percentage_used_percent: Some((self.cycles / 50.0).round()),
                ..Default::default()
            }],
            displays_connected: Some(u32::from(!self.has(Fault::DisplayLost, t))),
            touch_devices: Some(
                if self.spec.profile == Profile::Display && !self.has(Fault::TouchLost, t) {
                    1
                } else {
                    0
                },
            ),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn device(profile: Profile) -> SimDevice {
        SimDevice::new(
            DeviceSpec {
                serial: "PARCDEMO0001".into(),
                profile,
                hostname: "cm2-01".into(),
                usage_seed: 7,
            },
            11,
        )
    }

    #[test]
    fn batteries_wear_with_cycles_and_fast_once_faulty() {
        let t0: DateTime<Utc> = "2026-11-16T08:00:00Z".parse().unwrap();
        let mut d = device(Profile::CartLaptop);
        let h0 = d.battery_health_percent(t0);
        assert!(h0 > 80.0, "{h0}");
        for _ in 0..100 {
            d.session_ended(t0, 1.5);
        }
        let h1 = d.battery_health_percent(t0);
        assert!(h1 < h0 && h1 > 60.0, "normal wear is slow: {h0} → {h1}");
        d.add_fault(t0, Fault::BatteryWear);
        assert!(d.battery_health_percent(t0 + TimeDelta::hours(10)) < 60.0);
        let s = d.health(t0 + TimeDelta::hours(10), 600);
        assert!(s.batteries[0].health_percent.unwrap() < 60.0);
        assert_eq!(s.batteries[0].cycle_count, Some(d.cycles() as u32));
    }

    #[test]
    fn a_display_loses_its_touch_controller_from_the_fault_on() {
        let t0: DateTime<Utc> = "2026-11-16T08:00:00Z".parse().unwrap();
        let mut d = device(Profile::Display);
        assert_eq!(d.health(t0, 60).touch_devices, Some(1));
        d.add_fault(t0 + TimeDelta::hours(1), Fault::TouchLost);
        assert_eq!(d.health(t0, 60).touch_devices, Some(1));
        assert_eq!(
            d.health(t0 + TimeDelta::hours(2), 60).touch_devices,
            Some(0)
        );
        assert!(d.inventory("0.1.0").input_devices[0].touchscreen);
    }

    #[test]
    fn a_failing_disk_fails_smart_and_its_reallocated_sectors_rise() {
        let t0: DateTime<Utc> = "2026-11-16T08:00:00Z".parse().unwrap();
        let mut d = device(Profile::OfficePc);
        d.add_fault(t0, Fault::DiskFailing);
        let a = d.health(t0, 60).storage[0].clone();
        let b = d.health(t0 + TimeDelta::hours(3), 60).storage[0].clone();
        assert_eq!(a.passed, Some(false));
        assert!(b.reallocated_sectors > a.reallocated_sectors);
    }
}
