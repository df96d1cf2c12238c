//! Service levels of maintenance contracts: GTI (*garantie de temps
//! d'intervention*, time until a technician acts) and GTR (*garantie de temps
//! de rétablissement*, time until the device works again), their deadlines
//! and the late-delivery penalties (*pénalités de retard*) they trigger.
//!
//! This module must never do IO or read the clock: callers pass `opened_at`
//! and `done_or_now` as local Europe/Paris times and a `BusinessCalendar`
//! built for the school's département.
//!
//! Decisions:
//! - Every SLA duration is business time, as GTI/GTR clauses are: "4h" means
//!   4 business hours, "2d" 2 business days (*jours ouvrés*). Units written
//!   *ouvrable* (which include Saturday) are refused rather than guessed.
//! - Zero durations are refused: every ticket would be late when opened.
//! - Deadlines follow `BusinessCalendar`: a ticket opened outside business
//!   time counts from the next opening.
//! - Lateness: not late when done at or before the deadline. Otherwise every
//!   started business day counts in full (*tout jour commencé est dû*):
//!   `business_days_late` is the smallest `k >= 1` with
//!   `add_business_days(due, k) >= done_or_now`. Late by a minute is 1 day;
//!   done exactly one business day after the deadline is still 1 day.
//! - The penalty rate is passed to `lateness` rather than read from
//!   `SlaTerms`, because CCAPs often price GTI and GTR lateness differently.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::calendar::BusinessCalendar;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SlaError {
    #[error("SLA duration is empty; write e.g. \"4h\" or \"2 business days\"")]
    Empty,
    #[error("SLA duration {input:?} must start with a whole number, e.g. \"4h\" or \"2d\"")]
    MissingNumber { input: String },
    #[error("SLA duration {input:?} must be a whole number of hours or days")]
    NotWhole { input: String },
    #[error("SLA duration {input:?} is too large")]
    TooLarge { input: String },
    #[error("SLA duration {input:?} has no unit; write \"{number}h\" or \"{number}d\"")]
    MissingUnit { input: String, number: u32 },
    #[error(
        "SLA duration {input:?} has unknown unit {unit:?}; use business hours (\"4h\", \"4 business hours\") or business days (\"2d\", \"2 business days\")"
    )]
    UnknownUnit { input: String, unit: String },
    #[error("SLA duration {input:?} is zero: every ticket would be late when opened")]
    Zero { input: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SlaDuration {
    BusinessHours(u32),
    BusinessDays(u32),
}

/// Units as they appear in CCAPs and spreadsheets, lower case, single spaces.
const HOUR_UNITS: &[&str] = &[
    "h",
    "hr",
    "hrs",
    "hour",
    "hours",
    "bh",
    "business hour",
    "business hours",
    "working hour",
    "working hours",
    "ho",
    "heure",
    "heures",
    "heure ouvrée",
    "heures ouvrées",
    "heure ouvree",
    "heures ouvrees",
];

const DAY_UNITS: &[&str] = &[
    "d",
    "day",
    "days",
    "bd",
    "business day",
    "business days",
    "working day",
    "working days",
    "j",
    "jo",
    "jour",
    "jours",
    "jour ouvré",
    "jours ouvrés",
    "jour ouvre",
    "jours ouvres",
];

impl SlaDuration {
    pub fn parse(input: &str) -> Result<SlaDuration, SlaError> {
        let text = input.trim().to_lowercase();
        if text.is_empty() {
            return Err(SlaError::Empty);
        }
        let owned = || input.trim().to_string();
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        if digits_end == 0 {
            return Err(SlaError::MissingNumber { input: owned() });
        }
        let number: u32 = text[..digits_end]
            .parse()
            .map_err(|_| SlaError::TooLarge { input: owned() })?;
        let rest = &text[digits_end..];
        if rest.starts_with(['.', ',']) {
            return Err(SlaError::NotWhole { input: owned() });
        }
        let unit = rest.split_whitespace().collect::<Vec<_>>().join(" ");
        let duration = if unit.is_empty() {
            return Err(SlaError::MissingUnit {
                input: owned(),
                number,
            });
        } else if HOUR_UNITS.contains(&unit.as_str()) {
            SlaDuration::BusinessHours(number)
        } else if DAY_UNITS.contains(&unit.as_str()) {
            SlaDuration::BusinessDays(number)
        } else {
            return Err(SlaError::UnknownUnit {
                input: owned(),
                unit,
            });
        };
        if number == 0 {
            return Err(SlaError::Zero { input: owned() });
        }
        Ok(duration)
    }

    /// Deadline for something that starts at `from`.
    pub fn due_from(self, from: NaiveDateTime, cal: &BusinessCalendar) -> NaiveDateTime {
        match self {
            SlaDuration::BusinessHours(hours) => cal.add_business_hours(from, hours),
            SlaDuration::BusinessDays(days) => cal.add_business_days(from, days),
        }
    }
}

impl fmt::Display for SlaDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = match *self {
            SlaDuration::BusinessHours(n) => (n, "business hour"),
            SlaDuration::BusinessDays(n) => (n, "business day"),
        };
        let plural = if n == 1 { "" } else { "s" };
        write!(f, "{n} {unit}{plural}")
    }
}

impl FromStr for SlaDuration {
    type Err = SlaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SlaDuration::parse(s)
    }
}

impl TryFrom<String> for SlaDuration {
    type Error = SlaError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SlaDuration::parse(&s)
    }
}

impl From<SlaDuration> for String {
    fn from(duration: SlaDuration) -> String {
        duration.to_string()
    }
}

/// What a lot's CCAP promises. `None` means the contract states no such
/// guarantee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlaTerms {
    pub gti: Option<SlaDuration>,
    pub gtr: Option<SlaDuration>,
    pub penalty_per_day_cents: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Deadlines {
    pub gti_due: Option<NaiveDateTime>,
    pub gtr_due: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Late {
    pub business_days_late: u32,
    pub penalty_cents: u64,
}

/// GTI and GTR both run from the ticket's opening.
pub fn deadlines(terms: &SlaTerms, opened_at: NaiveDateTime, cal: &BusinessCalendar) -> Deadlines {
    Deadlines {
        gti_due: terms.gti.map(|gti| gti.due_from(opened_at, cal)),
        gtr_due: terms.gtr.map(|gtr| gtr.due_from(opened_at, cal)),
    }
}

/// `None` when done (or, while still open, `now`) is at or before `due`.
/// No rate means lateness is reported with a zero penalty.
pub fn lateness(
    due: NaiveDateTime,
    done_or_now: NaiveDateTime,
    cal: &BusinessCalendar,
    penalty_per_day_cents: Option<u64>,
) -> Option<Late> {
    if done_or_now <= due {
        return None;
    }
    let whole = cal.business_days_between(due, done_or_now);
    let started = if cal.add_business_days(due, whole) < done_or_now {
        whole + 1
    } else {
        whole
    };
    // A due time outside business hours moves to the next opening, so the
    // count above can be 0 while the clock says late: that is a started day.
    let business_days_late = started.max(1);
    Some(Late {
        business_days_late,
        penalty_cents: u64::from(business_days_late)
            .saturating_mul(penalty_per_day_cents.unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::Calendar;
    use SlaDuration::{BusinessDays, BusinessHours};
    use chrono::NaiveDate;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error as DeError, StringDeserializer};

    fn dt(y: i32, m: u32, day: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, day)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    fn metz() -> BusinessCalendar {
        BusinessCalendar::new(Calendar::for_departement("57"))
    }

    fn lyon() -> BusinessCalendar {
        BusinessCalendar::new(Calendar::for_departement("69"))
    }

    #[test]
    fn parse_ok_table() {
        let cases = [
            ("4h", BusinessHours(4)),
            ("4 h", BusinessHours(4)),
            (" 4H ", BusinessHours(4)),
            ("4 business hours", BusinessHours(4)),
            ("1 Business Hour", BusinessHours(1)),
            ("8  working   hours", BusinessHours(8)),
            ("4 heures ouvrées", BusinessHours(4)),
            ("4 HO", BusinessHours(4)),
            ("2d", BusinessDays(2)),
            ("2 days", BusinessDays(2)),
            ("2 business days", BusinessDays(2)),
            ("1 business day", BusinessDays(1)),
            ("5 jours ouvrés", BusinessDays(5)),
            ("5 jours ouvres", BusinessDays(5)),
            ("3j", BusinessDays(3)),
            ("3 JO", BusinessDays(3)),
            ("10bd", BusinessDays(10)),
        ];
        for (input, expected) in cases {
            assert_eq!(SlaDuration::parse(input), Ok(expected), "{input:?}");
        }
    }

    #[test]
    fn parse_error_table() {
        let s = |x: &str| x.to_string();
        let cases = [
            ("", SlaError::Empty),
            ("   ", SlaError::Empty),
            ("h", SlaError::MissingNumber { input: s("h") }),
            ("-4h", SlaError::MissingNumber { input: s("-4h") }),
            (
                "four hours",
                SlaError::MissingNumber {
                    input: s("four hours"),
                },
            ),
            ("1.5d", SlaError::NotWhole { input: s("1.5d") }),
            ("1,5 j", SlaError::NotWhole { input: s("1,5 j") }),
            (
                "99999999999h",
                SlaError::TooLarge {
                    input: s("99999999999h"),
                },
            ),
            (
                "4",
                SlaError::MissingUnit {
                    input: s("4"),
                    number: 4,
                },
            ),
            (
                "2 jours ouvrables",
                SlaError::UnknownUnit {
                    input: s("2 jours ouvrables"),
                    unit: s("jours ouvrables"),
                },
            ),
            (
                "2 weeks",
                SlaError::UnknownUnit {
                    input: s("2 weeks"),
                    unit: s("weeks"),
                },
            ),
            (
                "4 hours 30",
                SlaError::UnknownUnit {
                    input: s("4 hours 30"),
                    unit: s("hours 30"),
                },
            ),
            ("0h", SlaError::Zero { input: s("0h") }),
            (
                "0 business days",
                SlaError::Zero {
                    input: s("0 business days"),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(SlaDuration::parse(input), Err(expected), "{input:?}");
        }
        assert_eq!(
            SlaDuration::parse("2 weeks").unwrap_err().to_string(),
            "SLA duration \"2 weeks\" has unknown unit \"weeks\"; use business hours (\"4h\", \"4 business hours\") or business days (\"2d\", \"2 business days\")"
        );
    }

    #[test]
    fn display_round_trips() {
        let cases = [
            (BusinessHours(1), "1 business hour"),
            (BusinessHours(4), "4 business hours"),
            (BusinessDays(1), "1 business day"),
            (BusinessDays(2), "2 business days"),
        ];
        for (duration, text) in cases {
            assert_eq!(duration.to_string(), text);
            assert_eq!(text.parse::<SlaDuration>(), Ok(duration));
            let de: StringDeserializer<DeError> = String::from(duration).into_deserializer();
            assert_eq!(SlaDuration::deserialize(de).unwrap(), duration);
        }
    }

    #[test]
    fn deadlines_table() {
        let opened = dt(2026, 4, 2, 16, 0); // Thursday before Easter 2026
        let full = SlaTerms {
            gti: Some(BusinessHours(4)),
            gtr: Some(BusinessDays(2)),
            penalty_per_day_cents: Some(10_000),
        };
        let gtr_only = SlaTerms { gti: None, ..full };
        let cases = [
            // Metz: Good Friday and Easter Monday are off.
            (
                metz(),
                full,
                Some(dt(2026, 4, 7, 10, 0)),
                Some(dt(2026, 4, 8, 16, 0)),
            ),
            // Lyon: only Easter Monday is off.
            (
                lyon(),
                full,
                Some(dt(2026, 4, 3, 10, 0)),
                Some(dt(2026, 4, 7, 16, 0)),
            ),
            (lyon(), gtr_only, None, Some(dt(2026, 4, 7, 16, 0))),
            (lyon(), SlaTerms::default(), None, None),
        ];
        for (cal, terms, gti_due, gtr_due) in cases {
            let got = deadlines(&terms, opened, &cal);
            assert_eq!(
                got,
                Deadlines { gti_due, gtr_due },
                "{:?} {terms:?}",
                cal.calendar()
            );
        }
        // Opened on Saturday evening: counts from Monday 08:00.
        let weekend = deadlines(&full, dt(2026, 3, 28, 21, 0), &lyon());
        assert_eq!(weekend.gti_due, Some(dt(2026, 3, 30, 12, 0)));
        assert_eq!(weekend.gtr_due, Some(dt(2026, 4, 1, 8, 0)));
    }

    #[test]
    fn lateness_table() {
        let rate = Some(10_000); // 100 € per day
        let metz_due = dt(2026, 4, 8, 16, 0);
        let lyon_due = dt(2026, 4, 7, 16, 0);
        let cases = [
            (metz(), metz_due, dt(2026, 4, 8, 15, 0), None),
            (metz(), metz_due, metz_due, None),
            (metz(), metz_due, dt(2026, 4, 8, 16, 1), Some(1)),
            (metz(), metz_due, dt(2026, 4, 9, 9, 0), Some(1)),
            (metz(), metz_due, dt(2026, 4, 9, 16, 0), Some(1)),
            (metz(), metz_due, dt(2026, 4, 9, 16, 1), Some(2)),
            (metz(), metz_due, dt(2026, 4, 10, 17, 0), Some(3)),
            (metz(), metz_due, dt(2026, 4, 11, 10, 0), Some(3)), // Saturday
            (metz(), metz_due, dt(2026, 4, 13, 15, 0), Some(3)),
            // The same repair, Wednesday 8 April 16:00, in both calendars.
            (lyon(), lyon_due, metz_due, Some(1)),
            (lyon(), lyon_due, dt(2026, 4, 7, 16, 30), Some(1)),
            // Due outside business hours, done before the next opening: one started day.
            (
                lyon(),
                dt(2026, 4, 3, 19, 0),
                dt(2026, 4, 3, 20, 0),
                Some(1),
            ),
            (lyon(), dt(2026, 4, 3, 19, 0), dt(2026, 4, 7, 8, 0), Some(1)),
            // Such a deadline really falls at Tuesday 08:00 (Easter Monday is off).
            (lyon(), dt(2026, 4, 3, 19, 0), dt(2026, 4, 7, 8, 1), Some(1)),
            (lyon(), dt(2026, 4, 3, 19, 0), dt(2026, 4, 8, 8, 1), Some(2)),
        ];
        for (cal, due, done, expected) in cases {
            let got = lateness(due, done, &cal, rate);
            let want = expected.map(|days| Late {
                business_days_late: days,
                penalty_cents: u64::from(days) * 10_000,
            });
            assert_eq!(got, want, "{:?} due {due} done {done}", cal.calendar());
        }
    }

    #[test]
    fn lateness_counts_started_days() {
        for cal in [metz(), lyon()] {
            let due = dt(2025, 12, 22, 11, 0);
            for k in 1..=15 {
                let at_kth = cal.add_business_days(due, k);
                let late = lateness(due, at_kth, &cal, None).unwrap();
                assert_eq!(late.business_days_late, k, "{:?} {at_kth}", cal.calendar());
                let just_after = at_kth + chrono::TimeDelta::minutes(1);
                let late = lateness(due, just_after, &cal, None).unwrap();
                assert_eq!(
                    late.business_days_late,
                    k + 1,
                    "{:?} {just_after}",
                    cal.calendar()
                );
            }
        }
    }

    #[test]
    fn penalty_table() {
        let due = dt(2026, 4, 7, 16, 0);
        let done = dt(2026, 4, 9, 17, 0); // 3 started days in Lyon
        let cases = [
            (None, 0),
            (Some(0), 0),
            (Some(5_000), 15_000),
            (Some(15_000), 45_000),
            (Some(u64::MAX), u64::MAX),
        ];
        for (rate, penalty) in cases {
            let late = lateness(due, done, &lyon(), rate).unwrap();
            assert_eq!(late.business_days_late, 3);
            assert_eq!(late.penalty_cents, penalty, "{rate:?}");
        }
    }
}
