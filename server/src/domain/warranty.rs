//! Warranty of a device from its contract terms and its delivery and
//! acceptance dates: when it started, when it ends, and whether it ends soon
//! (to plan budgets before the warranty runs out).
//!
//! This module must never do IO or read the clock: callers pass `today`
//! (a local Europe/Paris date).
//!
//! Decisions:
//! - `end` is exclusive: the first day no longer covered. A 36-month warranty
//!   from 2024-09-02 covers up to 2027-09-01 and `end` is 2027-09-02.
//! - Months are added with chrono's `checked_add_months`, which clamps to the
//!   last day of a shorter month (31 January + 1 month = 28/29 February).
//! - Terms starting at acceptance (*admission*, VSR) with no acceptance date
//!   fall back to the delivery date, and `basis` says so: delivery is the
//!   earliest the warranty can start, so the fallback never overstates cover.
//!   Terms starting at delivery with no delivery date are `Unknown`, even if
//!   an acceptance date exists: using the later acceptance date would show
//!   cover that may have ended.
//! - Battery: `battery_months: None` means the battery has the main term.
//! - Status: `Expired` from `end` on; `EndingSoon` when `end` is at most
//!   [`ENDING_SOON_DAYS`] days after `today`; `InWarranty` otherwise, including
//!   before `start` (before acceptance the contract holder answers for the
//!   device anyway); `Unknown` when there is no start date or the end is past
//!   chrono's range.

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

/// How close to its end a warranty is flagged, in days.
pub const ENDING_SOON_DAYS: i64 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarrantyStart {
    Delivery,
    Acceptance,
}

/// *Garantie sur site* or *retour atelier*: decides whether a ticket sends a
/// technician or a parcel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceMode {
    OnSite,
    ReturnToBase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WarrantyTerms {
    pub months: u32,
    pub starts_at: WarrantyStart,
    pub battery_months: Option<u32>,
    pub service: ServiceMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarrantyStatus {
    InWarranty,
    EndingSoon,
    Expired,
    Unknown,
}

/// Which date the warranty was counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarrantyBasis {
    Delivery,
    Acceptance,
    DeliveryBecauseNotAccepted,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Warranty {
    pub start: Option<NaiveDate>,
    /// Exclusive: first day not covered.
    pub end: Option<NaiveDate>,
    /// Exclusive, like `end`.
    pub battery_end: Option<NaiveDate>,
    pub status: WarrantyStatus,
    pub battery_status: WarrantyStatus,
    pub basis: WarrantyBasis,
}

pub fn compute_warranty(
    terms: &WarrantyTerms,
    delivered_on: Option<NaiveDate>,
    accepted_on: Option<NaiveDate>,
    today: NaiveDate,
) -> Warranty {
    let (start, basis) = match (terms.starts_at, delivered_on, accepted_on) {
        (WarrantyStart::Acceptance, _, Some(accepted)) => {
            (Some(accepted), WarrantyBasis::Acceptance)
        }
        (WarrantyStart::Acceptance, Some(delivered), None) => {
            (Some(delivered), WarrantyBasis::DeliveryBecauseNotAccepted)
        }
        (WarrantyStart::Delivery, Some(delivered), _) => (Some(delivered), WarrantyBasis::Delivery),
        (_, None, _) => (None, WarrantyBasis::Unknown),
    };
    let end = start.and_then(|s| s.checked_add_months(Months::new(terms.months)));
    let battery_end = match terms.battery_months {
        Some(months) => start.and_then(|s| s.checked_add_months(Months::new(months))),
        None => end,
    };
    Warranty {
        start,
        end,
        battery_end,
        status: status_at(end, today),
        battery_status: status_at(battery_end, today),
        basis,
    }
}

fn status_at(end: Option<NaiveDate>, today: NaiveDate) -> WarrantyStatus {
    match end {
        None => WarrantyStatus::Unknown,
        Some(end) if today >= end => WarrantyStatus::Expired,
        Some(end) if (end - today).num_days() <= ENDING_SOON_DAYS => WarrantyStatus::EndingSoon,
        Some(_) => WarrantyStatus::InWarranty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error as DeError, StrDeserializer};

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn terms(months: u32, starts_at: WarrantyStart, battery_months: Option<u32>) -> WarrantyTerms {
        WarrantyTerms {
            months,
            starts_at,
            battery_months,
            service: ServiceMode::OnSite,
        }
    }

    use WarrantyBasis as B;
    use WarrantyStart::{Acceptance, Delivery};
    use WarrantyStatus::{EndingSoon, Expired, InWarranty, Unknown};

    #[test]
    fn start_and_basis_table() {
        let delivered = Some(d(2024, 9, 2));
        let accepted = Some(d(2024, 9, 20));
        let today = d(2025, 6, 1);
        // (starts_at, delivered, accepted, start, end, basis, status)
        let cases = [
            (
                Delivery,
                delivered,
                accepted,
                delivered,
                Some(d(2027, 9, 2)),
                B::Delivery,
                InWarranty,
            ),
            (
                Acceptance,
                delivered,
                accepted,
                accepted,
                Some(d(2027, 9, 20)),
                B::Acceptance,
                InWarranty,
            ),
            (
                Acceptance,
                delivered,
                None,
                delivered,
                Some(d(2027, 9, 2)),
                B::DeliveryBecauseNotAccepted,
                InWarranty,
            ),
            (
                Acceptance,
                None,
                accepted,
                accepted,
                Some(d(2027, 9, 20)),
                B::Acceptance,
                InWarranty,
            ),
            (Delivery, None, accepted, None, None, B::Unknown, Unknown),
            (Delivery, None, None, None, None, B::Unknown, Unknown),
            (Acceptance, None, None, None, None, B::Unknown, Unknown),
        ];
        for (starts_at, delivered_on, accepted_on, start, end, basis, status) in cases {
            let w = compute_warranty(
                &terms(36, starts_at, None),
                delivered_on,
                accepted_on,
                today,
            );
            let label = format!("{starts_at:?} {delivered_on:?} {accepted_on:?}");
            assert_eq!(w.start, start, "{label}");
            assert_eq!(w.end, end, "{label}");
            assert_eq!(w.basis, basis, "{label}");
            assert_eq!(w.status, status, "{label}");
            assert_eq!(w.battery_end, end, "{label}: battery follows the main term");
            assert_eq!(w.battery_status, status, "{label}");
        }
    }

    #[test]
    fn battery_term_shorter_than_main() {
        let t = terms(36, Delivery, Some(12));
        let delivered = Some(d(2024, 9, 2));
        // (today, status, battery_status)
        let cases = [
            (d(2024, 9, 2), InWarranty, InWarranty),
            (d(2025, 6, 3), InWarranty, InWarranty), // battery end in 91 days
            (d(2025, 6, 4), InWarranty, EndingSoon), // battery end in 90 days
            (d(2025, 9, 1), InWarranty, EndingSoon),
            (d(2025, 9, 2), InWarranty, Expired),
            (d(2027, 9, 2), Expired, Expired),
        ];
        for (today, status, battery_status) in cases {
            let w = compute_warranty(&t, delivered, None, today);
            assert_eq!(w.battery_end, Some(d(2025, 9, 2)));
            assert_eq!(w.end, Some(d(2027, 9, 2)));
            assert_eq!(
                (w.status, w.battery_status),
                (status, battery_status),
                "{today}"
            );
        }
    }

    #[test]
    fn month_end_clamps_table() {
        let cases = [
            (d(2024, 1, 31), 1, d(2024, 2, 29)),
            (d(2023, 1, 31), 1, d(2023, 2, 28)),
            (d(2024, 2, 29), 12, d(2025, 2, 28)),
            (d(2024, 2, 29), 48, d(2028, 2, 29)),
            (d(2024, 8, 31), 36, d(2027, 8, 31)),
            (d(2024, 3, 31), 1, d(2024, 4, 30)),
            (d(2024, 12, 15), 60, d(2029, 12, 15)),
            (d(2024, 5, 10), 0, d(2024, 5, 10)),
        ];
        for (start, months, end) in cases {
            let w = compute_warranty(&terms(months, Delivery, None), Some(start), None, start);
            assert_eq!(w.end, Some(end), "{start} + {months} months");
        }
    }

    #[test]
    fn ninety_day_boundary_table() {
        let t = terms(36, Delivery, None);
        let delivered = Some(d(2024, 9, 2));
        let end = d(2027, 9, 2);
        let cases = [
            (end - chrono::TimeDelta::days(91), InWarranty),
            (end - chrono::TimeDelta::days(90), EndingSoon),
            (end - chrono::TimeDelta::days(1), EndingSoon),
            (end, Expired),
            (end + chrono::TimeDelta::days(400), Expired),
            // Before start still counts as covered.
            (d(2024, 8, 1), InWarranty),
        ];
        for (today, status) in cases {
            assert_eq!(
                compute_warranty(&t, delivered, None, today).status,
                status,
                "{today}"
            );
        }
    }

    #[test]
    fn zero_months_and_out_of_range() {
        let start = d(2024, 5, 10);
        let w = compute_warranty(&terms(0, Delivery, Some(0)), Some(start), None, start);
        assert_eq!((w.status, w.battery_status), (Expired, Expired));

        let w = compute_warranty(
            &terms(u32::MAX, Delivery, Some(12)),
            Some(start),
            None,
            start,
        );
        assert_eq!((w.end, w.status), (None, Unknown));
        assert_eq!(
            (w.battery_end, w.battery_status),
            (Some(d(2025, 5, 10)), InWarranty)
        );
    }

    #[test]
    fn enums_use_snake_case_names() {
        fn parse<T: for<'de> Deserialize<'de>>(s: &str) -> T {
            let de: StrDeserializer<DeError> = s.into_deserializer();
            T::deserialize(de).unwrap()
        }
        assert_eq!(parse::<WarrantyStatus>("ending_soon"), EndingSoon);
        assert_eq!(parse::<WarrantyStatus>("in_warranty"), InWarranty);
        assert_eq!(
            parse::<WarrantyBasis>("delivery_because_not_accepted"),
            B::DeliveryBecauseNotAccepted
        );
        assert_eq!(parse::<WarrantyStart>("acceptance"), Acceptance);
        assert_eq!(
            parse::<ServiceMode>("return_to_base"),
            ServiceMode::ReturnToBase
        );
        assert_eq!(parse::<ServiceMode>("on_site"), ServiceMode::OnSite);
    }
}
