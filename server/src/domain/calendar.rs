//! French business calendar: public holidays (national and Alsace-Moselle),
//! school holidays loaded from a file, and business-time arithmetic used for
//! GTI/GTR deadlines and "silent for N school days".
//!
//! This module must never do IO or read the clock: callers pass dates, times
//! and the text of the school-holiday file. All times are local wall-clock
//! times in Europe/Paris as `NaiveDateTime`; callers convert from UTC before
//! calling and back after. Wall-clock arithmetic is exact for business time
//! because French DST changes happen on Sunday nights, never inside a business
//! window.
//!
//! Decisions:
//! - Business day (*jour ouvré*): Monday–Friday and not a public holiday of the
//!   calendar. School holidays do not stop business days: contract holders
//!   work during them; they only matter for `school_days_between`.
//! - Whit Monday counts as a holiday even though some employers work it
//!   (*journée de solidarité*), as the contract vocabulary in domain.md says.
//! - Business window is half-open, `[opens_at, closes_at)`, 08:00–18:00 by
//!   default. An instant outside business time (non-business day, before
//!   opening, at or after closing) is first moved to the next window opening
//!   ("received after 18:00 counts as received at 08:00 the next business
//!   day"); `add_business_days` and `add_business_hours` both apply this.
//! - Adding business hours may end exactly at closing time (Friday 17:00 + 1h
//!   is Friday 18:00, not Monday 08:00).
//! - `business_days_between(a, b)` is the inverse of `add_business_days`: the
//!   largest `n` with `add_business_days(a, n) <= b`.
//! - School-holiday periods: `start` inclusive (first day without class),
//!   `end` exclusive (the day classes resume), which is how the ministry's
//!   open data reads once converted to local dates. Zones compare without
//!   case and without a leading "Zone " ("Zone A" = "A").
//! - `school_days_between(a, b)` counts days in `(a, b]` that are business
//!   days outside school holidays; Wednesdays count (not all schools are off
//!   on Wednesday, and the file has no per-school timetable).

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Weekday};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::domain::ids::Uai;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CalendarError {
    #[error(
        "school holidays line {line}: expected 4 columns (zone,start,end,description), found {found}"
    )]
    CsvColumns { line: usize, found: usize },
    #[error("school holidays line {line}: zone is empty")]
    CsvEmptyZone { line: usize },
    #[error("school holidays line {line}: {column} {value:?} is not an ISO date (YYYY-MM-DD)")]
    CsvDate {
        line: usize,
        column: &'static str,
        value: String,
    },
    #[error(
        "school holidays line {line}: end {end} must be after start {start} (end is the day classes resume)"
    )]
    CsvEndNotAfterStart {
        line: usize,
        start: NaiveDate,
        end: NaiveDate,
    },
    #[error("business hours must close after they open, got {opens_at}–{closes_at}")]
    BusinessHours {
        opens_at: NaiveTime,
        closes_at: NaiveTime,
    },
}

/// Easter Sunday in the Gregorian calendar (anonymous algorithm, a.k.a.
/// Meeus/Jones/Butcher).
///
/// # Panics
/// If the year is outside chrono's supported range (about ±262 000).
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year.rem_euclid(19);
    let b = year.div_euclid(100);
    let c = year.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let month = (h + l - 7 * m + 114).div_euclid(31);
    let day = (h + l - 7 * m + 114).rem_euclid(31) + 1;
    // month is 3 or 4 and day 1..=31 by construction.
    NaiveDate::from_ymd_opt(year, month as u32, day as u32)
        .expect("year within chrono's supported range")
}

/// Which set of public holidays applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calendar {
    #[default]
    National,
    /// Moselle (57), Bas-Rhin (67), Haut-Rhin (68): local law kept from the
    /// German period adds Good Friday and 26 December.
    AlsaceMoselle,
}

impl Calendar {
    /// Calendar for a département number, with or without zero padding
    /// (`"57"`, `"057"`). Anything unrecognised is national: only three
    /// départements differ, so a typo cannot invent a local calendar.
    pub fn for_departement(departement: &str) -> Calendar {
        let trimmed = departement.trim();
        let number = trimmed.trim_start_matches('0');
        match number {
            "57" | "67" | "68" => Calendar::AlsaceMoselle,
            _ => Calendar::National,
        }
    }

    pub fn for_uai(uai: &Uai) -> Calendar {
        Calendar::for_departement(&uai.departement())
    }

    /// Public holidays of `year`, sorted by date. A date can appear twice when
    /// two feasts coincide (Ascension fell on 1 May in 2008).
    pub fn public_holidays(self, year: i32) -> Vec<(NaiveDate, &'static str)> {
        let fixed = |month, day| {
            NaiveDate::from_ymd_opt(year, month, day).expect("year within chrono's supported range")
        };
        let easter = easter_sunday(year);
        let from_easter = |days: i64| easter + TimeDelta::days(days);
        let mut holidays = vec![
            (fixed(1, 1), "Jour de l'an"),
            (from_easter(1), "Lundi de Pâques"),
            (fixed(5, 1), "Fête du Travail"),
            (fixed(5, 8), "Victoire 1945"),
            (from_easter(39), "Ascension"),
            (from_easter(50), "Lundi de Pentecôte"),
            (fixed(7, 14), "Fête nationale"),
            (fixed(8, 15), "Assomption"),
            (fixed(11, 1), "Toussaint"),
            (fixed(11, 11), "Armistice"),
            (fixed(12, 25), "Noël"),
        ];
        if self == Calendar::AlsaceMoselle {
            holidays.push((from_easter(-2), "Vendredi saint"));
            holidays.push((fixed(12, 26), "Saint-Étienne"));
        }
        holidays.sort_by_key(|&(date, _)| date);
        holidays
    }

    /// Name of the holiday on `date`, if any (the first by list order when two
    /// coincide).
    pub fn holiday_name(self, date: NaiveDate) -> Option<&'static str> {
        self.public_holidays(date.year())
            .into_iter()
            .find(|&(d, _)| d == date)
            .map(|(_, name)| name)
    }

    pub fn is_public_holiday(self, date: NaiveDate) -> bool {
        self.holiday_name(date).is_some()
    }

    /// *Jour ouvré*: Monday to Friday and not a public holiday.
    pub fn is_business_day(self, date: NaiveDate) -> bool {
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !self.is_public_holiday(date)
    }
}

/// One school-holiday period of one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchoolHoliday {
    pub zone: String,
    /// First day without class (inclusive).
    pub start: NaiveDate,
    /// Day classes resume (exclusive).
    pub end: NaiveDate,
    pub description: String,
}

impl SchoolHoliday {
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.start <= date && date < self.end
    }
}

/// School holidays of all zones, as published yearly by the ministry. Only
/// `parse_csv` builds one, so every period ends after it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SchoolHolidays {
    periods: Vec<SchoolHoliday>,
}

/// "Zone A", "zone a" and "A" name the same zone in files people edit.
fn normalize_zone(zone: &str) -> String {
    let lower = zone.trim().to_lowercase();
    match lower.strip_prefix("zone") {
        Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim().to_string(),
        _ => lower,
    }
}

/// Spreadsheet exports quote fields that contain commas and double inner
/// quotes; undo that for a single field.
fn unquote(field: &str) -> String {
    let trimmed = field.trim();
    if trimmed.len() >= 2 && trimmed.starts_with('"') && trimmed.ends_with('"') {
        trimmed[1..trimmed.len() - 1].replace("\"\"", "\"")
    } else {
        trimmed.to_string()
    }
}

impl SchoolHolidays {
    /// Parses `zone,start,end,description` lines with ISO dates. A header
    /// line with those names, blank lines and lines starting with `#` are
    /// skipped; a leading byte-order mark is ignored. The description is the
    /// rest of the line, so it may contain commas; any field may be
    /// double-quoted. Errors carry the 1-based line number.
    pub fn parse_csv(text: &str) -> Result<SchoolHolidays, CalendarError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut periods = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fields: Vec<String> = trimmed.splitn(4, ',').map(unquote).collect();
            if fields.len() != 4 {
                return Err(CalendarError::CsvColumns {
                    line,
                    found: fields.len(),
                });
            }
            let is_header = fields
                .iter()
                .zip(["zone", "start", "end", "description"])
                .all(|(field, name)| field.eq_ignore_ascii_case(name));
            if is_header {
                continue;
            }
            if fields[0].is_empty() {
                return Err(CalendarError::CsvEmptyZone { line });
            }
            let date = |column: &'static str, value: &str| {
                NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| CalendarError::CsvDate {
                    line,
                    column,
                    value: value.to_string(),
                })
            };
            let start = date("start", &fields[1])?;
            let end = date("end", &fields[2])?;
            if end <= start {
                return Err(CalendarError::CsvEndNotAfterStart { line, start, end });
            }
            periods.push(SchoolHoliday {
                zone: fields[0].clone(),
                start,
                end,
                description: fields[3].clone(),
            });
        }
        Ok(SchoolHolidays { periods })
    }

    pub fn periods(&self) -> &[SchoolHoliday] {
        &self.periods
    }

    pub fn is_empty(&self) -> bool {
        self.periods.is_empty()
    }

    /// The period of `zone` containing `date`, if any.
    pub fn period_at(&self, zone: &str, date: NaiveDate) -> Option<&SchoolHoliday> {
        let zone = normalize_zone(zone);
        self.periods
            .iter()
            .find(|p| p.contains(date) && normalize_zone(&p.zone) == zone)
    }

    pub fn contains(&self, zone: &str, date: NaiveDate) -> bool {
        self.period_at(zone, date).is_some()
    }
}

/// Public holidays, optional school holidays of one zone, and the daily
/// business window: everything needed to turn "2 business days" into a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessCalendar {
    calendar: Calendar,
    school: Option<(SchoolHolidays, String)>,
    opens_at: NaiveTime,
    closes_at: NaiveTime,
}

impl Default for BusinessCalendar {
    fn default() -> Self {
        BusinessCalendar::new(Calendar::National)
    }
}

impl BusinessCalendar {
    /// Business window 08:00–18:00, no school holidays.
    pub fn new(calendar: Calendar) -> BusinessCalendar {
        BusinessCalendar {
            calendar,
            school: None,
            opens_at: NaiveTime::from_hms_opt(8, 0, 0).expect("valid time"),
            closes_at: NaiveTime::from_hms_opt(18, 0, 0).expect("valid time"),
        }
    }

    /// Contracts state their own window (e.g. 08:30–17:30). Windows crossing
    /// midnight are refused: no maintenance contract uses one.
    pub fn with_hours(
        mut self,
        opens_at: NaiveTime,
        closes_at: NaiveTime,
    ) -> Result<BusinessCalendar, CalendarError> {
        if closes_at <= opens_at {
            return Err(CalendarError::BusinessHours {
                opens_at,
                closes_at,
            });
        }
        self.opens_at = opens_at;
        self.closes_at = closes_at;
        Ok(self)
    }

    pub fn with_school_holidays(
        mut self,
        holidays: SchoolHolidays,
        zone: &str,
    ) -> BusinessCalendar {
        self.school = Some((holidays, zone.to_string()));
        self
    }

    pub fn calendar(&self) -> Calendar {
        self.calendar
    }

    pub fn opens_at(&self) -> NaiveTime {
        self.opens_at
    }

    pub fn closes_at(&self) -> NaiveTime {
        self.closes_at
    }

    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        self.calendar.is_business_day(date)
    }

    /// Business day outside the configured zone's school holidays (just a
    /// business day when no school holidays are configured).
    pub fn is_school_day(&self, date: NaiveDate) -> bool {
        self.is_business_day(date)
            && !self
                .school
                .as_ref()
                .is_some_and(|(holidays, zone)| holidays.contains(zone, date))
    }

    pub fn is_business_time(&self, at: NaiveDateTime) -> bool {
        self.is_business_day(at.date()) && self.opens_at <= at.time() && at.time() < self.closes_at
    }

    /// `at` itself when inside business time, otherwise the next opening.
    pub fn next_business_time(&self, at: NaiveDateTime) -> NaiveDateTime {
        if self.is_business_day(at.date()) {
            if at.time() < self.opens_at {
                return at.date().and_time(self.opens_at);
            }
            if at.time() < self.closes_at {
                return at;
            }
        }
        self.next_business_day(at.date()).and_time(self.opens_at)
    }

    /// First business day strictly after `date`.
    ///
    /// # Panics
    /// Past chrono's last representable date.
    pub fn next_business_day(&self, date: NaiveDate) -> NaiveDate {
        let mut day = date;
        loop {
            day = day
                .checked_add_days(Days::new(1))
                .expect("date within chrono's supported range");
            if self.is_business_day(day) {
                return day;
            }
        }
    }

    /// Same clock time on the `days`-th following business day, after moving
    /// `start` to the next opening if it is outside business time.
    pub fn add_business_days(&self, start: NaiveDateTime, days: u32) -> NaiveDateTime {
        let from = self.next_business_time(start);
        let mut date = from.date();
        for _ in 0..days {
            date = self.next_business_day(date);
        }
        date.and_time(from.time())
    }

    /// Counts only time inside the business window of business days.
    pub fn add_business_hours(&self, start: NaiveDateTime, hours: u32) -> NaiveDateTime {
        self.add_business_time(start, TimeDelta::hours(i64::from(hours)))
    }

    fn add_business_time(&self, start: NaiveDateTime, amount: TimeDelta) -> NaiveDateTime {
        let mut at = self.next_business_time(start);
        let mut remaining = amount;
        loop {
            let left_today = at.date().and_time(self.closes_at) - at;
            if remaining <= left_today {
                return at + remaining;
            }
            remaining -= left_today;
            at = self.next_business_day(at.date()).and_time(self.opens_at);
        }
    }

    /// Whole business days from `a` to `b`: the largest `n` with
    /// `add_business_days(a, n) <= b`; 0 when `b` is not after `a`.
    pub fn business_days_between(&self, a: NaiveDateTime, b: NaiveDateTime) -> u32 {
        let from = self.next_business_time(a);
        let mut date = from.date();
        let mut count = 0;
        loop {
            date = self.next_business_day(date);
            if date.and_time(from.time()) > b {
                return count;
            }
            count += 1;
        }
    }

    /// School days in `(a, b]`: with `a` the last day a device was seen and
    /// `b` today, how many school days it has been silent for.
    pub fn school_days_between(&self, a: NaiveDate, b: NaiveDate) -> u32 {
        a.iter_days()
            .skip(1)
            .take_while(|&d| d <= b)
            .filter(|&d| self.is_school_day(d))
            .count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn dt(y: i32, m: u32, day: u32, h: u32, min: u32) -> NaiveDateTime {
        d(y, m, day).and_hms_opt(h, min, 0).unwrap()
    }

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    const METZ: Calendar = Calendar::AlsaceMoselle;
    const LYON: Calendar = Calendar::National;

    #[test]
    fn easter_table() {
        let cases = [
            (2024, d(2024, 3, 31)),
            (2025, d(2025, 4, 20)),
            (2026, d(2026, 4, 5)),
            (2027, d(2027, 3, 28)),
            (2028, d(2028, 4, 16)),
            (2029, d(2029, 4, 1)),
            (2030, d(2030, 4, 21)),
            // Extremes of the Gregorian range: earliest and latest possible dates.
            (1818, d(1818, 3, 22)),
            (2285, d(2285, 3, 22)),
            (1943, d(1943, 4, 25)),
            (2038, d(2038, 4, 25)),
            (2000, d(2000, 4, 23)),
        ];
        for (year, expected) in cases {
            assert_eq!(easter_sunday(year), expected, "year {year}");
            assert_eq!(expected.weekday(), Weekday::Sun, "year {year}");
        }
    }

    #[test]
    fn ascension_and_whit_monday_table_both_calendars() {
        // (year, Good Friday, Easter Monday, Ascension, Whit Monday)
        let cases = [
            (
                2024,
                d(2024, 3, 29),
                d(2024, 4, 1),
                d(2024, 5, 9),
                d(2024, 5, 20),
            ),
            (
                2025,
                d(2025, 4, 18),
                d(2025, 4, 21),
                d(2025, 5, 29),
                d(2025, 6, 9),
            ),
            (
                2026,
                d(2026, 4, 3),
                d(2026, 4, 6),
                d(2026, 5, 14),
                d(2026, 5, 25),
            ),
            (
                2027,
                d(2027, 3, 26),
                d(2027, 3, 29),
                d(2027, 5, 6),
                d(2027, 5, 17),
            ),
            (
                2028,
                d(2028, 4, 14),
                d(2028, 4, 17),
                d(2028, 5, 25),
                d(2028, 6, 5),
            ),
            (
                2029,
                d(2029, 3, 30),
                d(2029, 4, 2),
                d(2029, 5, 10),
                d(2029, 5, 21),
            ),
            (
                2030,
                d(2030, 4, 19),
                d(2030, 4, 22),
                d(2030, 5, 30),
                d(2030, 6, 10),
            ),
        ];
        for (year, good_friday, easter_monday, ascension, whit_monday) in cases {
            for cal in [LYON, METZ] {
                assert_eq!(
                    cal.holiday_name(easter_monday),
                    Some("Lundi de Pâques"),
                    "{year} {cal:?}"
                );
                assert_eq!(
                    cal.holiday_name(ascension),
                    Some("Ascension"),
                    "{year} {cal:?}"
                );
                assert_eq!(
                    cal.holiday_name(whit_monday),
                    Some("Lundi de Pentecôte"),
                    "{year} {cal:?}"
                );
                assert!(!cal.is_business_day(ascension), "{year} {cal:?}");
                assert!(!cal.is_business_day(whit_monday), "{year} {cal:?}");
            }
            assert_eq!(
                METZ.holiday_name(good_friday),
                Some("Vendredi saint"),
                "{year}"
            );
            assert_eq!(LYON.holiday_name(good_friday), None, "{year}");
            assert!(LYON.is_business_day(good_friday), "{year}");
        }
    }

    #[test]
    fn holiday_lists_per_calendar_and_year() {
        for year in 2024..=2030 {
            let national = LYON.public_holidays(year);
            let local = METZ.public_holidays(year);
            assert_eq!(national.len(), 11, "{year}");
            assert_eq!(local.len(), 13, "{year}");
            assert!(
                national.windows(2).all(|w| w[0].0 <= w[1].0),
                "{year} sorted"
            );
            assert!(local.windows(2).all(|w| w[0].0 <= w[1].0), "{year} sorted");
            assert!(
                national.iter().all(|h| local.contains(h)),
                "{year} superset"
            );
            assert_eq!(national[0], (d(year, 1, 1), "Jour de l'an"));
            assert_eq!(local.last(), Some(&(d(year, 12, 26), "Saint-Étienne")));
        }
    }

    #[test]
    fn holiday_name_table() {
        let cases = [
            (d(2026, 1, 1), LYON, Some("Jour de l'an")),
            (d(2026, 5, 1), LYON, Some("Fête du Travail")),
            (d(2026, 5, 8), LYON, Some("Victoire 1945")),
            (d(2026, 7, 14), LYON, Some("Fête nationale")),
            (d(2026, 8, 15), LYON, Some("Assomption")),
            (d(2026, 11, 1), LYON, Some("Toussaint")),
            (d(2026, 11, 11), LYON, Some("Armistice")),
            (d(2026, 12, 25), LYON, Some("Noël")),
            (d(2026, 12, 26), LYON, None),
            (d(2026, 12, 26), METZ, Some("Saint-Étienne")),
            (d(2026, 4, 3), METZ, Some("Vendredi saint")),
            (d(2026, 4, 2), METZ, None),
            // 2008: Ascension fell on 1 May; the fixed feast is listed first.
            (d(2008, 5, 1), LYON, Some("Fête du Travail")),
        ];
        for (date, cal, expected) in cases {
            assert_eq!(cal.holiday_name(date), expected, "{date} {cal:?}");
            assert_eq!(
                cal.is_public_holiday(date),
                expected.is_some(),
                "{date} {cal:?}"
            );
        }
        assert_eq!(
            LYON.public_holidays(2008)
                .iter()
                .filter(|h| h.0 == d(2008, 5, 1))
                .count(),
            2
        );
    }

    #[test]
    fn business_day_table() {
        let cases = [
            (d(2026, 4, 2), LYON, true),  // Thursday
            (d(2026, 4, 3), LYON, true),  // Good Friday, national calendar
            (d(2026, 4, 3), METZ, false), // Good Friday, Alsace-Moselle
            (d(2026, 4, 4), LYON, false), // Saturday
            (d(2026, 4, 5), METZ, false), // Easter Sunday
            (d(2026, 4, 6), LYON, false), // Easter Monday
            (d(2025, 12, 26), LYON, true),
            (d(2025, 12, 26), METZ, false),
            (d(2026, 5, 1), METZ, false),
        ];
        for (date, cal, expected) in cases {
            assert_eq!(cal.is_business_day(date), expected, "{date} {cal:?}");
        }
    }

    #[test]
    fn calendar_for_departement_table() {
        let cases = [
            ("57", METZ),
            ("057", METZ),
            (" 57 ", METZ),
            ("67", METZ),
            ("068", METZ),
            ("69", LYON),
            ("069", LYON),
            ("75", LYON),
            ("971", LYON),
            ("570", LYON),
            ("5", LYON),
            ("", LYON),
        ];
        for (dep, expected) in cases {
            assert_eq!(Calendar::for_departement(dep), expected, "{dep:?}");
        }
        assert_eq!(Calendar::for_uai(&Uai::parse("0570001S").unwrap()), METZ);
        assert_eq!(Calendar::for_uai(&Uai::parse("0750655E").unwrap()), LYON);
    }

    const HOLIDAYS_CSV: &str = "\u{feff}zone,start,end,description
# Toussaint 2025-2026
Zone A,2025-10-18,2025-11-03,Vacances de la Toussaint
B,2025-10-18,2025-11-03,Vacances de la Toussaint

\"C\",2026-02-21,2026-03-09,\"Vacances d'hiver, zone C\"
A,2026-04-04,2026-04-20,Vacances de printemps
";

    #[test]
    fn school_holidays_parse_and_contains() {
        let holidays = SchoolHolidays::parse_csv(HOLIDAYS_CSV).unwrap();
        assert_eq!(holidays.periods().len(), 4);
        assert_eq!(holidays.periods()[2].zone, "C");
        assert_eq!(
            holidays.periods()[2].description,
            "Vacances d'hiver, zone C"
        );
        let cases = [
            ("A", d(2025, 10, 17), false), // last day of class
            ("A", d(2025, 10, 18), true),  // start is inclusive
            ("zone a", d(2025, 11, 2), true),
            ("A", d(2025, 11, 3), false), // end is the day classes resume
            ("B", d(2025, 10, 25), true),
            ("Zone C", d(2025, 10, 25), false),
            ("C", d(2026, 3, 1), true),
            ("A", d(2026, 3, 1), false),
            ("A", d(2026, 4, 10), true),
            ("Corse", d(2026, 4, 10), false),
        ];
        for (zone, date, expected) in cases {
            assert_eq!(holidays.contains(zone, date), expected, "{zone} {date}");
        }
        assert_eq!(
            holidays
                .period_at("a", d(2026, 4, 10))
                .map(|p| p.description.as_str()),
            Some("Vacances de printemps")
        );
    }

    #[test]
    fn school_holidays_errors_carry_line_numbers() {
        let cases = [
            (
                "A,2025-10-18,2025-11-03",
                CalendarError::CsvColumns { line: 1, found: 3 },
            ),
            (
                "zone,start,end,description\nA,18/10/2025,2025-11-03,x",
                CalendarError::CsvDate {
                    line: 2,
                    column: "start",
                    value: "18/10/2025".into(),
                },
            ),
            (
                "\n\nA,2025-10-18,2025-11-31,x",
                CalendarError::CsvDate {
                    line: 3,
                    column: "end",
                    value: "2025-11-31".into(),
                },
            ),
            (
                "# c\nA,2025-10-18,2025-10-18,x",
                CalendarError::CsvEndNotAfterStart {
                    line: 2,
                    start: d(2025, 10, 18),
                    end: d(2025, 10, 18),
                },
            ),
            (
                " ,2025-10-18,2025-11-03,x",
                CalendarError::CsvEmptyZone { line: 1 },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(SchoolHolidays::parse_csv(text), Err(expected), "{text:?}");
        }
        let message = SchoolHolidays::parse_csv("A,2025-10-18,bad,x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "school holidays line 1: end \"bad\" is not an ISO date (YYYY-MM-DD)"
        );
        assert!(SchoolHolidays::parse_csv("").unwrap().is_empty());
    }

    #[test]
    fn business_hours_must_be_a_forward_window() {
        let cases = [
            (t(8, 0), t(18, 0), true),
            (t(8, 30), t(17, 30), true),
            (t(18, 0), t(8, 0), false),
            (t(9, 0), t(9, 0), false),
        ];
        for (opens_at, closes_at, ok) in cases {
            let result = BusinessCalendar::new(LYON).with_hours(opens_at, closes_at);
            assert_eq!(result.is_ok(), ok, "{opens_at}–{closes_at}");
        }
    }

    #[test]
    fn add_business_days_table() {
        let cases = [
            // The domain example: GTR 2 business days from Thursday 2 April 2026 16:00.
            (METZ, dt(2026, 4, 2, 16, 0), 2, dt(2026, 4, 8, 16, 0)),
            (LYON, dt(2026, 4, 2, 16, 0), 2, dt(2026, 4, 7, 16, 0)),
            (LYON, dt(2026, 4, 2, 16, 0), 0, dt(2026, 4, 2, 16, 0)),
            (LYON, dt(2026, 4, 2, 16, 0), 1, dt(2026, 4, 3, 16, 0)),
            (METZ, dt(2026, 4, 2, 16, 0), 1, dt(2026, 4, 7, 16, 0)),
            // Before opening: counts from 08:00 that day.
            (LYON, dt(2026, 4, 2, 6, 30), 1, dt(2026, 4, 3, 8, 0)),
            // After closing (and at closing): counts from the next opening.
            (LYON, dt(2026, 4, 2, 20, 0), 1, dt(2026, 4, 7, 8, 0)),
            (LYON, dt(2026, 4, 2, 18, 0), 1, dt(2026, 4, 7, 8, 0)),
            // Saturday: from Monday 08:00.
            (LYON, dt(2026, 3, 28, 11, 0), 2, dt(2026, 4, 1, 8, 0)),
            (LYON, dt(2026, 3, 28, 11, 0), 0, dt(2026, 3, 30, 8, 0)),
            // Ascension bridge: Thursday 14 May 2026 is off.
            (LYON, dt(2026, 5, 13, 9, 0), 1, dt(2026, 5, 15, 9, 0)),
            // Christmas 2025: Thursday 25 off everywhere, Friday 26 only in Metz.
            (LYON, dt(2025, 12, 24, 10, 0), 1, dt(2025, 12, 26, 10, 0)),
            (METZ, dt(2025, 12, 24, 10, 0), 1, dt(2025, 12, 29, 10, 0)),
            // New year across the year boundary.
            (LYON, dt(2029, 12, 31, 10, 0), 1, dt(2030, 1, 2, 10, 0)),
        ];
        for (cal, start, days, expected) in cases {
            let bc = BusinessCalendar::new(cal);
            assert_eq!(
                bc.add_business_days(start, days),
                expected,
                "{cal:?} {start} + {days}d"
            );
        }
    }

    #[test]
    fn add_business_hours_table() {
        let cases = [
            // Friday 17:00 + 4h: 1h on Friday, 3h on Monday.
            (LYON, dt(2026, 3, 27, 17, 0), 4, dt(2026, 3, 30, 11, 0)),
            (LYON, dt(2026, 3, 27, 17, 0), 1, dt(2026, 3, 27, 18, 0)),
            (LYON, dt(2026, 3, 27, 9, 0), 0, dt(2026, 3, 27, 9, 0)),
            (LYON, dt(2026, 3, 27, 19, 0), 0, dt(2026, 3, 30, 8, 0)),
            (LYON, dt(2026, 3, 29, 12, 0), 4, dt(2026, 3, 30, 12, 0)),
            (LYON, dt(2026, 3, 30, 7, 0), 10, dt(2026, 3, 30, 18, 0)),
            (LYON, dt(2026, 3, 30, 7, 0), 11, dt(2026, 3, 31, 9, 0)),
            // 5h30 Monday, 10h Tuesday, 9h30 Wednesday.
            (LYON, dt(2026, 3, 30, 12, 30), 25, dt(2026, 4, 1, 17, 30)),
            // 1 May 2026 is a Friday: Thursday 16:00 + 4h ends Monday 4 May 10:00.
            (LYON, dt(2026, 4, 30, 16, 0), 4, dt(2026, 5, 4, 10, 0)),
            (METZ, dt(2026, 4, 30, 16, 0), 4, dt(2026, 5, 4, 10, 0)),
            // 1 May 2025 is a Thursday: Wednesday 17:00 + 2h ends Friday 09:00.
            (LYON, dt(2025, 4, 30, 17, 0), 2, dt(2025, 5, 2, 9, 0)),
            // Christmas 2025: Wednesday 24 at 17:00 + 3h.
            (LYON, dt(2025, 12, 24, 17, 0), 3, dt(2025, 12, 26, 10, 0)),
            (METZ, dt(2025, 12, 24, 17, 0), 3, dt(2025, 12, 29, 10, 0)),
            // Christmas 2028: Monday 25 and Tuesday 26.
            (LYON, dt(2028, 12, 22, 16, 0), 4, dt(2028, 12, 26, 10, 0)),
            (METZ, dt(2028, 12, 22, 16, 0), 4, dt(2028, 12, 27, 10, 0)),
        ];
        for (cal, start, hours, expected) in cases {
            let bc = BusinessCalendar::new(cal);
            assert_eq!(
                bc.add_business_hours(start, hours),
                expected,
                "{cal:?} {start} + {hours}h"
            );
        }
    }

    #[test]
    fn add_business_hours_custom_window() {
        let bc = BusinessCalendar::new(LYON)
            .with_hours(t(8, 30), t(17, 30))
            .unwrap();
        let cases = [
            (dt(2026, 3, 27, 17, 0), 4, dt(2026, 3, 30, 12, 0)),
            (dt(2026, 3, 27, 8, 0), 9, dt(2026, 3, 27, 17, 30)),
            (dt(2026, 3, 27, 17, 45), 1, dt(2026, 3, 30, 9, 30)),
        ];
        for (start, hours, expected) in cases {
            assert_eq!(
                bc.add_business_hours(start, hours),
                expected,
                "{start} + {hours}h"
            );
        }
    }

    #[test]
    fn business_days_between_table() {
        let cases = [
            (METZ, dt(2026, 4, 2, 16, 0), dt(2026, 4, 8, 16, 0), 2),
            (METZ, dt(2026, 4, 2, 16, 0), dt(2026, 4, 8, 15, 59), 1),
            (LYON, dt(2026, 4, 2, 16, 0), dt(2026, 4, 8, 15, 59), 2),
            (LYON, dt(2026, 4, 2, 16, 0), dt(2026, 4, 2, 17, 0), 0),
            (LYON, dt(2026, 4, 8, 16, 0), dt(2026, 4, 2, 16, 0), 0),
            (LYON, dt(2026, 4, 4, 10, 0), dt(2026, 4, 7, 8, 0), 0), // from Tuesday 08:00 (Easter Monday)
            (LYON, dt(2026, 4, 4, 10, 0), dt(2026, 4, 8, 8, 0), 1),
        ];
        for (cal, a, b, expected) in cases {
            let bc = BusinessCalendar::new(cal);
            assert_eq!(
                bc.business_days_between(a, b),
                expected,
                "{cal:?} {a} → {b}"
            );
        }
    }

    #[test]
    fn business_days_between_inverts_add_business_days() {
        for cal in [LYON, METZ] {
            let bc = BusinessCalendar::new(cal);
            let mut start = dt(2025, 12, 20, 7, 0);
            while start < dt(2026, 6, 1, 0, 0) {
                for n in [0, 1, 2, 5, 13] {
                    let due = bc.add_business_days(start, n);
                    assert_eq!(
                        bc.business_days_between(start, due),
                        n,
                        "{cal:?} {start} +{n}"
                    );
                }
                start += TimeDelta::hours(7);
            }
        }
    }

    #[test]
    fn school_days_between_table() {
        let holidays = SchoolHolidays::parse_csv(HOLIDAYS_CSV).unwrap();
        let zone_a = BusinessCalendar::new(LYON).with_school_holidays(holidays.clone(), "A");
        let zone_c = BusinessCalendar::new(LYON).with_school_holidays(holidays, "Zone C");
        let plain = BusinessCalendar::new(LYON);
        let cases = [
            // Friday → Monday: only Monday counts.
            (&plain, d(2026, 3, 27), d(2026, 3, 30), 1),
            (&plain, d(2026, 3, 30), d(2026, 3, 30), 0),
            (&plain, d(2026, 3, 30), d(2026, 3, 27), 0),
            // Silent from Friday before Toussaint holidays to their end, zone A:
            // 20 Oct–2 Nov are holidays, Monday 3 Nov counts.
            (&zone_a, d(2025, 10, 17), d(2025, 11, 3), 1),
            (&plain, d(2025, 10, 17), d(2025, 11, 3), 11),
            // Zone C was not on holiday then.
            (&zone_c, d(2025, 10, 17), d(2025, 11, 3), 11),
            // Spring 2026 zone A: Friday 3, then holidays 4–19 April, then 20 and 21.
            (&zone_a, d(2026, 4, 2), d(2026, 4, 21), 3),
            (&plain, d(2026, 4, 2), d(2026, 4, 21), 12),
        ];
        for (bc, a, b, expected) in cases {
            assert_eq!(bc.school_days_between(a, b), expected, "{a} → {b}");
        }
    }

    #[test]
    fn business_time_predicates() {
        let bc = BusinessCalendar::new(METZ);
        let cases = [
            (dt(2026, 4, 2, 8, 0), true),
            (dt(2026, 4, 2, 7, 59), false),
            (dt(2026, 4, 2, 17, 59), true),
            (dt(2026, 4, 2, 18, 0), false),
            (dt(2026, 4, 3, 10, 0), false), // Good Friday in Metz
        ];
        for (at, expected) in cases {
            assert_eq!(bc.is_business_time(at), expected, "{at}");
        }
        assert_eq!(
            bc.next_business_time(dt(2026, 4, 2, 18, 0)),
            dt(2026, 4, 7, 8, 0)
        );
        assert_eq!(bc.next_business_day(d(2026, 4, 2)), d(2026, 4, 7));
    }
}
