//! When a simulated device is switched on, and what kind of hardware it is: laptops in
//! mobile carts (used for some class sessions on school days), interactive displays
//! (on through class hours), office PCs (on through office hours, Wednesday included).
//!
//! School days are Monday, Tuesday, Thursday and Friday, plus Wednesday morning (the
//! French week of collèges; primary schools keep Wednesday off or a morning); holidays
//! are not simulated. Pure functions of the time and a seed: no IO, no clock.

use chrono::{DateTime, Datelike as _, NaiveTime, Timelike as _, Utc, Weekday};

use crate::clock::local_offset;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// A laptop of a mobile cart: on for the class sessions its cart is used.
    CartLaptop,
    /// An interactive display (ENI/VPI): on through class hours.
    Display,
    /// A staff or office PC: on through office hours.
    OfficePc,
}

/// Class sessions of a school day, local time (start, end).
const SESSIONS: [((u32, u32), (u32, u32)); 4] = [
    ((9, 0), (10, 30)),
    ((10, 45), (12, 0)),
    ((13, 30), (15, 0)),
    ((15, 15), (16, 30)),
];

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("valid time")
}

/// A uniform draw in [0, 1) from a seed and two coordinates (splitmix64).
pub fn unit(seed: u64, a: u64, b: u64) -> f64 {
    let mut z = seed
        .wrapping_add(a.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Until when the school day runs at local time `t` (None: no school now).
fn school_day_end(t: NaiveTime, weekday: Weekday) -> Option<NaiveTime> {
    match weekday {
        Weekday::Mon | Weekday::Tue | Weekday::Thu | Weekday::Fri => Some(hm(16, 45)),
        Weekday::Wed if t < hm(12, 0) => Some(hm(12, 0)),
        _ => None,
    }
}

impl Profile {
    pub fn label(self) -> &'static str {
        match self {
            Profile::CartLaptop => "cart_laptop",
            Profile::Display => "display",
            Profile::OfficePc => "office_pc",
        }
    }

    /// Whether a device of this profile is on at `t`. `usage_seed` is shared by the
    /// devices used together (a cart's laptops go to class together).
    pub fn powered(self, t: DateTime<Utc>, usage_seed: u64) -> bool {
        let local = t.with_timezone(&local_offset());
        let time = local.time();
        let weekday = local.weekday();
        let day = local.date_naive().num_days_from_ce() as u64;
        match self {
            Profile::Display => school_day_end(time, weekday).is_some_and(|end| {
                time >= hm(8, 20) && time < end && !(hm(11, 50)..hm(13, 20)).contains(&time)
            }),
            Profile::CartLaptop => {
                let Some(end) = school_day_end(time, weekday) else {
                    return false;
                };
                SESSIONS
                    .iter()
                    .enumerate()
                    .any(|(i, ((sh, sm), (eh, em)))| {
                        let (s, e) = (hm(*sh, *sm), hm(*eh, *em).min(end));
                        // A cart goes out for about half of the sessions.
                        time >= s && time < e && unit(usage_seed, day, i as u64) < 0.55
                    })
            }
            Profile::OfficePc => {
                weekday.num_days_from_monday() < 5 && time >= hm(7, 45) && time < hm(17, 30)
            }
        }
    }

    /// Manufacturer, model and chassis of the simulated hardware.
    pub fn hardware(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Profile::CartLaptop => ("LENOVO", "ThinkPad X13 Gen 2i", "notebook"),
            Profile::Display => ("Speechi", "SPE-86-ENI", "all-in-one"),
            Profile::OfficePc => ("Dell Inc.", "OptiPlex 7010", "desktop"),
        }
    }

    /// The profile of a delivered model (the demo's deliveries name their model).
    pub fn from_model(model: &str) -> Self {
        let m = model.to_ascii_lowercase();
        if m.contains("eni") || m.contains("vpi") || m.contains("display") || m.contains("écran") {
            Profile::Display
        } else if m.contains("thinkpad") || m.contains("book") || m.contains("portable") {
            Profile::CartLaptop
        } else {
            Profile::OfficePc
        }
    }
}

/// Minutes since local midnight (for logs and reports).
pub fn local_minutes(t: DateTime<Utc>) -> u32 {
    let l = t.with_timezone(&local_offset());
    l.hour() * 60 + l.minute()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn displays_are_on_in_class_hours_of_school_days_only() {
        // 2026-11-23 is a Monday; times are UTC (local = UTC+1).
        assert!(Profile::Display.powered(at("2026-11-23T09:00:00Z"), 1));
        assert!(
            !Profile::Display.powered(at("2026-11-23T11:30:00Z"), 1),
            "lunch"
        );
        assert!(
            !Profile::Display.powered(at("2026-11-23T18:00:00Z"), 1),
            "evening"
        );
        assert!(
            Profile::Display.powered(at("2026-11-25T09:00:00Z"), 1),
            "Wednesday morning"
        );
        assert!(
            !Profile::Display.powered(at("2026-11-25T13:00:00Z"), 1),
            "Wednesday afternoon"
        );
        assert!(
            !Profile::Display.powered(at("2026-11-28T09:00:00Z"), 1),
            "Saturday"
        );
    }

    #[test]
    fn a_cart_is_used_for_some_sessions_and_its_laptops_together() {
        let mut on = 0;
        let mut total = 0;
        for day in 23..=27 {
            for h in [8, 9, 12, 14] {
                let t = at(&format!("2026-11-{day}T{h:02}:30:00Z"));
                total += 1;
                let a = Profile::CartLaptop.powered(t, 42);
                assert_eq!(a, Profile::CartLaptop.powered(t, 42));
                on += usize::from(a);
            }
        }
        assert!(on > 0 && on < total, "{on} of {total}");
        assert!(!Profile::CartLaptop.powered(at("2026-11-23T20:00:00Z"), 42));
    }

    #[test]
    fn office_pcs_work_on_wednesday_afternoon_too() {
        assert!(Profile::OfficePc.powered(at("2026-11-25T14:00:00Z"), 0));
        assert!(!Profile::OfficePc.powered(at("2026-11-29T14:00:00Z"), 0));
    }

    #[test]
    fn delivered_models_map_to_profiles() {
        assert_eq!(Profile::from_model("SPE-86-ENI"), Profile::Display);
        assert_eq!(
            Profile::from_model("ThinkPad X13 Gen 2i"),
            Profile::CartLaptop
        );
        assert_eq!(Profile::from_model("OptiPlex 7010"), Profile::OfficePc);
    }
}
