//! Procurement: what the contracts, orders and deliveries say, parsed and validated
//! before the store records them (delivery manifests, the organisation/contract
//! dataset).
//!
//! Pure: this tree never does IO, never reads the clock and never touches the
//! database. Callers read files or request bodies and pass the text in; the store
//! decides what is already known.

pub mod dataset;
pub mod manifest;

use chrono::{DateTime, Datelike as _, NaiveDate, TimeZone as _, Utc, Weekday};
use serde::Serialize;

use crate::domain::{Warranty, WarrantyTerms, compute_warranty};

pub use dataset::{Dataset, DatasetError, Problem, parse_dataset};
pub use manifest::{
    Delivery, DeliveryLine, ImportPlan, ImportReport, ManifestError, OrderRef, ParsedManifest,
    References, RowError, RowProblem, parse_manifest, plan_import,
};

/// The demo's organisations, schools, contract, lots and orders (a fictional
/// Département's groupement de commandes), embedded so the binary needs no files.
pub const DEMO_DATASET: &str = include_str!("../../demo-data/dataset.toml");
/// The demo's delivery manifest: the simulated fleet's serials and a few never seen.
pub const DEMO_DELIVERIES: &str = include_str!("../../demo-data/deliveries.csv");

/// A delivery with its lot's terms and the device reporting its serial, if any, as
/// the store reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredDevice {
    pub delivery: Delivery,
    pub lot_title: String,
    /// The contract holder's company name.
    pub holder: String,
    pub terms: WarrantyTerms,
    pub device_id: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// A device's warranty as the API shows it: computed on every read from the lot's
/// current terms, so changing the terms changes every warranty at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceWarranty {
    pub serial: String,
    pub device_id: Option<String>,
    pub model: String,
    pub order_reference: String,
    pub contract: String,
    pub lot: u32,
    pub lot_title: String,
    pub holder: String,
    pub site: String,
    pub cart: Option<String>,
    pub delivered_on: NaiveDate,
    pub accepted_on: Option<NaiveDate>,
    pub terms: WarrantyTerms,
    #[serde(flatten)]
    pub warranty: Warranty,
}

pub fn device_warranty(d: &DeliveredDevice, today: NaiveDate) -> DeviceWarranty {
    let l = &d.delivery;
    DeviceWarranty {
        serial: l.serial.clone(),
        device_id: d.device_id.clone(),
        model: l.model.clone(),
        order_reference: l.order_reference.clone(),
        contract: l.contract.clone(),
        lot: l.lot,
        lot_title: d.lot_title.clone(),
        holder: d.holder.clone(),
        site: l.site.clone(),
        cart: l.cart.clone(),
        delivered_on: l.delivered_on,
        accepted_on: l.accepted_on,
        terms: d.terms,
        warranty: compute_warranty(&d.terms, Some(l.delivered_on), l.accepted_on, today),
    }
}

fn last_sunday(year: i32, month: u32) -> NaiveDate {
    let mut day = NaiveDate::from_ymd_opt(year, month + 1, 1)
        .expect("March and October are followed by a month")
        .pred_opt()
        .expect("a month has a last day");
    while day.weekday() != Weekday::Sun {
        day = day.pred_opt().expect("a month has a Sunday");
    }
    day
}

/// Today's date in metropolitan France (the EU summer-time rule: UTC+2 from the last
/// Sunday of March 01:00 UTC to the last Sunday of October 01:00 UTC, UTC+1
/// otherwise), without a timezone database. Warranty days are French days: near
/// midnight the UTC date would be a day off.
pub fn today_in_france(now: DateTime<Utc>) -> NaiveDate {
    france_local_time(now).date()
}

/// Wall-clock time in metropolitan France (see [`today_in_france`]).
pub fn france_local_time(now: DateTime<Utc>) -> chrono::NaiveDateTime {
    (now + france_offset(now)).naive_utc()
}

/// The instant a French wall-clock time denotes. In the autumn's repeated hour the
/// earlier instant is taken; the spring's skipped hour maps an hour later.
pub fn utc_from_france(local: chrono::NaiveDateTime) -> DateTime<Utc> {
    // Guess with winter time, then correct with the offset in force at that instant.
    let guess = Utc.from_utc_datetime(&local) - chrono::TimeDelta::hours(1);
    Utc.from_utc_datetime(&local) - france_offset(guess)
}

fn france_offset(now: DateTime<Utc>) -> chrono::TimeDelta {
    let year = now.year();
    let at_one =
        |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(1, 0, 0).expect("01:00 exists"));
    let summer = now >= at_one(last_sunday(year, 3)) && now < at_one(last_sunday(year, 10));
    chrono::TimeDelta::hours(if summer { 2 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_wall_clock_converts_both_ways_across_summer_time() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        for utc in [
            "2026-01-15T08:30:00Z",
            "2026-07-01T15:00:00Z",
            "2026-03-29T00:59:00Z",
            "2026-03-29T01:00:00Z",
            "2026-10-25T02:00:00Z",
        ] {
            let t = at(utc);
            assert_eq!(utc_from_france(france_local_time(t)), t, "{utc}");
        }
        assert_eq!(
            france_local_time(at("2026-07-01T15:00:00Z")).to_string(),
            "2026-07-01 17:00:00"
        );
    }

    #[test]
    fn today_in_france_follows_summer_time() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        let cases = [
            ("2026-11-25T22:59:00Z", d(2026, 11, 25)),
            ("2026-11-25T23:00:00Z", d(2026, 11, 26)),
            ("2026-07-14T21:59:00Z", d(2026, 7, 14)),
            ("2026-07-14T22:00:00Z", d(2026, 7, 15)),
            // 2026: summer time from 29 March 01:00 UTC to 25 October 01:00 UTC.
            ("2026-03-29T00:59:00Z", d(2026, 3, 29)),
            ("2026-03-28T22:30:00Z", d(2026, 3, 28)),
            ("2026-03-29T22:30:00Z", d(2026, 3, 30)),
            ("2026-10-25T22:30:00Z", d(2026, 10, 25)),
            ("2026-12-31T23:00:00Z", d(2027, 1, 1)),
        ];
        for (now, today) in cases {
            assert_eq!(today_in_france(at(now)), today, "{now}");
        }
    }

    #[test]
    fn the_demo_dataset_and_deliveries_are_valid() {
        let d = parse_dataset(DEMO_DATASET).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            d.organisations
                .iter()
                .filter(|o| o.role == dataset::OrgRole::Member)
                .count()
                >= 3
        );
        assert_eq!(d.sites.len(), 6);
        assert!(d.sites.iter().any(|s| s.departement() == "57"));
        let carts: usize = d.sites.iter().map(|s| s.carts.len()).sum();
        assert_eq!(carts, 2);
        let m = parse_manifest(DEMO_DELIVERIES).unwrap();
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        for n in 0..30 {
            let serial = format!("PARCDEMO{n:04}");
            assert!(m.lines.iter().any(|l| l.serial == serial), "{serial}");
        }
    }
}
