//! Rule evaluation: reads a signal from one health sample, applies the rule's
//! comparison and hysteresis, and says whether a fault was raised or cleared.
//!
//! Pure and deterministic: the caller passes the sample, the previous state and the time
//! `at`; the only effect is on the `RuleState` it hands in. It must never do IO, read the
//! clock, or persist anything — the server stores the states and acts on transitions.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use parc_protocol::{Health, Inventory};
use serde::{Deserialize, Serialize};

use crate::rules::config::{
    Category, DEFAULT_HOT_CELSIUS, Rule, RuleSet, Severity, Signal, Threshold,
};

/// Span of the `unexpected_shutdowns_7d` window.
pub const SHUTDOWN_WINDOW: Duration = Duration::days(7);

/// One health report and, for the signals that compare against it, the device's latest
/// inventory.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub health: &'a Health,
    pub inventory: Option<&'a Inventory>,
}

/// One `unexpected_shutdowns` count, kept for the 7-day sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowEntry {
    pub at: DateTime<Utc>,
    pub count: u32,
}

/// What the server keeps per (device, rule) between samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    /// Whether the fault is currently raised.
    pub raised: bool,
    /// Consecutive samples arguing to flip `raised` (bad ones while clear, good ones
    /// while raised).
    pub streak: u32,
    /// Time of the first sample of that streak, for minute-based hysteresis.
    pub streak_since: Option<DateTime<Utc>>,
    /// First value seen per disk, for the `*_sectors_rising` signals.
    #[serde(default)]
    pub baselines: BTreeMap<String, u64>,
    /// Shutdown counts within the last 7 days.
    #[serde(default)]
    pub window: Vec<WindowEntry>,
    /// The last reading, for display.
    pub last_value: Option<f64>,
    /// Samples that carried a reading: tells a caller whether the sample it just
    /// evaluated was read (for confirming a declared repair).
    #[serde(default)]
    pub readings: u64,
}

/// Why a fault was raised, for the ticket and the technician.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub signal: Signal,
    pub threshold: Threshold,
    /// Samples in the run that raised it.
    pub samples: u32,
    /// When that run started.
    pub since: DateTime<Utc>,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} for {} sample(s) since {}",
            self.signal,
            self.threshold,
            self.samples,
            self.since.to_rfc3339()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "transition", rename_all = "snake_case")]
pub enum Transition {
    Raised {
        rule_id: String,
        severity: Severity,
        category: Category,
        value: f64,
        evidence: Evidence,
    },
    Cleared {
        rule_id: String,
        value: f64,
    },
}

/// Evaluates one rule on one sample. A signal without a reading in this sample (no
/// battery, no SMART this cycle, no inventory to compare with, or `silent_school_days`,
/// which comes from [`evaluate_silence`]) returns `None` and leaves the hysteresis
/// counters untouched: "not read" is not evidence either way. Disabled rules are the
/// caller's business ([`evaluate_all`] skips them).
pub fn evaluate(
    rule: &Rule,
    state: &mut RuleState,
    sample: &Sample<'_>,
    at: DateTime<Utc>,
) -> Option<Transition> {
    let value = read_signal(rule, state, sample, at);
    step(rule, state, value, at)
}

/// Evaluates a `silent_school_days` rule: the caller counts school days since the device
/// was last seen with the business calendar (holidays are not silence); this only applies
/// the comparison and hysteresis. Other signals return `None`.
pub fn evaluate_silence(
    rule: &Rule,
    state: &mut RuleState,
    school_days_silent: u32,
    at: DateTime<Utc>,
) -> Option<Transition> {
    if rule.signal != Signal::SilentSchoolDays {
        return None;
    }
    step(rule, state, Some(f64::from(school_days_silent)), at)
}

/// Evaluates every enabled rule resolved for this model and lot, keeping one state per
/// rule id in `states` (created on first use). Disabled rules are skipped and their state
/// left as is; `silent_school_days` rules are skipped (see [`evaluate_silence`]).
pub fn evaluate_all(
    rules: &RuleSet,
    model: Option<&str>,
    lot: Option<&str>,
    states: &mut BTreeMap<String, RuleState>,
    sample: &Sample<'_>,
    at: DateTime<Utc>,
) -> Vec<Transition> {
    rules
        .resolve(model, lot)
        .iter()
        .filter(|r| r.enabled && r.signal != Signal::SilentSchoolDays)
        .filter_map(|r| evaluate(r, states.entry(r.id.clone()).or_default(), sample, at))
        .collect()
}

/// The hysteresis machine shared by every signal.
fn step(
    rule: &Rule,
    state: &mut RuleState,
    value: Option<f64>,
    at: DateTime<Utc>,
) -> Option<Transition> {
    // NaN would compare false everywhere and quietly clear faults: treat it as unread.
    let value = value.filter(|v| v.is_finite())?;
    state.last_value = Some(value);
    state.readings = state.readings.saturating_add(1);
    if rule.threshold.holds(value) == state.raised {
        // The sample agrees with the current flag: any run towards flipping it is over.
        state.streak = 0;
        state.streak_since = None;
        return None;
    }
    state.streak = state.streak.saturating_add(1);
    let since = *state.streak_since.get_or_insert(at);
    let hysteresis = if state.raised { rule.clear } else { rule.raise };
    if !hysteresis.reached(state.streak, (at - since).num_minutes()) {
        return None;
    }
    let samples = state.streak;
    state.raised = !state.raised;
    state.streak = 0;
    state.streak_since = None;
    Some(if state.raised {
        Transition::Raised {
            rule_id: rule.id.clone(),
            severity: rule.severity,
            category: rule.category,
            value,
            evidence: Evidence {
                signal: rule.signal,
                threshold: rule.threshold,
                samples,
                since,
            },
        }
    } else {
        Transition::Cleared {
            rule_id: rule.id.clone(),
            value,
        }
    })
}

fn max_f64(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |acc, v| Some(acc.map_or(v, |a: f64| a.max(v))))
}

fn min_f64(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |acc, v| Some(acc.map_or(v, |a: f64| a.min(v))))
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Largest increase over the per-disk baselines. The first reading of a disk becomes its
/// baseline; a lower reading (a replaced disk under the same name) lowers it, so the new
/// disk is judged from its own start.
fn rising(
    baselines: &mut BTreeMap<String, u64>,
    readings: impl Iterator<Item = (String, u64)>,
) -> Option<f64> {
    max_f64(readings.map(|(disk, now)| {
        let base = baselines.entry(disk).or_insert(now);
        *base = (*base).min(now);
        (now - *base) as f64
    }))
}

fn read_signal(
    rule: &Rule,
    state: &mut RuleState,
    sample: &Sample<'_>,
    at: DateTime<Utc>,
) -> Option<f64> {
    let h = sample.health;
    match rule.signal {
        Signal::BatteryHealthPercent => {
            min_f64(h.batteries.iter().filter_map(|b| b.health_percent))
        }
        Signal::BatteryCycleCount => max_f64(
            h.batteries
                .iter()
                .filter_map(|b| b.cycle_count.map(f64::from)),
        ),
        Signal::SmartFailed => {
            let verdicts: Vec<bool> = h.storage.iter().filter_map(|s| s.passed).collect();
            (!verdicts.is_empty()).then(|| flag(verdicts.contains(&false)))
        }
        Signal::ReallocatedSectorsRising => rising(
            &mut state.baselines,
            h.storage
                .iter()
                .filter_map(|s| Some((s.device.clone(), s.reallocated_sectors?))),
        ),
        Signal::PendingSectorsRising => rising(
            &mut state.baselines,
            h.storage
                .iter()
                .filter_map(|s| Some((s.device.clone(), s.pending_sectors?))),
        ),
        Signal::NvmePercentageUsedPercent => max_f64(
            h.storage
                .iter()
                .filter_map(|s| s.nvme_percentage_used_percent),
        ),
        Signal::MediaErrors => max_f64(
            h.storage
                .iter()
                .filter_map(|s| s.media_errors.map(|e| e as f64)),
        ),
        // Sensors without a critical value (or a bogus one ≤ 0, which some firmware
        // reports) say nothing about margin.
        Signal::TemperatureMarginCelsius => min_f64(h.temperatures.iter().filter_map(|t| {
            t.critical_celsius
                .filter(|c| *c > 0.0)
                .map(|c| c - t.celsius)
        })),
        Signal::FanStoppedWhileHot => {
            let hot = rule.hot_celsius.unwrap_or(DEFAULT_HOT_CELSIUS);
            let rpms: Vec<u32> = h.fans.iter().filter_map(|f| f.rpm).collect();
            let max_temp = max_f64(h.temperatures.iter().map(|t| t.celsius));
            // Fanless devices, or no temperature read: nothing to judge.
            match (rpms.is_empty(), max_temp) {
                (false, Some(t)) => Some(flag(t >= hot && rpms.contains(&0))),
                _ => None,
            }
        }
        Signal::MemoryErrorsUncorrected => h.memory_errors.as_ref().map(|m| m.uncorrected as f64),
        Signal::TouchMissing => {
            let had_touch = sample
                .inventory?
                .input_devices
                .iter()
                .any(|d| d.touchscreen);
            // A device delivered without a touchscreen never misses one.
            Some(flag(had_touch && h.touch_devices? == 0))
        }
        Signal::DisplayMissing => {
            let expected = sample
                .inventory?
                .displays
                .iter()
                .filter(|d| d.connected)
                .count();
            let now = usize::try_from(h.displays_connected?).unwrap_or(usize::MAX);
            Some(flag(now < expected))
        }
        Signal::UnexpectedShutdowns7d => {
            // Expire even when this sample has no count, so the window stays bounded.
            state.window.retain(|e| at - e.at < SHUTDOWN_WINDOW);
            let count = h.stability.as_ref()?.unexpected_shutdowns?;
            state.window.push(WindowEntry { at, count });
            Some(state.window.iter().map(|e| f64::from(e.count)).sum())
        }
        Signal::SilentSchoolDays => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::config::Hysteresis;
    use chrono::TimeZone;
    use parc_protocol::health::{
        BatteryHealth, Fan, MemoryErrors, Stability, StorageHealth, Temperature,
    };
    use parc_protocol::inventory::{Display, InputDevice};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()
    }

    fn rule(signal: Signal, threshold: Threshold, raise: Hysteresis, clear: Hysteresis) -> Rule {
        Rule {
            id: "r".into(),
            category: Category::WarrantyHardware,
            severity: Severity::Major,
            signal,
            threshold,
            raise,
            clear,
            hot_celsius: None,
            enabled: true,
            description: None,
        }
    }

    fn samples(k: u32) -> Hysteresis {
        Hysteresis {
            samples: Some(k),
            minutes: None,
        }
    }

    fn minutes(t: u32) -> Hysteresis {
        Hysteresis {
            samples: None,
            minutes: Some(t),
        }
    }

    fn battery(pct: Option<f64>) -> Health {
        Health {
            batteries: pct
                .map(|p| BatteryHealth {
                    name: "BAT0".into(),
                    health_percent: Some(p),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    /// 'R' raised, 'C' cleared, '.' nothing.
    fn run(rule: &Rule, healths: &[(i64, Health)], inv: Option<&Inventory>) -> String {
        let mut state = RuleState::default();
        healths
            .iter()
            .map(|(min, h)| {
                let s = Sample {
                    health: h,
                    inventory: inv,
                };
                match evaluate(rule, &mut state, &s, t0() + Duration::minutes(*min)) {
                    Some(Transition::Raised { .. }) => 'R',
                    Some(Transition::Cleared { .. }) => 'C',
                    None => '.',
                }
            })
            .collect()
    }

    #[test]
    fn battery_hysteresis_table() {
        let r = rule(
            Signal::BatteryHealthPercent,
            Threshold::Below(60.0),
            samples(3),
            samples(3),
        );
        // (readings one per 5 minutes, expected transitions)
        let cases: &[(&[Option<f64>], &str)] = &[
            // Raise after exactly 3 bad samples, not before.
            (&[Some(50.0), Some(50.0)], ".."),
            (&[Some(50.0), Some(50.0), Some(50.0)], "..R"),
            // A good sample in between restarts the count.
            (
                &[Some(50.0), Some(50.0), Some(70.0), Some(50.0), Some(50.0)],
                ".....",
            ),
            // Clear after 3 good samples.
            (
                &[
                    Some(50.0),
                    Some(50.0),
                    Some(50.0),
                    Some(70.0),
                    Some(70.0),
                    Some(70.0),
                ],
                "..R..C",
            ),
            // A bad sample while clearing restarts the clear count.
            (
                &[
                    Some(50.0),
                    Some(50.0),
                    Some(50.0),
                    Some(70.0),
                    Some(70.0),
                    Some(50.0),
                    Some(70.0),
                    Some(70.0),
                ],
                "..R.....",
            ),
            // None neither raises, clears, nor resets: the run continues across it.
            (&[Some(50.0), None, Some(50.0), None, Some(50.0)], "....R"),
            (
                &[
                    Some(50.0),
                    Some(50.0),
                    Some(50.0),
                    Some(70.0),
                    None,
                    None,
                    Some(70.0),
                    Some(70.0),
                ],
                "..R....C",
            ),
            // Exactly at the threshold is not "below".
            (&[Some(60.0), Some(60.0), Some(60.0)], "..."),
            // No battery at all: nothing, ever.
            (&[None, None, None, None], "...."),
        ];
        for (readings, want) in cases {
            let hs: Vec<(i64, Health)> = readings
                .iter()
                .enumerate()
                .map(|(i, p)| (i as i64 * 5, battery(*p)))
                .collect();
            assert_eq!(run(&r, &hs, None), *want, "{readings:?}");
        }
    }

    #[test]
    fn minutes_hysteresis_table() {
        let temp = |c: f64| Health {
            temperatures: vec![Temperature {
                sensor: "hwmon0/temp1".into(),
                celsius: c,
                critical_celsius: Some(100.0),
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = rule(
            Signal::TemperatureMarginCelsius,
            Threshold::Below(5.0),
            minutes(10),
            minutes(10),
        );
        let both = rule(
            Signal::TemperatureMarginCelsius,
            Threshold::Below(5.0),
            Hysteresis {
                samples: Some(3),
                minutes: Some(10),
            },
            samples(1),
        );
        // (rule, (minute, °C) samples, expected)
        type Case<'a> = (&'a Rule, &'a [(i64, f64)], &'a str);
        let cases: &[Case] = &[
            (&r, &[(0, 97.0), (9, 97.0)], ".."),
            (&r, &[(0, 97.0), (10, 97.0)], ".R"),
            // Many fast samples are not enough without the minutes.
            (
                &r,
                &[(0, 97.0), (1, 97.0), (2, 97.0), (3, 97.0), (9, 97.0)],
                ".....",
            ),
            // A cool sample restarts the clock.
            (
                &r,
                &[(0, 97.0), (8, 80.0), (12, 97.0), (21, 97.0), (22, 97.0)],
                "....R",
            ),
            // Clearing needs 10 good minutes too.
            (
                &r,
                &[(0, 97.0), (10, 97.0), (11, 80.0), (20, 80.0), (21, 80.0)],
                ".R..C",
            ),
            // Both set: whichever first — 3 samples in 2 minutes…
            (&both, &[(0, 97.0), (1, 97.0), (2, 97.0)], "..R"),
            // …or 10 minutes in 2 samples.
            (&both, &[(0, 97.0), (10, 97.0)], ".R"),
        ];
        for (rule, points, want) in cases {
            let hs: Vec<(i64, Health)> = points.iter().map(|(m, c)| (*m, temp(*c))).collect();
            assert_eq!(run(rule, &hs, None), *want, "{points:?}");
        }
    }

    #[test]
    fn rising_sectors_relative_to_baseline() {
        let disks = |v: &[(&str, Option<u64>)]| Health {
            storage: v
                .iter()
                .map(|(d, n)| StorageHealth {
                    device: (*d).into(),
                    reallocated_sectors: *n,
                    pending_sectors: *n,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        type Readings<'a> = &'a [&'a [(&'a str, Option<u64>)]];
        let cases: &[(Readings, &str)] = &[
            // A high but stable count is not rising.
            (&[&[("sda", Some(40))], &[("sda", Some(40))]], ".."),
            (&[&[("sda", Some(40))], &[("sda", Some(41))]], ".R"),
            // Missing readings (non-inventory cycles) keep the baseline.
            (
                &[
                    &[("sda", Some(0))],
                    &[],
                    &[("sda", None)],
                    &[("sda", Some(3))],
                ],
                "...R",
            ),
            // A replaced disk (lower count) rebaselines and clears.
            (
                &[
                    &[("sda", Some(5))],
                    &[("sda", Some(9))],
                    &[("sda", Some(0))],
                    &[("sda", Some(0))],
                ],
                ".RC.",
            ),
            // Per disk: one disk's baseline does not hide another's rise.
            (
                &[
                    &[("sda", Some(100)), ("sdb", Some(0))],
                    &[("sda", Some(100)), ("sdb", Some(2))],
                ],
                ".R",
            ),
        ];
        for signal in [
            Signal::ReallocatedSectorsRising,
            Signal::PendingSectorsRising,
        ] {
            let r = rule(signal, Threshold::Above(0.0), samples(1), samples(1));
            for (readings, want) in cases {
                let hs: Vec<(i64, Health)> = readings
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i as i64, disks(v)))
                    .collect();
                assert_eq!(run(&r, &hs, None), *want, "{signal} {readings:?}");
            }
        }
    }

    #[test]
    fn shutdown_window_sums_and_expires() {
        let shut = |n: Option<u32>| Health {
            stability: Some(Stability {
                unexpected_shutdowns: n,
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = rule(
            Signal::UnexpectedShutdowns7d,
            Threshold::AtLeast(3.0),
            samples(1),
            samples(1),
        );
        let day = 24 * 60;
        // ((minute, count), expected transitions, expected final sum)
        type Case<'a> = (&'a [(i64, Option<u32>)], &'a str, f64);
        let cases: &[Case] = &[
            (
                &[(0, Some(1)), (day, Some(1)), (2 * day, Some(1))],
                "..R",
                3.0,
            ),
            (&[(0, Some(3))], "R", 3.0),
            // The first entry is exactly 7 days old at the third sample: expired.
            (
                &[(0, Some(2)), (day, Some(0)), (7 * day, Some(1))],
                "...",
                1.0,
            ),
            // At 8 days both earlier entries are 7 days old or more: the sum drops to 0.
            (
                &[(0, Some(2)), (day, Some(1)), (8 * day, Some(0))],
                ".RC",
                0.0,
            ),
            // Samples without a count neither add nor judge.
            (&[(0, Some(2)), (day, None), (2 * day, None)], "...", 2.0),
        ];
        for (points, want, sum) in cases {
            let mut state = RuleState::default();
            let got: String = points
                .iter()
                .map(|(m, n)| {
                    let h = shut(*n);
                    let s = Sample {
                        health: &h,
                        inventory: None,
                    };
                    match evaluate(&r, &mut state, &s, t0() + Duration::minutes(*m)) {
                        Some(Transition::Raised { .. }) => 'R',
                        Some(Transition::Cleared { .. }) => 'C',
                        None => '.',
                    }
                })
                .collect();
            assert_eq!(got, *want, "{points:?}");
            let total: u32 = state.window.iter().map(|e| e.count).sum();
            assert_eq!(f64::from(total), *sum, "{points:?}");
        }
    }

    #[test]
    fn touch_and_display_missing_need_the_inventory() {
        let inv = |touch: bool, displays: &[bool]| Inventory {
            input_devices: vec![InputDevice {
                name: "panel".into(),
                touchscreen: touch,
                ..Default::default()
            }],
            displays: displays
                .iter()
                .map(|c| Display {
                    connector: "card0-HDMI-A-1".into(),
                    connected: *c,
                    edid: None,
                })
                .collect(),
            ..Default::default()
        };
        let health = |touch: Option<u32>, displays: Option<u32>| Health {
            touch_devices: touch,
            displays_connected: displays,
            ..Default::default()
        };
        let touch = rule(
            Signal::TouchMissing,
            Threshold::Equals(1.0),
            samples(1),
            samples(1),
        );
        let display = rule(
            Signal::DisplayMissing,
            Threshold::Equals(1.0),
            samples(1),
            samples(1),
        );
        let with_touch = inv(true, &[true, false]);
        let no_touch = inv(false, &[true, true]);
        // (rule, inventory, health, expected reading)
        let cases: &[(&Rule, Option<&Inventory>, Health, Option<f64>)] = &[
            (&touch, Some(&with_touch), health(Some(0), None), Some(1.0)),
            (&touch, Some(&with_touch), health(Some(1), None), Some(0.0)),
            (&touch, Some(&no_touch), health(Some(0), None), Some(0.0)),
            (&touch, None, health(Some(0), None), None),
            (&touch, Some(&with_touch), health(None, None), None),
            (
                &display,
                Some(&with_touch),
                health(None, Some(0)),
                Some(1.0),
            ),
            (
                &display,
                Some(&with_touch),
                health(None, Some(1)),
                Some(0.0),
            ),
            (&display, Some(&no_touch), health(None, Some(1)), Some(1.0)),
            (&display, None, health(None, Some(0)), None),
        ];
        for (i, (r, inventory, h, want)) in cases.iter().enumerate() {
            let mut state = RuleState::default();
            let s = Sample {
                health: h,
                inventory: *inventory,
            };
            let got = evaluate(r, &mut state, &s, t0());
            assert_eq!(state.last_value, *want, "case {i}");
            assert_eq!(got.is_some(), *want == Some(1.0), "case {i}");
        }
    }

    #[test]
    fn other_signals_read_as_documented() {
        let hot = |c: f64, rpm: Option<u32>| Health {
            temperatures: vec![Temperature {
                sensor: "t".into(),
                celsius: c,
                ..Default::default()
            }],
            fans: vec![Fan {
                sensor: "f".into(),
                rpm,
                ..Default::default()
            }],
            ..Default::default()
        };
        let disk = |s: StorageHealth| Health {
            storage: vec![
                s,
                StorageHealth {
                    device: "other".into(),
                    passed: Some(true),
                    nvme_percentage_used_percent: Some(3.0),
                    media_errors: Some(0),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut fan_rule = rule(
            Signal::FanStoppedWhileHot,
            Threshold::Equals(1.0),
            samples(1),
            samples(1),
        );
        let cases: Vec<(Signal, Health, Option<f64>)> = vec![
            (Signal::FanStoppedWhileHot, hot(75.0, Some(0)), Some(1.0)),
            (Signal::FanStoppedWhileHot, hot(69.0, Some(0)), Some(0.0)),
            (Signal::FanStoppedWhileHot, hot(75.0, Some(2000)), Some(0.0)),
            (Signal::FanStoppedWhileHot, hot(75.0, None), None),
            (
                Signal::SmartFailed,
                disk(StorageHealth {
                    passed: Some(false),
                    ..Default::default()
                }),
                Some(1.0),
            ),
            (Signal::SmartFailed, Health::default(), None),
            (
                Signal::NvmePercentageUsedPercent,
                disk(StorageHealth {
                    nvme_percentage_used_percent: Some(91.0),
                    ..Default::default()
                }),
                Some(91.0),
            ),
            (
                Signal::MediaErrors,
                disk(StorageHealth {
                    media_errors: Some(4),
                    ..Default::default()
                }),
                Some(4.0),
            ),
            (
                Signal::MemoryErrorsUncorrected,
                Health {
                    memory_errors: Some(MemoryErrors {
                        corrected: 9,
                        uncorrected: 2,
                    }),
                    ..Default::default()
                },
                Some(2.0),
            ),
            (
                Signal::BatteryCycleCount,
                Health {
                    batteries: vec![
                        BatteryHealth {
                            cycle_count: Some(300),
                            ..Default::default()
                        },
                        BatteryHealth {
                            cycle_count: Some(1200),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
                Some(1200.0),
            ),
            (
                Signal::TemperatureMarginCelsius,
                Health {
                    temperatures: vec![
                        Temperature {
                            celsius: 90.0,
                            critical_celsius: Some(100.0),
                            ..Default::default()
                        },
                        Temperature {
                            celsius: 95.0,
                            critical_celsius: None,
                            ..Default::default()
                        },
                        Temperature {
                            celsius: 50.0,
                            critical_celsius: Some(0.0),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
                Some(10.0),
            ),
            (Signal::SilentSchoolDays, Health::default(), None),
        ];
        for (signal, h, want) in cases {
            fan_rule.signal = signal;
            let mut state = RuleState::default();
            let s = Sample {
                health: &h,
                inventory: None,
            };
            evaluate(&fan_rule, &mut state, &s, t0());
            assert_eq!(state.last_value, want, "{signal}");
        }
        // A rule-level hot threshold replaces the default 70 °C.
        fan_rule.signal = Signal::FanStoppedWhileHot;
        fan_rule.hot_celsius = Some(60.0);
        let mut state = RuleState::default();
        let h = hot(65.0, Some(0));
        evaluate(
            &fan_rule,
            &mut state,
            &Sample {
                health: &h,
                inventory: None,
            },
            t0(),
        );
        assert_eq!(state.last_value, Some(1.0));
    }

    #[test]
    fn silence_comparison_and_hysteresis() {
        let set = RuleSet::shipped().unwrap();
        let r = set
            .resolve(None, None)
            .into_iter()
            .find(|r| r.signal == Signal::SilentSchoolDays)
            .unwrap();
        let mut state = RuleState::default();
        let got: Vec<bool> = [4, 5, 0, 7]
            .into_iter()
            .map(|d| evaluate_silence(&r, &mut state, d, t0()).is_some())
            .collect();
        assert_eq!(got, [false, true, true, true]);
        let other = set
            .resolve(None, None)
            .into_iter()
            .find(|r| r.id == "battery_worn")
            .unwrap();
        assert_eq!(
            evaluate_silence(&other, &mut RuleState::default(), 99, t0()),
            None
        );
    }

    #[test]
    fn evaluate_all_uses_overrides_and_skips_disabled() {
        let set = RuleSet::shipped_with(
            r#"
[[override]]
lot = "Lot 2"
rule = "battery_worn"
below = 80.0
raise_after_samples = 1

[[override]]
model = "Slate 10"
rule = "battery_worn"
enabled = false
"#,
        )
        .unwrap();
        let h = battery(Some(70.0));
        let s = Sample {
            health: &h,
            inventory: None,
        };
        // (model, lot, raised ids)
        let cases: &[(Option<&str>, Option<&str>, &[&str])] = &[
            (None, None, &[]),
            (None, Some("Lot 2"), &["battery_worn"]),
            (Some("Slate 10"), Some("Lot 2"), &[]),
        ];
        for (model, lot, want) in cases {
            let mut states = BTreeMap::new();
            let got: Vec<String> = evaluate_all(&set, *model, *lot, &mut states, &s, t0())
                .into_iter()
                .map(|t| match t {
                    Transition::Raised { rule_id, .. } | Transition::Cleared { rule_id, .. } => {
                        rule_id
                    }
                })
                .collect();
            assert_eq!(got, *want, "{model:?} {lot:?}");
            assert_eq!(
                states.contains_key("battery_worn"),
                *model != Some("Slate 10")
            );
        }
    }

    #[test]
    fn raised_transition_carries_evidence_and_state_round_trips() {
        let r = rule(
            Signal::BatteryHealthPercent,
            Threshold::Below(60.0),
            samples(2),
            samples(1),
        );
        let mut state = RuleState::default();
        let h = battery(Some(42.0));
        let s = Sample {
            health: &h,
            inventory: None,
        };
        assert_eq!(evaluate(&r, &mut state, &s, t0()), None);
        let json = stored(&state);
        let mut state: RuleState = toml::from_str(&json).unwrap();
        let t = evaluate(&r, &mut state, &s, t0() + Duration::minutes(5)).unwrap();
        let Transition::Raised {
            value,
            evidence,
            severity,
            ..
        } = &t
        else {
            panic!("{t:?}")
        };
        assert_eq!((*value, *severity), (42.0, Severity::Major));
        assert_eq!((evidence.samples, evidence.since), (2, t0()));
        assert!(evidence.to_string().contains("below 60"), "{evidence}");
        assert!(state.raised);
    }

    /// States are stored as text by the server; TOML stands in for its format here.
    fn stored(state: &RuleState) -> String {
        toml::to_string(state).unwrap()
    }
}
