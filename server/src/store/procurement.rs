//! Procurement in the store: loading the organisation/contract dataset, importing
//! delivery manifests, and the reads that link devices to what was delivered (lots,
//! carts, warranty inputs, reconciliation lists).
//!
//! Calendar days are ISO `YYYY-MM-DD` text, instants unix milliseconds, amounts cents
//! (see migrations/*/0003_procurement.sql). The checks live in `crate::procurement`
//! (pure); this module only loads what they need and writes what they accepted. It must
//! never decide what a line means, and never hold a transaction across anything but SQL.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row as _, Transaction};

use super::{Store, StoreError, from_ms, ms};
use crate::domain::{ServiceMode, WarrantyStart, WarrantyTerms};
use crate::procurement::{
    DeliveredDevice, Delivery, ImportReport, OrderRef, ParsedManifest, References, dataset,
    plan_import,
};

/// Rows per multi-row statement (10 columns: 4,000 bind parameters).
const ROWS_PER_STATEMENT: usize = 400;

/// What [`Store::load_dataset`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DatasetCounts {
    pub organisations: u64,
    pub sites: u64,
    pub carts: u64,
    pub holders: u64,
    pub contracts: u64,
    pub lots: u64,
    pub orders: u64,
}

/// A lot with its holder and terms, for the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LotRow {
    pub contract: String,
    pub contract_title: String,
    pub number: u32,
    pub title: String,
    pub holder_id: String,
    pub holder: String,
    pub holder_siret: String,
    pub support_email: String,
    pub webhook_url: Option<String>,
    pub warranty: WarrantyTerms,
    pub gti: Option<String>,
    pub gtr: Option<String>,
    pub business_opens_at: String,
    pub business_closes_at: String,
    pub penalty_per_day_cents: Option<i64>,
    pub orders: i64,
    pub delivered: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLineRow {
    pub model: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
    /// 2000 = 20 %.
    pub vat_rate_bp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FundingRow {
    pub source: String,
    pub amount_cents: i64,
}

/// A purchase order with its lines, funding, totals (cents) and delivered count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRow {
    pub reference: String,
    pub member_id: String,
    pub member: String,
    pub contract: String,
    pub lot: u32,
    pub ordered_on: NaiveDate,
    pub lines: Vec<OrderLineRow>,
    pub funding: Vec<FundingRow>,
    pub total_excl_vat_cents: i64,
    pub total_incl_vat_cents: i64,
    pub funded_cents: i64,
    /// Serials delivered under it.
    pub delivered: i64,
}

/// A school with its place in the organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteRow {
    pub uai: String,
    pub name: String,
    pub kind: String,
    pub owner_id: String,
    pub owner: String,
    /// Decides the holiday calendar.
    pub departement: String,
    pub grappe_id: Option<String>,
    pub grappe: Option<String>,
    pub street: String,
    pub postcode: String,
    pub city: String,
    pub classrooms: Vec<String>,
    pub delivered: i64,
    /// Delivered serials some device reports.
    pub reporting: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartDevice {
    pub serial: String,
    pub model: String,
    pub device_id: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// A mobile cart with its delivered devices and when any of them was last heard of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartRow {
    pub id: String,
    pub name: String,
    pub site: String,
    pub site_name: String,
    pub home_classroom: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub devices: Vec<CartDevice>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmatchedDevice {
    pub device_id: String,
    /// `None` when the device has not reported a usable serial yet.
    pub serial: Option<String>,
    pub product_name: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeverSeen {
    pub serial: String,
    pub model: String,
    pub order_reference: String,
    pub site: String,
    pub cart: Option<String>,
    pub delivered_on: NaiveDate,
}

/// Devices and deliveries that do not meet: reporting devices no manifest lists, and
/// delivered serials no device reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    pub matched: i64,
    pub unmatched_devices_total: i64,
    pub never_seen_total: i64,
    /// At most the requested limit, by device id.
    pub unmatched_devices: Vec<UnmatchedDevice>,
    /// At most the requested limit, by serial.
    pub never_seen: Vec<NeverSeen>,
}

/// "($1, $2), ($3, $4)" for `rows` rows of `cols` columns (QueryBuilder's `?` is
/// refused by PostgreSQL).
fn placeholders(rows: usize, cols: usize) -> String {
    let row = |r: usize| {
        let cells: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
        format!("({})", cells.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

pub(super) fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

pub(super) fn parse_day(what: &str, text: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        message: format!("{text:?} is not an ISO date: {e}"),
    })
}

pub(super) fn lot_number(what: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        what: what.to_string(),
        message: format!("lot number {v} is out of range"),
    })
}

/// Reads the columns `serial, model, order_ref, contract_ref, lot_number, site_uai,
/// delivered_on, accepted_on, cart_id` starting at index `at`.
fn delivery_at(r: &AnyRow, at: usize) -> Result<Delivery, StoreError> {
    let serial: String = r.try_get(at)?;
    let what = format!("delivery of serial {serial}");
    let delivered: String = r.try_get(at + 6)?;
    let accepted: Option<String> = r.try_get(at + 7)?;
    Ok(Delivery {
        model: r.try_get(at + 1)?,
        order_reference: r.try_get(at + 2)?,
        contract: r.try_get(at + 3)?,
        lot: lot_number(&what, r.try_get(at + 4)?)?,
        site: r.try_get(at + 5)?,
        delivered_on: parse_day(&what, &delivered)?,
        accepted_on: accepted.map(|a| parse_day(&what, &a)).transpose()?,
        cart: r.try_get(at + 8)?,
        serial,
    })
}

const DELIVERY_COLUMNS: &str = "l.serial, l.model, l.order_ref, l.contract_ref, l.lot_number, \
     l.site_uai, l.delivered_on, l.accepted_on, l.cart_id";

pub(super) fn warranty_terms(
    what: &str,
    months: i64,
    starts_at: &str,
    battery: Option<i64>,
    service: &str,
) -> Result<WarrantyTerms, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        what: what.to_string(),
        message,
    };
    let months_u32 = |v: i64| u32::try_from(v).map_err(|_| corrupt(format!("{v} months")));
    Ok(WarrantyTerms {
        months: months_u32(months)?,
        starts_at: match starts_at {
            "delivery" => WarrantyStart::Delivery,
            "acceptance" => WarrantyStart::Acceptance,
            other => return Err(corrupt(format!("warranty start {other:?}"))),
        },
        battery_months: battery.map(months_u32).transpose()?,
        service: match service {
            "on_site" => ServiceMode::OnSite,
            "return_to_base" => ServiceMode::ReturnToBase,
            other => return Err(corrupt(format!("service mode {other:?}"))),
        },
    })
}

fn starts_at_text(s: WarrantyStart) -> &'static str {
    match s {
        WarrantyStart::Delivery => "delivery",
        WarrantyStart::Acceptance => "acceptance",
    }
}

fn service_text(s: ServiceMode) -> &'static str {
    match s {
        ServiceMode::OnSite => "on_site",
        ServiceMode::ReturnToBase => "return_to_base",
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// A transaction that will write after reading. On SQLite it takes the write lock
    /// at once: a deferred transaction that reads, then finds the ingest writer has
    /// committed meanwhile, fails with SQLITE_BUSY whatever the busy timeout.
    /// Creates or updates everything the dataset describes, in one transaction.
    /// Idempotent. Nothing absent from the dataset is deleted (deliveries may refer to
    /// it), except an order's lines and funding, which are replaced as a whole.
    pub async fn load_dataset(&self, d: &dataset::Dataset) -> Result<DatasetCounts, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut counts = DatasetCounts::default();
        // Coordinators first: members refer to them.
        let mut orgs: Vec<&dataset::Organisation> = d.organisations.iter().collect();
        orgs.sort_by_key(|o| o.role != dataset::OrgRole::Coordinator);
        for o in orgs {
            sqlx::query(
                "INSERT INTO organisations (id, name, kind, role, siren, siret, coordinator_id, \
                 self_maintained) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE \
                 SET name = excluded.name, kind = excluded.kind, role = excluded.role, \
                 siren = excluded.siren, siret = excluded.siret, \
                 coordinator_id = excluded.coordinator_id, \
                 self_maintained = excluded.self_maintained",
            )
            .bind(o.id.clone())
            .bind(o.name.clone())
            .bind(o.kind.as_str())
            .bind(o.role.as_str())
            .bind(o.siren.as_ref().map(|s| s.to_string()))
            .bind(o.siret.as_ref().map(|s| s.to_string()))
            .bind(o.coordinator.clone())
            .bind(i64::from(o.self_maintained))
            .execute(&mut *tx)
            .await?;
            counts.organisations += 1;
        }
        for g in &d.grappes {
            sqlx::query(
                "INSERT INTO grappes (id, name) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name",
            )
            .bind(g.id.clone())
            .bind(g.name.clone())
            .execute(&mut *tx)
            .await?;
        }
        for s in &d.sites {
            sqlx::query(
                "INSERT INTO sites (uai, name, kind, owner_id, street, postcode, city, departement, \
                 grappe_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (uai) DO UPDATE \
                 SET name = excluded.name, kind = excluded.kind, owner_id = excluded.owner_id, \
                 street = excluded.street, postcode = excluded.postcode, city = excluded.city, \
                 departement = excluded.departement, grappe_id = excluded.grappe_id",
            )
            .bind(s.uai.to_string())
            .bind(s.name.clone())
            .bind(s.kind.as_str())
            .bind(s.owner.clone())
            .bind(s.address.street.clone())
            .bind(s.address.postcode.clone())
            .bind(s.address.city.clone())
            .bind(s.departement())
            .bind(s.grappe.clone())
            .execute(&mut *tx)
            .await?;
            counts.sites += 1;
            for room in &s.classrooms {
                sqlx::query(
                    "INSERT INTO classrooms (site_uai, name) VALUES ($1, $2) \
                     ON CONFLICT (site_uai, name) DO NOTHING",
                )
                .bind(s.uai.to_string())
                .bind(room.clone())
                .execute(&mut *tx)
                .await?;
            }
            for c in &s.carts {
                sqlx::query(
                    "INSERT INTO carts (id, site_uai, name, home_classroom) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE SET site_uai = excluded.site_uai, \
                     name = excluded.name, home_classroom = excluded.home_classroom",
                )
                .bind(c.id.clone())
                .bind(s.uai.to_string())
                .bind(c.name.clone())
                .bind(c.classroom.clone())
                .execute(&mut *tx)
                .await?;
                counts.carts += 1;
            }
        }
        for h in &d.holders {
            sqlx::query(
                "INSERT INTO contract_holders (id, company, siret, support_email, webhook_url, \
                 contacts) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
                 company = excluded.company, siret = excluded.siret, \
                 support_email = excluded.support_email, webhook_url = excluded.webhook_url, \
                 contacts = excluded.contacts",
            )
            .bind(h.id.clone())
            .bind(h.company.clone())
            .bind(h.siret.to_string())
            .bind(h.support_email.clone())
            .bind(h.webhook_url.clone())
            .bind(serde_json::to_string(&h.contacts).expect("contacts serialize"))
            .execute(&mut *tx)
            .await?;
            counts.holders += 1;
        }
        for c in &d.contracts {
            sqlx::query(
                "INSERT INTO contracts (reference, title, coordinator_id, starts_on, ends_on) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (reference) DO UPDATE SET \
                 title = excluded.title, coordinator_id = excluded.coordinator_id, \
                 starts_on = excluded.starts_on, ends_on = excluded.ends_on",
            )
            .bind(c.reference.clone())
            .bind(c.title.clone())
            .bind(c.coordinator.clone())
            .bind(date_text(c.starts_on))
            .bind(date_text(c.ends_on))
            .execute(&mut *tx)
            .await?;
            counts.contracts += 1;
            for l in &c.lots {
                upsert_lot(&mut tx, &c.reference, l).await?;
                counts.lots += 1;
            }
        }
        for o in &d.orders {
            sqlx::query(
                "INSERT INTO orders (reference, member_id, contract_ref, lot_number, ordered_on) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (reference) DO UPDATE SET \
                 member_id = excluded.member_id, contract_ref = excluded.contract_ref, \
                 lot_number = excluded.lot_number, ordered_on = excluded.ordered_on",
            )
            .bind(o.reference.clone())
            .bind(o.member.clone())
            .bind(o.contract.clone())
            .bind(i64::from(o.lot))
            .bind(date_text(o.ordered_on))
            .execute(&mut *tx)
            .await?;
            counts.orders += 1;
            for table in ["order_lines", "funding_lines"] {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE order_ref = $1"
                )))
                .bind(o.reference.clone())
                .execute(&mut *tx)
                .await?;
            }
            for (i, line) in o.lines.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO order_lines (order_ref, line_no, model, quantity, \
                     unit_price_cents, vat_rate_bp) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(o.reference.clone())
                .bind(i as i64 + 1)
                .bind(line.model.clone())
                .bind(i64::from(line.quantity))
                .bind(line.unit_price_cents)
                // Validated by the dataset parser.
                .bind(line.vat_rate_bp().unwrap_or(0))
                .execute(&mut *tx)
                .await?;
            }
            for (i, f) in o.funding.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO funding_lines (order_ref, line_no, source, amount_cents) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(o.reference.clone())
                .bind(i as i64 + 1)
                .bind(f.source.clone())
                .bind(f.amount_cents)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(counts)
    }

    /// Replaces one lot's terms (a contract amendment). Warranties follow at once,
    /// since they are computed on read.
    pub async fn set_lot_terms(
        &self,
        contract: &str,
        lot: &dataset::Lot,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        upsert_lot(&mut tx, contract, lot).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Imports the good lines of a parsed manifest in one transaction: new serials are
    /// inserted, changed ones updated, identical ones left alone, and lines that
    /// contradict the stored orders, lots, schools, carts or deliveries reported.
    /// With `dry_run` nothing is written. `progress(done, total)` is called as lines
    /// are written.
    pub async fn import_deliveries(
        &self,
        parsed: &ParsedManifest,
        dry_run: bool,
        now: DateTime<Utc>,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<ImportReport, StoreError> {
        let mut tx = if dry_run {
            self.pool.begin().await?
        } else {
            self.begin_write().await?
        };
        let serials: Vec<&str> = parsed.lines.iter().map(|l| l.serial.as_str()).collect();
        let refs = load_references(&mut tx, &serials).await?;
        let plan = plan_import(&parsed.lines, &refs);
        let total = (plan.insert.len() + plan.update.len()) as u64;
        let mut done = 0u64;
        progress(done, total);
        if !dry_run {
            let now_ms = ms(now);
            for chunk in plan.insert.chunks(ROWS_PER_STATEMENT) {
                // DO NOTHING: a concurrent import of the same serial must not fail this
                // one; the serial is then stored once, by whichever committed first.
                let sql = format!(
                    "INSERT INTO deliveries (serial, model, order_ref, contract_ref, lot_number, \
                     site_uai, delivered_on, accepted_on, cart_id, imported_at_ms) VALUES {} \
                     ON CONFLICT (serial) DO NOTHING",
                    placeholders(chunk.len(), 10)
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for d in chunk {
                    q = q
                        .bind(d.serial.clone())
                        .bind(d.model.clone())
                        .bind(d.order_reference.clone())
                        .bind(d.contract.clone())
                        .bind(i64::from(d.lot))
                        .bind(d.site.clone())
                        .bind(date_text(d.delivered_on))
                        .bind(d.accepted_on.map(date_text))
                        .bind(d.cart.clone())
                        .bind(now_ms);
                }
                q.execute(&mut *tx).await?;
                done += chunk.len() as u64;
                progress(done, total);
            }
            for d in &plan.update {
                sqlx::query(
                    "UPDATE deliveries SET model = $1, site_uai = $2, delivered_on = $3, \
                     accepted_on = $4, cart_id = $5, imported_at_ms = $6 WHERE serial = $7",
                )
                .bind(d.model.clone())
                .bind(d.site.clone())
                .bind(date_text(d.delivered_on))
                .bind(d.accepted_on.map(date_text))
                .bind(d.cart.clone())
                .bind(now_ms)
                .bind(d.serial.clone())
                .execute(&mut *tx)
                .await?;
                done += 1;
                if done.is_multiple_of(100) {
                    progress(done, total);
                }
            }
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        progress(total, total);
        Ok(ImportReport::new(dry_run, parsed, &plan))
    }

    /// The delivery of the serial `device` reports, with its lot's terms; `None` when
    /// the device is unknown or not matched to a delivery.
    pub async fn delivered_device(
        &self,
        device: &str,
    ) -> Result<Option<DeliveredDevice>, StoreError> {
        let sql = format!("{} WHERE d.device_id = $1", delivered_select("JOIN"));
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(device.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| delivered_from_row(&r)).transpose()
    }

    /// Every delivery with its lot's terms and the device reporting its serial, if
    /// any, by serial.
    pub async fn delivered_devices(&self) -> Result<Vec<DeliveredDevice>, StoreError> {
        let sql = format!("{} ORDER BY l.serial", delivered_select("LEFT JOIN"));
        sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(delivered_from_row)
            .collect()
    }

    pub async fn lots(&self) -> Result<Vec<LotRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT lo.contract_ref, c.title, lo.number, lo.title, h.id, h.company, h.siret, \
             h.support_email, h.webhook_url, lo.warranty_months, lo.warranty_starts_at, \
             lo.battery_months, lo.service_mode, lo.gti, lo.gtr, lo.business_opens_at, \
             lo.business_closes_at, lo.penalty_per_day_cents, \
             (SELECT COUNT(*) FROM orders o WHERE o.contract_ref = lo.contract_ref \
              AND o.lot_number = lo.number), \
             (SELECT COUNT(*) FROM deliveries l WHERE l.contract_ref = lo.contract_ref \
              AND l.lot_number = lo.number) \
             FROM lots lo JOIN contracts c ON c.reference = lo.contract_ref \
             JOIN contract_holders h ON h.id = lo.holder_id ORDER BY lo.contract_ref, lo.number",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let contract: String = r.try_get(0)?;
                let number: i64 = r.try_get(2)?;
                let what = format!("lot {number} of contract {contract}");
                let starts_at: String = r.try_get(10)?;
                let service: String = r.try_get(12)?;
                Ok(LotRow {
                    warranty: warranty_terms(
                        &what,
                        r.try_get(9)?,
                        &starts_at,
                        r.try_get(11)?,
                        &service,
                    )?,
                    number: lot_number(&what, number)?,
                    contract,
                    contract_title: r.try_get(1)?,
                    title: r.try_get(3)?,
                    holder_id: r.try_get(4)?,
                    holder: r.try_get(5)?,
                    holder_siret: r.try_get(6)?,
                    support_email: r.try_get(7)?,
                    webhook_url: r.try_get(8)?,
                    gti: r.try_get(13)?,
                    gtr: r.try_get(14)?,
                    business_opens_at: r.try_get(15)?,
                    business_closes_at: r.try_get(16)?,
                    penalty_per_day_cents: r.try_get(17)?,
                    orders: r.try_get(18)?,
                    delivered: r.try_get(19)?,
                })
            })
            .collect()
    }

    /// Purchase orders by reference.
    pub async fn orders(&self) -> Result<Vec<OrderRow>, StoreError> {
        let mut orders: Vec<OrderRow> = Vec::new();
        for r in sqlx::query(
            "SELECT o.reference, o.member_id, m.name, o.contract_ref, o.lot_number, o.ordered_on, \
             (SELECT COUNT(*) FROM deliveries l WHERE l.order_ref = o.reference) \
             FROM orders o JOIN organisations m ON m.id = o.member_id ORDER BY o.reference",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let reference: String = r.try_get(0)?;
            let what = format!("order {reference}");
            let ordered_on: String = r.try_get(5)?;
            orders.push(OrderRow {
                member_id: r.try_get(1)?,
                member: r.try_get(2)?,
                contract: r.try_get(3)?,
                lot: lot_number(&what, r.try_get(4)?)?,
                ordered_on: parse_day(&what, &ordered_on)?,
                lines: Vec::new(),
                funding: Vec::new(),
                total_excl_vat_cents: 0,
                total_incl_vat_cents: 0,
                funded_cents: 0,
                delivered: r.try_get(6)?,
                reference,
            });
        }
        let index: HashMap<String, usize> = orders
            .iter()
            .enumerate()
            .map(|(i, o)| (o.reference.clone(), i))
            .collect();
        for r in sqlx::query(
            "SELECT order_ref, model, quantity, unit_price_cents, vat_rate_bp FROM order_lines \
             ORDER BY order_ref, line_no",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let order: String = r.try_get(0)?;
            let Some(&i) = index.get(&order) else {
                continue;
            };
            let line = OrderLineRow {
                model: r.try_get(1)?,
                quantity: r.try_get(2)?,
                unit_price_cents: r.try_get(3)?,
                vat_rate_bp: r.try_get(4)?,
            };
            let o = &mut orders[i];
            o.total_excl_vat_cents += line.quantity * line.unit_price_cents;
            o.total_incl_vat_cents += dataset::line_total_incl_vat_cents(
                line.quantity,
                line.unit_price_cents,
                line.vat_rate_bp,
            );
            o.lines.push(line);
        }
        for r in sqlx::query(
            "SELECT order_ref, source, amount_cents FROM funding_lines ORDER BY order_ref, line_no",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let order: String = r.try_get(0)?;
            let Some(&i) = index.get(&order) else {
                continue;
            };
            let f = FundingRow {
                source: r.try_get(1)?,
                amount_cents: r.try_get(2)?,
            };
            orders[i].funded_cents += f.amount_cents;
            orders[i].funding.push(f);
        }
        Ok(orders)
    }

    /// Schools by UAI.
    pub async fn sites(&self) -> Result<Vec<SiteRow>, StoreError> {
        let mut sites: Vec<SiteRow> = Vec::new();
        for r in sqlx::query(
            "SELECT s.uai, s.name, s.kind, s.owner_id, o.name, s.departement, s.grappe_id, g.name, \
             s.street, s.postcode, s.city, \
             (SELECT COUNT(*) FROM deliveries l WHERE l.site_uai = s.uai), \
             (SELECT COUNT(*) FROM deliveries l JOIN devices d ON d.serial = l.serial \
              WHERE l.site_uai = s.uai) \
             FROM sites s JOIN organisations o ON o.id = s.owner_id \
             LEFT JOIN grappes g ON g.id = s.grappe_id ORDER BY s.uai",
        )
        .fetch_all(&self.pool)
        .await?
        {
            sites.push(SiteRow {
                uai: r.try_get(0)?,
                name: r.try_get(1)?,
                kind: r.try_get(2)?,
                owner_id: r.try_get(3)?,
                owner: r.try_get(4)?,
                departement: r.try_get(5)?,
                grappe_id: r.try_get(6)?,
                grappe: r.try_get(7)?,
                street: r.try_get(8)?,
                postcode: r.try_get(9)?,
                city: r.try_get(10)?,
                classrooms: Vec::new(),
                delivered: r.try_get(11)?,
                reporting: r.try_get(12)?,
            });
        }
        let index: HashMap<String, usize> = sites
            .iter()
            .enumerate()
            .map(|(i, s)| (s.uai.clone(), i))
            .collect();
        for r in sqlx::query("SELECT site_uai, name FROM classrooms ORDER BY site_uai, name")
            .fetch_all(&self.pool)
            .await?
        {
            let uai: String = r.try_get(0)?;
            if let Some(&i) = index.get(&uai) {
                sites[i].classrooms.push(r.try_get(1)?);
            }
        }
        Ok(sites)
    }

    /// Mobile carts, by id, with their devices (by serial).
    pub async fn carts(&self) -> Result<Vec<CartRow>, StoreError> {
        let mut carts: Vec<CartRow> = Vec::new();
        for r in sqlx::query(
            "SELECT c.id, c.name, c.site_uai, s.name, c.home_classroom FROM carts c \
             JOIN sites s ON s.uai = c.site_uai ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            carts.push(CartRow {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                site: r.try_get(2)?,
                site_name: r.try_get(3)?,
                home_classroom: r.try_get(4)?,
                last_seen: None,
                devices: Vec::new(),
            });
        }
        let index: HashMap<String, usize> = carts
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        for r in sqlx::query(
            "SELECT l.cart_id, l.serial, l.model, d.device_id, d.last_seen_ms FROM deliveries l \
             LEFT JOIN devices d ON d.serial = l.serial WHERE l.cart_id IS NOT NULL \
             ORDER BY l.cart_id, l.serial",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let cart: String = r.try_get(0)?;
            let Some(&i) = index.get(&cart) else { continue };
            let last_seen = r.try_get::<Option<i64>, _>(4)?.map(from_ms);
            let c = &mut carts[i];
            c.last_seen = c.last_seen.max(last_seen);
            c.devices.push(CartDevice {
                serial: r.try_get(1)?,
                model: r.try_get(2)?,
                device_id: r.try_get(3)?,
                last_seen,
            });
        }
        Ok(carts)
    }

    /// Devices without a delivery and deliveries without a device, each list cut at
    /// `limit` (the totals are exact).
    pub async fn reconciliation(&self, limit: i64) -> Result<Reconciliation, StoreError> {
        let count = |sql: &'static str| async move {
            let r = sqlx::query(sql).fetch_one(&self.pool).await?;
            Ok::<i64, StoreError>(r.try_get(0)?)
        };
        let matched = count(
            "SELECT COUNT(*) FROM devices d JOIN deliveries l ON l.serial = d.serial \
             WHERE d.revoked_at_ms IS NULL",
        )
        .await?;
        let unmatched_devices_total = count(
            "SELECT COUNT(*) FROM devices d LEFT JOIN deliveries l ON l.serial = d.serial \
             WHERE l.serial IS NULL AND d.revoked_at_ms IS NULL",
        )
        .await?;
        let never_seen_total = count(
            "SELECT COUNT(*) FROM deliveries l LEFT JOIN devices d ON d.serial = l.serial \
             WHERE d.device_id IS NULL",
        )
        .await?;
        let mut unmatched_devices = Vec::new();
        for r in sqlx::query(
            "SELECT d.device_id, d.serial, d.product_name, d.last_seen_ms FROM devices d \
             LEFT JOIN deliveries l ON l.serial = d.serial \
             WHERE l.serial IS NULL AND d.revoked_at_ms IS NULL ORDER BY d.device_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        {
            unmatched_devices.push(UnmatchedDevice {
                device_id: r.try_get(0)?,
                serial: r.try_get(1)?,
                product_name: r.try_get(2)?,
                last_seen: r.try_get::<Option<i64>, _>(3)?.map(from_ms),
            });
        }
        let mut never_seen = Vec::new();
        for r in sqlx::query(
            "SELECT l.serial, l.model, l.order_ref, l.site_uai, l.cart_id, l.delivered_on \
             FROM deliveries l LEFT JOIN devices d ON d.serial = l.serial \
             WHERE d.device_id IS NULL ORDER BY l.serial LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        {
            let serial: String = r.try_get(0)?;
            let delivered: String = r.try_get(5)?;
            never_seen.push(NeverSeen {
                delivered_on: parse_day(&format!("delivery of serial {serial}"), &delivered)?,
                serial,
                model: r.try_get(1)?,
                order_reference: r.try_get(2)?,
                site: r.try_get(3)?,
                cart: r.try_get(4)?,
            });
        }
        Ok(Reconciliation {
            matched,
            unmatched_devices_total,
            never_seen_total,
            unmatched_devices,
            never_seen,
        })
    }
}

/// Loads the demo's embedded dataset and deliveries (`server/demo-data/`). Idempotent:
/// a second load changes nothing.
pub async fn load_demo_dataset(store: &Store) -> Result<ImportReport, DemoDataError> {
    let dataset = crate::procurement::parse_dataset(crate::procurement::DEMO_DATASET)?;
    store.load_dataset(&dataset).await?;
    let manifest = crate::procurement::parse_manifest(crate::procurement::DEMO_DELIVERIES)?;
    let report = store
        .import_deliveries(&manifest, false, Utc::now(), &|_, _| {})
        .await?;
    if let Some(e) = report.errors.first() {
        return Err(DemoDataError::Refused(e.clone()));
    }
    Ok(report)
}

/// Why the embedded demo data could not be loaded (a bug in `server/demo-data/`, or
/// the database).
#[derive(Debug, thiserror::Error)]
pub enum DemoDataError {
    #[error("demo dataset: {0}")]
    Dataset(#[from] crate::procurement::DatasetError),
    #[error("demo deliveries: {0}")]
    Manifest(#[from] crate::procurement::ManifestError),
    #[error("demo deliveries: {0}")]
    Refused(crate::procurement::RowError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn upsert_lot(
    tx: &mut Transaction<'static, Any>,
    contract: &str,
    l: &dataset::Lot,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO lots (contract_ref, number, title, holder_id, warranty_months, \
         warranty_starts_at, battery_months, service_mode, gti, gtr, business_opens_at, \
         business_closes_at, penalty_per_day_cents) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (contract_ref, number) DO UPDATE SET title = excluded.title, \
         holder_id = excluded.holder_id, warranty_months = excluded.warranty_months, \
         warranty_starts_at = excluded.warranty_starts_at, \
         battery_months = excluded.battery_months, service_mode = excluded.service_mode, \
         gti = excluded.gti, gtr = excluded.gtr, business_opens_at = excluded.business_opens_at, \
         business_closes_at = excluded.business_closes_at, \
         penalty_per_day_cents = excluded.penalty_per_day_cents",
    )
    .bind(contract.to_string())
    .bind(i64::from(l.number))
    .bind(l.title.clone())
    .bind(l.holder.clone())
    .bind(i64::from(l.warranty.months))
    .bind(starts_at_text(l.warranty.starts_at))
    .bind(l.warranty.battery_months.map(i64::from))
    .bind(service_text(l.warranty.service))
    .bind(l.sla.gti.map(|g| g.to_string()))
    .bind(l.sla.gtr.map(|g| g.to_string()))
    .bind(l.sla.opens_at.format("%H:%M").to_string())
    .bind(l.sla.closes_at.format("%H:%M").to_string())
    .bind(l.sla.penalty_per_day_cents.map(to_i64))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `join` is `JOIN` (deliveries of known devices) or `LEFT JOIN` (every delivery).
pub(super) fn delivered_select(join: &str) -> String {
    format!(
        "SELECT {DELIVERY_COLUMNS}, lo.title, h.company, lo.warranty_months, \
         lo.warranty_starts_at, lo.battery_months, lo.service_mode, d.device_id, d.last_seen_ms \
         FROM deliveries l JOIN lots lo ON lo.contract_ref = l.contract_ref \
         AND lo.number = l.lot_number JOIN contract_holders h ON h.id = lo.holder_id \
         {join} devices d ON d.serial = l.serial"
    )
}

pub(super) fn delivered_from_row(r: &AnyRow) -> Result<DeliveredDevice, StoreError> {
    let delivery = delivery_at(r, 0)?;
    let what = format!("lot {} of contract {}", delivery.lot, delivery.contract);
    let starts_at: String = r.try_get(12)?;
    let service: String = r.try_get(14)?;
    Ok(DeliveredDevice {
        lot_title: r.try_get(9)?,
        holder: r.try_get(10)?,
        terms: warranty_terms(&what, r.try_get(11)?, &starts_at, r.try_get(13)?, &service)?,
        device_id: r.try_get(15)?,
        last_seen: r.try_get::<Option<i64>, _>(16)?.map(from_ms),
        delivery,
    })
}

/// Orders, lots, schools and carts a manifest may name, and the stored deliveries of
/// its serials, read inside the import's transaction.
async fn load_references(
    tx: &mut Transaction<'static, Any>,
    serials: &[&str],
) -> Result<References, StoreError> {
    let mut refs = References::default();
    for r in sqlx::query("SELECT reference, contract_ref, lot_number FROM orders")
        .fetch_all(&mut **tx)
        .await?
    {
        let reference: String = r.try_get(0)?;
        let lot = lot_number(&format!("order {reference}"), r.try_get(2)?)?;
        refs.orders.insert(
            reference,
            OrderRef {
                contract: r.try_get(1)?,
                lot,
            },
        );
    }
    for r in sqlx::query("SELECT contract_ref, number FROM lots")
        .fetch_all(&mut **tx)
        .await?
    {
        let contract: String = r.try_get(0)?;
        let lot = lot_number(&format!("contract {contract}"), r.try_get(1)?)?;
        refs.lots.insert((contract, lot));
    }
    refs.sites = sqlx::query("SELECT uai FROM sites")
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<HashSet<String>, _>>()?;
    for r in sqlx::query("SELECT id, site_uai FROM carts")
        .fetch_all(&mut **tx)
        .await?
    {
        refs.carts.insert(r.try_get(0)?, r.try_get(1)?);
    }
    for chunk in serials.chunks(ROWS_PER_STATEMENT) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries l WHERE l.serial IN ({})",
            list.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for s in chunk {
            q = q.bind(s.to_string());
        }
        for r in q.fetch_all(&mut **tx).await? {
            let d = delivery_at(&r, 0)?;
            refs.existing.insert(d.serial.clone(), d);
        }
    }
    Ok(refs)
}
