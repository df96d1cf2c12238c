//! Delivery manifests (*bons de livraison* as CSV): one line per delivered device with
//! its serial number, model, purchase order, lot, school (UAI), delivery date, optional
//! acceptance date and optional mobile cart.
//!
//! Two pure steps: [`parse_manifest`] checks each line on its own (fields present,
//! serial not a placeholder, UAI check letter, dates, no serial twice in the file), then
//! [`plan_import`] checks the good lines against what the store already knows
//! ([`References`]: orders, lots, sites, carts, serials already delivered) and sorts
//! them into new, changed and unchanged deliveries. Every refused line becomes a
//! [`RowError`] naming its line number, field and reason; good lines are never held
//! back by bad ones. This module must never do IO: the caller reads the file or the
//! request body and the store loads the references.
//!
//! Decisions:
//! - Columns are found by header name (any order, case-insensitive); `acceptance_date`
//!   and `cart` may be left out. Unknown columns are refused: a misspelt
//!   `acceptance_date` would otherwise drop every acceptance silently.
//! - Separator: `;` when the header has semicolons and no comma (French spreadsheet
//!   exports), `,` otherwise. A UTF-8 byte-order mark is ignored.
//! - Line numbers are the file's, blank lines included (header = line 1); a quoted
//!   field spanning lines counts from the record's first line.
//! - Dates: `YYYY-MM-DD`, or `DD/MM/YYYY` as French documents write them.
//! - `lot`: `2`, `Lot 2` or `lot 2`.
//! - One reason per refused line: the first problem found, fields checked left to
//!   right in [`COLUMNS`] order, then serial duplicates, then references.
//! - A serial listed twice is refused on its second line (the first is kept).
//! - Re-import: a serial already delivered under the same order is updated when the
//!   line differs, and unchanged otherwise; a missing acceptance date or cart keeps the
//!   stored one (acceptance often comes in a later manifest). A serial delivered under
//!   another order is refused: one device cannot have been delivered twice.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::NaiveDate;
use parc_protocol::normalize_serial;
use serde::Serialize;
use thiserror::Error;

use crate::domain::{IdError, Uai};

/// Manifest columns, in the order lines are checked.
pub const COLUMNS: [&str; 8] = [
    "serial",
    "model",
    "order_reference",
    "lot",
    "site_uai",
    "delivery_date",
    "acceptance_date",
    "cart",
];
const OPTIONAL: [&str; 2] = ["acceptance_date", "cart"];

/// A problem with the whole file: nothing can be imported.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    #[error("the manifest is empty: expected a header line ({})", COLUMNS.join(","))]
    Empty,
    #[error("the manifest header lacks column `{0}` (expected: {cols})", cols = COLUMNS.join(","))]
    MissingColumn(&'static str),
    #[error("the manifest header names column `{0}` twice")]
    DuplicateColumn(String),
    #[error("the manifest header has unknown column `{0}` (expected: {cols})", cols = COLUMNS.join(","))]
    UnknownColumn(String),
    #[error("the manifest header is unreadable: {0}")]
    Header(String),
}

/// Why one line was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RowProblem {
    #[error("has {found} fields, the header has {expected}")]
    FieldCount { expected: usize, found: usize },
    #[error("is unreadable CSV: {0}")]
    Unreadable(String),
    #[error("is missing")]
    Missing,
    #[error("{0:?} is a placeholder, not a serial number")]
    PlaceholderSerial(String),
    #[error("{value:?} is not a lot number; write e.g. 2 or \"Lot 2\"")]
    BadLot { value: String },
    #[error("{0}")]
    BadUai(IdError),
    #[error("{value:?} is not a date; write YYYY-MM-DD or DD/MM/YYYY")]
    BadDate { value: String },
    #[error("acceptance {accepted} is before delivery {delivered}")]
    AcceptedBeforeDelivery {
        accepted: NaiveDate,
        delivered: NaiveDate,
    },
    #[error("serial {serial} is already listed on line {first_line}")]
    DuplicateSerial { serial: String, first_line: u64 },
    #[error("order {0:?} is not known")]
    UnknownOrder(String),
    #[error("lot {lot} does not exist in contract {contract}")]
    UnknownLot { contract: String, lot: u32 },
    #[error("order {order} was placed under lot {order_lot}, not lot {lot}")]
    LotMismatch {
        order: String,
        order_lot: u32,
        lot: u32,
    },
    #[error("school {0} is not known")]
    UnknownSite(String),
    #[error("cart {0:?} is not known")]
    UnknownCart(String),
    #[error("cart {cart:?} belongs to school {cart_site}, not {site}")]
    CartElsewhere {
        cart: String,
        cart_site: String,
        site: String,
    },
    #[error("serial {serial} was already delivered under order {order}")]
    DeliveredUnderOtherOrder { serial: String, order: String },
}

impl RowProblem {
    /// Stable machine-readable reason, for the API and tests.
    pub fn code(&self) -> &'static str {
        match self {
            RowProblem::FieldCount { .. } => "field_count",
            RowProblem::Unreadable(_) => "unreadable",
            RowProblem::Missing => "missing",
            RowProblem::PlaceholderSerial(_) => "placeholder_serial",
            RowProblem::BadLot { .. } => "bad_lot",
            RowProblem::BadUai(_) => "bad_uai",
            RowProblem::BadDate { .. } => "bad_date",
            RowProblem::AcceptedBeforeDelivery { .. } => "accepted_before_delivery",
            RowProblem::DuplicateSerial { .. } => "duplicate_serial",
            RowProblem::UnknownOrder(_) => "unknown_order",
            RowProblem::UnknownLot { .. } => "unknown_lot",
            RowProblem::LotMismatch { .. } => "lot_mismatch",
            RowProblem::UnknownSite(_) => "unknown_site",
            RowProblem::UnknownCart(_) => "unknown_cart",
            RowProblem::CartElsewhere { .. } => "cart_elsewhere",
            RowProblem::DeliveredUnderOtherOrder { .. } => "delivered_under_other_order",
        }
    }
}

/// A refused line: where, which field, why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}, {field}: {problem}")]
pub struct RowError {
    pub line: u64,
    /// A column name, or `record` for the line as a whole.
    pub field: &'static str,
    pub problem: RowProblem,
}

impl Serialize for RowError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            line: u64,
            field: &'a str,
            code: &'a str,
            reason: String,
            message: String,
        }
        Wire {
            line: self.line,
            field: self.field,
            code: self.problem.code(),
            reason: self.problem.to_string(),
            message: self.to_string(),
        }
        .serialize(s)
    }
}

/// A line that passed the checks of [`parse_manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryLine {
    pub line: u64,
    /// Normalised with [`normalize_serial`], as device inventories are.
    pub serial: String,
    pub model: String,
    pub order_reference: String,
    pub lot: u32,
    pub site: Uai,
    pub delivered_on: NaiveDate,
    pub accepted_on: Option<NaiveDate>,
    pub cart: Option<String>,
}

/// What [`parse_manifest`] made of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedManifest {
    /// Data lines read (blank lines excluded).
    pub rows: u64,
    pub lines: Vec<DeliveryLine>,
    pub errors: Vec<RowError>,
}

fn cell(record: &csv::StringRecord, col: Option<usize>) -> Option<&str> {
    col.and_then(|i| record.get(i)).filter(|s| !s.is_empty())
}

fn required<'a>(
    record: &'a csv::StringRecord,
    cols: &HashMap<&'static str, usize>,
    name: &'static str,
) -> Result<&'a str, (&'static str, RowProblem)> {
    cell(record, cols.get(name).copied()).ok_or((name, RowProblem::Missing))
}

/// `YYYY-MM-DD` or `DD/MM/YYYY`.
pub fn parse_date(value: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(value, "%d/%m/%Y"))
        .ok()
        // chrono accepts a one-digit year or month; a manifest date never has one.
        .filter(|_| value.len() == 10)
}

/// `2`, `Lot 2`, `lot 2`.
pub fn parse_lot(value: &str) -> Option<u32> {
    let digits = value
        .strip_prefix("Lot")
        .or_else(|| value.strip_prefix("lot"))
        .or_else(|| value.strip_prefix("LOT"))
        .unwrap_or(value)
        .trim();
    digits.parse().ok().filter(|n| *n > 0)
}

fn check_line(
    record: &csv::StringRecord,
    cols: &HashMap<&'static str, usize>,
    header_len: usize,
    line: u64,
) -> Result<DeliveryLine, (&'static str, RowProblem)> {
    if record.len() > header_len {
        return Err((
            "record",
            RowProblem::FieldCount {
                expected: header_len,
                found: record.len(),
            },
        ));
    }
    let raw_serial = required(record, cols, "serial")?;
    let serial = normalize_serial(raw_serial).ok_or_else(|| {
        (
            "serial",
            RowProblem::PlaceholderSerial(raw_serial.to_string()),
        )
    })?;
    let model = required(record, cols, "model")?;
    let order_reference = required(record, cols, "order_reference")?;
    let lot_text = required(record, cols, "lot")?;
    let lot = parse_lot(lot_text).ok_or_else(|| {
        (
            "lot",
            RowProblem::BadLot {
                value: lot_text.to_string(),
            },
        )
    })?;
    let site = Uai::parse(required(record, cols, "site_uai")?)
        .map_err(|e| ("site_uai", RowProblem::BadUai(e)))?;
    let date = |name: &'static str, text: &str| {
        parse_date(text).ok_or_else(|| {
            (
                name,
                RowProblem::BadDate {
                    value: text.to_string(),
                },
            )
        })
    };
    let delivered_on = date("delivery_date", required(record, cols, "delivery_date")?)?;
    let accepted_on = cell(record, cols.get("acceptance_date").copied())
        .map(|t| date("acceptance_date", t))
        .transpose()?;
    if let Some(accepted) = accepted_on.filter(|a| *a < delivered_on) {
        return Err((
            "acceptance_date",
            RowProblem::AcceptedBeforeDelivery {
                accepted,
                delivered: delivered_on,
            },
        ));
    }
    Ok(DeliveryLine {
        line,
        serial,
        model: model.to_string(),
        order_reference: order_reference.to_string(),
        lot,
        site,
        delivered_on,
        accepted_on,
        cart: cell(record, cols.get("cart").copied()).map(str::to_string),
    })
}

/// Checks every line of a manifest on its own. Fails only when the header is unusable.
pub fn parse_manifest(text: &str) -> Result<ParsedManifest, ManifestError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first_line = text.lines().find(|l| !l.trim().is_empty());
    let Some(first_line) = first_line else {
        return Err(ManifestError::Empty);
    };
    let delimiter = if first_line.contains(';') && !first_line.contains(',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| ManifestError::Header(e.to_string()))?
        .clone();
    let mut cols: HashMap<&'static str, usize> = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        let lower = name.to_lowercase();
        let known = COLUMNS
            .iter()
            .find(|c| **c == lower)
            .ok_or_else(|| ManifestError::UnknownColumn(name.to_string()))?;
        if cols.insert(known, i).is_some() {
            return Err(ManifestError::DuplicateColumn(name.to_string()));
        }
    }
    if let Some(missing) = COLUMNS
        .iter()
        .find(|c| !OPTIONAL.contains(c) && !cols.contains_key(*c))
    {
        return Err(ManifestError::MissingColumn(missing));
    }

    // Line numbers from byte offsets: csv's own line count skips blank lines.
    let newlines: Vec<usize> = text.match_indices('\n').map(|(i, _)| i).collect();
    // csv places a record after the blank lines before it: skip them.
    let line_at = |byte: u64| {
        let start = usize::try_from(byte).unwrap_or(usize::MAX).min(text.len());
        let skipped = text.as_bytes()[start..]
            .iter()
            .take_while(|b| matches!(b, b'\n' | b'\r'))
            .count();
        newlines.partition_point(|&i| i < start + skipped) as u64 + 1
    };
    let mut out = ParsedManifest::default();
    let mut first_seen: HashMap<String, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    loop {
        // Where the reader stands: at the next record's start, or near it.
        let line = line_at(reader.position().byte());
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                out.rows += 1;
                let line = e.position().map_or(line, |p| line_at(p.byte()));
                out.errors.push(RowError {
                    line,
                    field: "record",
                    problem: RowProblem::Unreadable(e.to_string()),
                });
                continue;
            }
        }
        let line = record.position().map_or(line, |p| line_at(p.byte()));
        out.rows += 1;
        match check_line(&record, &cols, header.len(), line) {
            Ok(l) => match first_seen.get(&l.serial) {
                Some(&first_line) => out.errors.push(RowError {
                    line,
                    field: "serial",
                    problem: RowProblem::DuplicateSerial {
                        serial: l.serial,
                        first_line,
                    },
                }),
                None => {
                    first_seen.insert(l.serial.clone(), line);
                    out.lines.push(l);
                }
            },
            Err((field, problem)) => out.errors.push(RowError {
                line,
                field,
                problem,
            }),
        }
    }
    Ok(out)
}

/// An order as a manifest line must match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRef {
    pub contract: String,
    pub lot: u32,
}

/// A delivery as stored (or about to be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub serial: String,
    pub model: String,
    pub order_reference: String,
    pub contract: String,
    pub lot: u32,
    pub site: String,
    pub delivered_on: NaiveDate,
    pub accepted_on: Option<NaiveDate>,
    pub cart: Option<String>,
}

/// What the store knows that manifest lines must agree with.
#[derive(Debug, Clone, Default)]
pub struct References {
    pub orders: HashMap<String, OrderRef>,
    /// (contract reference, lot number).
    pub lots: HashSet<(String, u32)>,
    pub sites: HashSet<String>,
    /// Cart id → the UAI of its school.
    pub carts: HashMap<String, String>,
    /// Stored deliveries of the serials in the manifest.
    pub existing: HashMap<String, Delivery>,
}

/// What importing the good lines will do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportPlan {
    pub insert: Vec<Delivery>,
    pub update: Vec<Delivery>,
    pub unchanged: u64,
    /// Lines refused against the references, by line number.
    pub errors: Vec<RowError>,
}

fn check_references(l: &DeliveryLine, refs: &References) -> Result<Delivery, RowError> {
    let err = |field, problem| RowError {
        line: l.line,
        field,
        problem,
    };
    let order = refs.orders.get(&l.order_reference).ok_or_else(|| {
        err(
            "order_reference",
            RowProblem::UnknownOrder(l.order_reference.clone()),
        )
    })?;
    if !refs.lots.contains(&(order.contract.clone(), l.lot)) {
        return Err(err(
            "lot",
            RowProblem::UnknownLot {
                contract: order.contract.clone(),
                lot: l.lot,
            },
        ));
    }
    if order.lot != l.lot {
        return Err(err(
            "lot",
            RowProblem::LotMismatch {
                order: l.order_reference.clone(),
                order_lot: order.lot,
                lot: l.lot,
            },
        ));
    }
    let site = l.site.as_str();
    if !refs.sites.contains(site) {
        return Err(err("site_uai", RowProblem::UnknownSite(site.to_string())));
    }
    if let Some(cart) = &l.cart {
        match refs.carts.get(cart) {
            None => return Err(err("cart", RowProblem::UnknownCart(cart.clone()))),
            Some(cart_site) if cart_site != site => {
                return Err(err(
                    "cart",
                    RowProblem::CartElsewhere {
                        cart: cart.clone(),
                        cart_site: cart_site.clone(),
                        site: site.to_string(),
                    },
                ));
            }
            Some(_) => {}
        }
    }
    Ok(Delivery {
        serial: l.serial.clone(),
        model: l.model.clone(),
        order_reference: l.order_reference.clone(),
        contract: order.contract.clone(),
        lot: l.lot,
        site: site.to_string(),
        delivered_on: l.delivered_on,
        accepted_on: l.accepted_on,
        cart: l.cart.clone(),
    })
}

/// Sorts parsed lines into inserts, updates and unchanged deliveries, refusing those
/// that contradict the references.
pub fn plan_import(lines: &[DeliveryLine], refs: &References) -> ImportPlan {
    let mut plan = ImportPlan::default();
    for l in lines {
        let mut d = match check_references(l, refs) {
            Ok(d) => d,
            Err(e) => {
                plan.errors.push(e);
                continue;
            }
        };
        match refs.existing.get(&d.serial) {
            None => plan.insert.push(d),
            Some(old) if old.order_reference != d.order_reference => {
                plan.errors.push(RowError {
                    line: l.line,
                    field: "serial",
                    problem: RowProblem::DeliveredUnderOtherOrder {
                        serial: d.serial.clone(),
                        order: old.order_reference.clone(),
                    },
                });
            }
            Some(old) => {
                d.accepted_on = d.accepted_on.or(old.accepted_on);
                d.cart = d.cart.or_else(|| old.cart.clone());
                if d == *old {
                    plan.unchanged += 1;
                } else {
                    plan.update.push(d);
                }
            }
        }
    }
    plan
}

/// The outcome of one import, as the CLI prints it and the API returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Data lines read.
    pub rows: u64,
    /// New deliveries stored (or that would be, in a dry run).
    pub stored: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Refused lines, by line number.
    pub errors: Vec<RowError>,
}

impl ImportReport {
    pub fn new(dry_run: bool, parsed: &ParsedManifest, plan: &ImportPlan) -> Self {
        let mut errors: Vec<RowError> = parsed
            .errors
            .iter()
            .chain(plan.errors.iter())
            .cloned()
            .collect();
        errors.sort_by_key(|e| e.line);
        Self {
            dry_run,
            rows: parsed.rows,
            stored: plan.insert.len() as u64,
            updated: plan.update.len() as u64,
            unchanged: plan.unchanged,
            errors,
        }
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would store"
        } else {
            "stored"
        };
        write!(
            f,
            "{} rows read: {verb} {} new, {} updated, {} unchanged, {} refused",
            self.rows,
            self.stored,
            self.updated,
            self.unchanged,
            self.errors.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "serial,model,order_reference,lot,site_uai,delivery_date,acceptance_date,cart\n";

    fn parse(body: &str) -> ParsedManifest {
        parse_manifest(&format!("{HEADER}{body}")).unwrap()
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn a_good_line_is_normalised() {
        let p = parse(" pf3abc12 ,ThinkPad X13,BC-1,Lot 2,0570001s,2024-09-02,03/09/2024,CART-A\n");
        assert_eq!(p.rows, 1);
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        let l = &p.lines[0];
        assert_eq!(l.line, 2);
        assert_eq!(l.serial, "PF3ABC12");
        assert_eq!(l.lot, 2);
        assert_eq!(l.site.as_str(), "0570001S");
        assert_eq!(l.delivered_on, d(2024, 9, 2));
        assert_eq!(l.accepted_on, Some(d(2024, 9, 3)));
        assert_eq!(l.cart.as_deref(), Some("CART-A"));
    }

    #[test]
    fn bad_lines_name_line_field_and_reason() {
        let body = "\
S1,M,BC-1,1,0570001S,2024-09-02,,\n\
,M,BC-1,1,0570001S,2024-09-02,,\n\
To be filled by O.E.M.,M,BC-1,1,0570001S,2024-09-02,,\n\
S2,M,BC-1,1,0570001A,2024-09-02,,\n\
S3,M,BC-1,1,0570001S,2024-13-02,,\n\
S1,M,BC-1,1,0570001S,2024-09-02,,\n\
S4,M,BC-1,one,0570001S,2024-09-02,,\n\
S5,M,BC-1,1,0570001S,2024-09-02,2024-09-01,\n\
S6,M,BC-1,1,0570001S,2024-09-02,,,extra\n\
S7,,BC-1,1,0570001S,2024-09-02,,\n";
        let p = parse(body);
        assert_eq!(p.rows, 10);
        assert_eq!(p.lines.len(), 1);
        let got: Vec<(u64, &str, &str)> = p
            .errors
            .iter()
            .map(|e| (e.line, e.field, e.problem.code()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, "serial", "missing"),
                (4, "serial", "placeholder_serial"),
                (5, "site_uai", "bad_uai"),
                (6, "delivery_date", "bad_date"),
                (7, "serial", "duplicate_serial"),
                (8, "lot", "bad_lot"),
                (9, "acceptance_date", "accepted_before_delivery"),
                (10, "record", "field_count"),
                (11, "model", "missing"),
            ]
        );
        assert_eq!(
            p.errors[2].to_string(),
            "line 5, site_uai: UAI check letter is wrong: expected 'S', found 'A'"
        );
        assert_eq!(
            p.errors[4].to_string(),
            "line 7, serial: serial S1 is already listed on line 2"
        );
        assert_eq!(
            p.errors[3].to_string(),
            "line 6, delivery_date: \"2024-13-02\" is not a date; write YYYY-MM-DD or DD/MM/YYYY"
        );
    }

    #[test]
    fn header_problems_refuse_the_file() {
        assert_eq!(parse_manifest(""), Err(ManifestError::Empty));
        assert_eq!(
            parse_manifest("serial,model,order_reference,lot,site_uai\n"),
            Err(ManifestError::MissingColumn("delivery_date"))
        );
        assert_eq!(
            parse_manifest(
                "serial,model,order_reference,lot,site_uai,delivery_date,acceptance_dat\n"
            ),
            Err(ManifestError::UnknownColumn("acceptance_dat".into()))
        );
        assert_eq!(
            parse_manifest("serial,serial\n"),
            Err(ManifestError::DuplicateColumn("serial".into()))
        );
    }

    #[test]
    fn semicolons_any_column_order_and_blank_lines() {
        let text = "\u{feff}Site_UAI;Serial;Model;Order_Reference;Lot;Delivery_Date\n\
                    0570001S;S1;M;BC-1;1;02/09/2024\n\n0570001S;S2;M;BC-1;1;2024-09-03\n";
        let p = parse_manifest(text).unwrap();
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.rows, 2);
        assert_eq!(p.lines[1].line, 4);
        assert_eq!(p.lines[0].delivered_on, d(2024, 9, 2));
    }

    #[test]
    fn date_and_lot_forms() {
        assert_eq!(parse_date("2024-02-29"), Some(d(2024, 2, 29)));
        assert_eq!(parse_date("29/02/2024"), Some(d(2024, 2, 29)));
        for bad in [
            "2023-02-29",
            "2024-9-2",
            "2/9/2024",
            "02-09-2024",
            "tomorrow",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(parse_lot("2"), Some(2));
        assert_eq!(parse_lot("Lot 2"), Some(2));
        assert_eq!(parse_lot("lot2"), Some(2));
        assert_eq!(parse_lot("0"), None);
        assert_eq!(parse_lot("Lot deux"), None);
    }

    fn refs() -> References {
        let mut r = References::default();
        r.orders.insert(
            "BC-1".into(),
            OrderRef {
                contract: "M-1".into(),
                lot: 1,
            },
        );
        r.lots.insert(("M-1".into(), 1));
        r.lots.insert(("M-1".into(), 2));
        r.sites.insert("0570001S".into());
        r.sites.insert("0750655E".into());
        r.carts.insert("CART-A".into(), "0570001S".into());
        r
    }

    #[test]
    fn references_are_checked_line_by_line() {
        let p = parse(
            "S1,M,BC-1,1,0570001S,2024-09-02,,CART-A\n\
             S2,M,BC-9,1,0570001S,2024-09-02,,\n\
             S3,M,BC-1,3,0570001S,2024-09-02,,\n\
             S4,M,BC-1,2,0570001S,2024-09-02,,\n\
             S5,M,BC-1,1,0000000A,2024-09-02,,\n\
             S6,M,BC-1,1,0570001S,2024-09-02,,CART-Z\n\
             S7,M,BC-1,1,0750655E,2024-09-02,,CART-A\n",
        );
        let plan = plan_import(&p.lines, &refs());
        assert_eq!(plan.insert.len(), 1);
        assert_eq!(plan.insert[0].contract, "M-1");
        let got: Vec<(u64, &str)> = plan
            .errors
            .iter()
            .map(|e| (e.line, e.problem.code()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, "unknown_order"),
                (4, "unknown_lot"),
                (5, "lot_mismatch"),
                (6, "unknown_site"),
                (7, "unknown_cart"),
                (8, "cart_elsewhere"),
            ]
        );
        assert_eq!(
            plan.errors[1].to_string(),
            "line 4, lot: lot 3 does not exist in contract M-1"
        );
    }

    #[test]
    fn reimport_keeps_acceptance_and_updates_changes() {
        let p = parse("S1,M,BC-1,1,0570001S,2024-09-02,2024-09-10,\n");
        let first = plan_import(&p.lines, &refs());
        let mut r = refs();
        r.existing.insert("S1".into(), first.insert[0].clone());
        // Same line again: unchanged.
        let again = plan_import(&p.lines, &r);
        assert_eq!(
            (again.insert.len(), again.update.len(), again.unchanged),
            (0, 0, 1)
        );
        // Without the acceptance date: the stored one is kept.
        let p2 = parse("S1,M,BC-1,1,0570001S,2024-09-02,,\n");
        assert_eq!(plan_import(&p2.lines, &r).unchanged, 1);
        // A cart added: updated.
        let p3 = parse("S1,M,BC-1,1,0570001S,2024-09-02,,CART-A\n");
        let upd = plan_import(&p3.lines, &r);
        assert_eq!(upd.update.len(), 1);
        assert_eq!(upd.update[0].accepted_on, Some(d(2024, 9, 10)));
        // Under another order: refused.
        r.existing.get_mut("S1").unwrap().order_reference = "BC-0".into();
        let other = plan_import(&p.lines, &r);
        assert_eq!(
            other.errors[0].problem.code(),
            "delivered_under_other_order"
        );
    }

    #[test]
    fn report_sorts_errors_by_line() {
        let p = parse("S1,M,BC-9,1,0570001S,2024-09-02,,\n,M,BC-1,1,0570001S,2024-09-02,,\n");
        let plan = plan_import(&p.lines, &refs());
        let report = ImportReport::new(false, &p, &plan);
        assert_eq!(
            report.errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(
            report.to_string(),
            "2 rows read: stored 0 new, 0 updated, 0 unchanged, 2 refused"
        );
        let json = serde_json::to_value(&report.errors[0]).unwrap();
        assert_eq!(json["code"], "unknown_order");
        assert_eq!(json["field"], "order_reference");
        assert_eq!(json["line"], 2);
    }
}
