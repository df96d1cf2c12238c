//! The dashboard's and API's scoped reads: the fleet overview (devices by state per
//! authority, site, lot and model), the paginated and searchable device list, the gate
//! that decides whether a principal may see a device at all, usage hours, events,
//! scoped procurement lists, and the refresher that keeps each device's latest health
//! readings in `device_latest`.
//!
//! Every read takes a [`Scope`] and applies it in SQL: a row outside the scope is never
//! read, so no caller can forget to hide it. Read-only except
//! [`Store::refresh_device_latest`]. Device states are computed in SQL from the
//! thresholds in [`StateThresholds`], the same expression for counts and lists.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Store, StoreError, from_ms, ms};
use crate::auth::Scope;
use crate::procurement::DeliveredDevice;

/// A device's state on the dashboard.
#[derive(
    utoipa::ToSchema,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Healthy,
    Warning,
    Faulty,
    Silent,
}

impl DeviceState {
    pub const ALL: [DeviceState; 4] = [
        DeviceState::Healthy,
        DeviceState::Warning,
        DeviceState::Faulty,
        DeviceState::Silent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Healthy => "healthy",
            DeviceState::Warning => "warning",
            DeviceState::Faulty => "faulty",
            DeviceState::Silent => "silent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// When a device counts as silent, warning or faulty. Faulty wins over warning; silent
/// over both (old readings say nothing about now).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateThresholds {
    /// Not heard from for this long.
    pub silent_after: chrono::Duration,
    /// Battery health below: faulty (the shipped `battery_worn` rule's threshold).
    pub battery_faulty_below: f64,
    pub battery_warning_below: f64,
    pub temperature_faulty_from: f64,
    pub temperature_warning_from: f64,
}

impl Default for StateThresholds {
    fn default() -> Self {
        Self {
            silent_after: chrono::Duration::hours(72),
            battery_faulty_below: 60.0,
            battery_warning_below: 75.0,
            temperature_faulty_from: 95.0,
            temperature_warning_from: 85.0,
        }
    }
}

/// Counts per state.
#[derive(utoipa::ToSchema, Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    pub healthy: i64,
    pub warning: i64,
    pub faulty: i64,
    pub silent: i64,
    pub total: i64,
}

impl StateCounts {
    fn add(&mut self, state: DeviceState, n: i64) {
        match state {
            DeviceState::Healthy => self.healthy += n,
            DeviceState::Warning => self.warning += n,
            DeviceState::Faulty => self.faulty += n,
            DeviceState::Silent => self.silent += n,
        }
        self.total += n;
    }
}

/// One line of an overview table: a group (authority, site, lot or model) and its counts.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupCounts {
    /// The filter value selecting this group in the device list (empty: not delivered).
    pub key: String,
    pub label: String,
    pub counts: StateCounts,
}

#[derive(utoipa::ToSchema, Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Overview {
    pub totals: StateCounts,
    pub by_authority: Vec<GroupCounts>,
    pub by_site: Vec<GroupCounts>,
    pub by_lot: Vec<GroupCounts>,
    pub by_model: Vec<GroupCounts>,
}

/// Filters of the device list; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FleetFilter {
    /// Serial or host name prefix, or part of a school's name or its UAI.
    pub q: Option<String>,
    pub state: Option<DeviceState>,
    pub organisation: Option<String>,
    pub site: Option<String>,
    /// `CONTRACT#NUMBER`.
    pub lot: Option<String>,
    pub model: Option<String>,
    /// Keyset pagination: the last device id of the previous page.
    pub after: Option<String>,
}

#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Serialize)]
pub struct FleetDevice {
    pub device_id: String,
    pub serial: Option<String>,
    pub hostname: Option<String>,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub organisation_id: Option<String>,
    pub organisation: Option<String>,
    pub site_uai: Option<String>,
    pub site: Option<String>,
    pub contract: Option<String>,
    pub lot: Option<u32>,
    pub cart: Option<String>,
    pub order_reference: Option<String>,
    pub state: DeviceState,
    pub last_seen: Option<DateTime<Utc>>,
    pub battery_health_percent: Option<f64>,
    pub temperature_max_celsius: Option<f64>,
    pub agent_version: Option<String>,
    pub enrolled_at: DateTime<Utc>,
}

#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Serialize)]
pub struct FleetPage {
    pub devices: Vec<FleetDevice>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next_after: Option<String>,
}

#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub occurred_at: DateTime<Utc>,
    pub event_type: String,
    pub detail: Option<String>,
}

/// Hours a device reported in a period: an hour counts when the device sent at least
/// one health sample in it, i.e. it was switched on and running.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceUsage {
    pub device_id: String,
    pub hostname: Option<String>,
    pub site_uai: Option<String>,
    pub site: Option<String>,
    pub hours: i64,
}

#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiteUsage {
    pub site_uai: String,
    pub site: String,
    pub devices: i64,
    pub hours: i64,
}

#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub devices: Vec<DeviceUsage>,
    pub sites: Vec<SiteUsage>,
}

/// How old the fleet aggregate behind [`Store::fleet_overview`] may be before a
/// request starts recomputing it (in the background: the request is answered from the
/// previous aggregate).
pub const OVERVIEW_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// Past this age the aggregate is not shown while it is recomputed: the request waits
/// (after a quiet night nobody should see yesterday's states, even for a moment).
pub const OVERVIEW_MAX_STALE: std::time::Duration = std::time::Duration::from_secs(120);

/// One group of the fleet aggregate: where, under which lot, which model, which state,
/// how many devices — and who may see them (site owner, its coordinator, lot holder).
#[derive(Debug, Clone, PartialEq)]
pub struct OverviewRow {
    pub site: Option<String>,
    pub site_name: Option<String>,
    pub organisation: Option<String>,
    pub organisation_name: Option<String>,
    pub coordinator: Option<String>,
    pub contract: Option<String>,
    pub lot: Option<i64>,
    pub lot_title: Option<String>,
    pub holder: Option<String>,
    pub model: Option<String>,
    pub state: DeviceState,
    pub devices: i64,
}

pub(super) struct OverviewCache {
    computed: std::time::Instant,
    thresholds: StateThresholds,
    rows: std::sync::Arc<Vec<OverviewRow>>,
    /// A background recompute is running.
    refreshing: bool,
}

impl OverviewCache {
    fn fresh(thresholds: StateThresholds, rows: std::sync::Arc<Vec<OverviewRow>>) -> Self {
        Self {
            computed: std::time::Instant::now(),
            thresholds,
            rows,
            refreshing: false,
        }
    }
}

/// Whether `scope` may see a group (the same rule as [`Sql::scope`]; devices without a
/// delivery only for `Scope::All`).
fn row_in(scope: &Scope, r: &OverviewRow) -> bool {
    match scope {
        Scope::All => true,
        Scope::Organisation(o) => {
            r.organisation.as_ref() == Some(o) || r.coordinator.as_ref() == Some(o)
        }
        Scope::Holder(h) => r.holder.as_ref() == Some(h),
    }
}

/// The overview of the groups `scope` may see.
pub fn overview_in(scope: &Scope, rows: &[OverviewRow]) -> Overview {
    let mut out = Overview::default();
    let mut groups: [BTreeMap<String, GroupCounts>; 4] = Default::default();
    for r in rows.iter().filter(|r| row_in(scope, r)) {
        out.totals.add(r.state, r.devices);
        let lot = r
            .contract
            .as_ref()
            .map(|c| format!("{c}#{}", r.lot.unwrap_or_default()));
        let keys = [
            (&r.organisation, &r.organisation_name),
            (&r.site, &r.site_name),
            (&lot, &r.lot_title),
            (&r.model, &r.model),
        ];
        for (g, (key, label)) in groups.iter_mut().zip(keys) {
            let key = key.clone().unwrap_or_default();
            let label = match (label, key.is_empty()) {
                (Some(l), false) => l.clone(),
                _ => String::new(),
            };
            g.entry(key.clone())
                .or_insert_with(|| GroupCounts {
                    key,
                    label,
                    counts: StateCounts::default(),
                })
                .counts
                .add(r.state, r.devices);
        }
    }
    let [a, s, l, m] = groups;
    out.by_authority = a.into_values().collect();
    out.by_site = s.into_values().collect();
    out.by_lot = l.into_values().collect();
    out.by_model = m.into_values().collect();
    out
}

/// A ticket with what the board and the penalty computation need beside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketView {
    #[serde(flatten)]
    pub ticket: super::TicketRow,
    pub holder: Option<String>,
    pub site: Option<String>,
    /// Decides the holiday calendar of the deadlines.
    pub departement: Option<String>,
    pub business_opens_at: Option<String>,
    pub business_closes_at: Option<String>,
}

/// Filters of the ticket board and API; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TicketFilter {
    #[serde(default)]
    pub open_only: bool,
    /// `CONTRACT#NUMBER`.
    pub lot: Option<String>,
    pub holder: Option<String>,
    pub site: Option<String>,
    /// Tickets naming this device (alone or in a grouped claim).
    pub device: Option<String>,
    pub reference: Option<String>,
}

/// A statement under construction with its arguments, numbered `$1…` as pushed.
#[derive(Default)]
pub(super) struct Sql {
    pub text: String,
    args: Vec<Arg>,
}

enum Arg {
    Text(String),
    Int(i64),
    Real(f64),
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    fn bind(&mut self, a: Arg) -> &mut Self {
        self.args.push(a);
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }

    pub fn text(&mut self, v: &str) -> &mut Self {
        self.bind(Arg::Text(v.to_string()))
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        self.bind(Arg::Int(v))
    }

    pub fn real(&mut self, v: f64) -> &mut Self {
        self.bind(Arg::Real(v))
    }

    fn build(self) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text));
        for a in self.args {
            q = match a {
                Arg::Text(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Real(v) => q.bind(v),
            };
        }
        q
    }

    pub async fn fetch_all(self, store: &Store) -> Result<Vec<AnyRow>, StoreError> {
        Ok(self.build().fetch_all(&store.pool).await?)
    }

    pub async fn execute(
        self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<u64, StoreError> {
        Ok(self.build().execute(&mut **tx).await?.rows_affected())
    }

    /// Appends the scope condition, given the aliases of the joined `organisations` (site
    /// owner) and `lots` tables.
    pub fn scope(&mut self, scope: &Scope, org: &str, lot: &str) -> &mut Self {
        match scope {
            Scope::All => self.push("1 = 1"),
            Scope::Organisation(o) => self
                .push(&format!("({org}.id = "))
                .text(o)
                .push(&format!(" OR {org}.coordinator_id = "))
                .text(o)
                .push(")"),
            Scope::Holder(h) => self.push(&format!("{lot}.holder_id = ")).text(h),
        }
    }
}

/// Joins from `devices d` to its delivery `l`, site `s`, owner `o`, lot `lo` and latest
/// readings `lt`; a device without a delivery keeps NULLs (visible to `Scope::All` only).
const DEVICE_JOINS: &str = " FROM devices d \
     LEFT JOIN deliveries l ON l.serial = d.serial \
     LEFT JOIN sites s ON s.uai = l.site_uai \
     LEFT JOIN organisations o ON o.id = s.owner_id \
     LEFT JOIN lots lo ON lo.contract_ref = l.contract_ref AND lo.number = l.lot_number \
     LEFT JOIN device_latest lt ON lt.device_id = d.device_id ";

/// Appends the state expression (a CASE over the joins above).
fn push_state(sql: &mut Sql, t: &StateThresholds, now: DateTime<Utc>) {
    sql.push("(CASE WHEN d.last_seen_ms IS NULL OR d.last_seen_ms < ")
        .int(ms(now - t.silent_after))
        .push(" THEN 'silent' WHEN lt.battery_health_percent < ")
        .real(t.battery_faulty_below)
        .push(" OR lt.temperature_max_celsius >= ")
        .real(t.temperature_faulty_from)
        .push(" THEN 'faulty' WHEN lt.battery_health_percent < ")
        .real(t.battery_warning_below)
        .push(" OR lt.temperature_max_celsius >= ")
        .real(t.temperature_warning_from)
        .push(" THEN 'warning' ELSE 'healthy' END)");
}

fn state_of(r: &AnyRow, i: usize) -> Result<DeviceState, StoreError> {
    let s: String = r.try_get(i)?;
    DeviceState::parse(&s).ok_or_else(|| StoreError::Corrupt {
        what: "device state".into(),
        message: s,
    })
}

/// The next string after every string starting with `prefix` (for index range scans).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10ffff}")
}

/// `%` and `_` are wildcards in LIKE: searched text matches them literally.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

const FLEET_COLUMNS: &str = "SELECT d.device_id, d.serial, d.hostname, \
     COALESCE(l.model, d.product_name), d.manufacturer, o.id, o.name, s.uai, s.name, \
     l.contract_ref, l.lot_number, l.cart_id, l.order_ref, d.last_seen_ms, \
     lt.battery_health_percent, lt.temperature_max_celsius, d.agent_version, d.enrolled_at_ms, ";

fn fleet_device(r: &AnyRow) -> Result<FleetDevice, StoreError> {
    Ok(FleetDevice {
        device_id: r.try_get(0)?,
        serial: r.try_get(1)?,
        hostname: r.try_get(2)?,
        model: r.try_get(3)?,
        manufacturer: r.try_get(4)?,
        organisation_id: r.try_get(5)?,
        organisation: r.try_get(6)?,
        site_uai: r.try_get(7)?,
        site: r.try_get(8)?,
        contract: r.try_get(9)?,
        lot: r
            .try_get::<Option<i64>, _>(10)?
            .and_then(|v| u32::try_from(v).ok()),
        cart: r.try_get(11)?,
        order_reference: r.try_get(12)?,
        last_seen: r.try_get::<Option<i64>, _>(13)?.map(from_ms),
        battery_health_percent: r.try_get(14)?,
        temperature_max_celsius: r.try_get(15)?,
        agent_version: r.try_get(16)?,
        enrolled_at: from_ms(r.try_get(17)?),
        state: state_of(r, 18)?,
    })
}

impl Store {
    /// Devices by state, overall and per authority, site, lot and model, within
    /// `scope`. Reads an aggregate of the whole fleet (one GROUP BY over every device,
    /// about a second at 100,000 devices), filtered here by scope. An aggregate older
    /// than [`OVERVIEW_MAX_AGE`] is still answered while one request's background task
    /// recomputes it, so no request waits for the GROUP BY but the first one and those
    /// after [`OVERVIEW_MAX_STALE`] of silence.
    pub async fn fleet_overview(
        &self,
        scope: &Scope,
        t: &StateThresholds,
        now: DateTime<Utc>,
    ) -> Result<Overview, StoreError> {
        let rows = {
            let mut cache = self.overview_cache.lock().await;
            match &mut *cache {
                Some(c) if c.thresholds == *t && c.computed.elapsed() < OVERVIEW_MAX_STALE => {
                    if c.computed.elapsed() >= OVERVIEW_MAX_AGE && !c.refreshing {
                        c.refreshing = true;
                        let store = self.clone();
                        let t = *t;
                        tokio::spawn(async move {
                            let rows = store.overview_rows(&t, now).await;
                            let mut cache = store.overview_cache.lock().await;
                            match rows {
                                Ok(rows) => {
                                    *cache =
                                        Some(OverviewCache::fresh(t, std::sync::Arc::new(rows)))
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "recomputing the fleet overview failed; a later request retries");
                                    if let Some(c) = &mut *cache {
                                        c.refreshing = false;
                                    }
                                }
                            }
                        });
                    }
                    c.rows.clone()
                }
                _ => {
                    // Holding the lock meanwhile: concurrent requests wait for this one
                    // recompute instead of each running their own.
                    let rows = std::sync::Arc::new(self.overview_rows(t, now).await?);
                    *cache = Some(OverviewCache::fresh(*t, rows.clone()));
                    rows
                }
            }
        };
        Ok(overview_in(scope, &rows))
    }

    /// The whole fleet's aggregate: devices are grouped on their delivery's keys first,
    /// and only the groups are joined to sites, organisations and lots.
    pub async fn overview_rows(
        &self,
        t: &StateThresholds,
        now: DateTime<Utc>,
    ) -> Result<Vec<OverviewRow>, StoreError> {
        let mut sql = Sql::new(
            "SELECT x.site_uai, s.name, o.id, o.name, o.coordinator_id, x.contract_ref, \
             x.lot_number, lo.title, lo.holder_id, x.model, x.st, x.n FROM (SELECT l.site_uai, \
             l.contract_ref, l.lot_number, COALESCE(l.model, d.product_name) AS model, ",
        );
        push_state(&mut sql, t, now);
        sql.push(
            " AS st, CAST(COUNT(*) AS BIGINT) AS n FROM devices d \
             LEFT JOIN deliveries l ON l.serial = d.serial \
             LEFT JOIN device_latest lt ON lt.device_id = d.device_id \
             WHERE d.revoked_at_ms IS NULL \
             GROUP BY l.site_uai, l.contract_ref, l.lot_number, \
             COALESCE(l.model, d.product_name), st) x \
             LEFT JOIN sites s ON s.uai = x.site_uai \
             LEFT JOIN organisations o ON o.id = s.owner_id \
             LEFT JOIN lots lo ON lo.contract_ref = x.contract_ref AND lo.number = x.lot_number",
        );
        sql.fetch_all(self)
            .await?
            .iter()
            .map(|r| {
                Ok(OverviewRow {
                    site: r.try_get(0)?,
                    site_name: r.try_get(1)?,
                    organisation: r.try_get(2)?,
                    organisation_name: r.try_get(3)?,
                    coordinator: r.try_get(4)?,
                    contract: r.try_get(5)?,
                    lot: r.try_get(6)?,
                    lot_title: r.try_get(7)?,
                    holder: r.try_get(8)?,
                    model: r.try_get(9)?,
                    state: state_of(r, 10)?,
                    devices: r.try_get(11)?,
                })
            })
            .collect()
    }

    /// One page of devices (by device id) matching `filter`, within `scope`.
    pub async fn fleet_page(
        &self,
        scope: &Scope,
        filter: &FleetFilter,
        limit: i64,
        t: &StateThresholds,
        now: DateTime<Utc>,
    ) -> Result<FleetPage, StoreError> {
        let limit = limit.clamp(1, 500);
        let mut sql = Sql::new(FLEET_COLUMNS);
        push_state(&mut sql, t, now);
        sql.push(DEVICE_JOINS);
        sql.push("WHERE d.revoked_at_ms IS NULL AND ");
        sql.scope(scope, "o", "lo");
        if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let serial = parc_protocol::normalize_serial(q).unwrap_or_else(|| q.to_uppercase());
            // Schools are few: find the matching ones first. A school holds many devices,
            // so its matches come quickly in id order; without one, serial and host name
            // prefixes are selective and drive the query through their indexes.
            let mut schools = Sql::new("SELECT uai FROM sites WHERE uai = ");
            schools
                .text(&q.to_uppercase())
                .push(" OR LOWER(name) LIKE ")
                .text(&format!("%{}%", like_escape(&q.to_lowercase())))
                .push(" ESCAPE '\\'");
            let uais: Vec<String> = schools
                .fetch_all(self)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            if uais.is_empty() {
                sql.push(" AND d.device_id IN (SELECT device_id FROM devices WHERE serial >= ")
                    .text(&serial)
                    .push(" AND serial < ")
                    .text(&prefix_end(&serial))
                    .push(" UNION SELECT device_id FROM devices WHERE hostname >= ")
                    .text(q)
                    .push(" AND hostname < ")
                    .text(&prefix_end(q))
                    .push(")");
            } else {
                sql.push(" AND ((d.serial >= ")
                    .text(&serial)
                    .push(" AND d.serial < ")
                    .text(&prefix_end(&serial))
                    .push(") OR (d.hostname >= ")
                    .text(q)
                    .push(" AND d.hostname < ")
                    .text(&prefix_end(q))
                    .push(") OR l.site_uai IN (");
                for (i, u) in uais.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.text(u);
                }
                sql.push("))");
            }
        }
        if let Some(state) = filter.state {
            sql.push(" AND ");
            push_state(&mut sql, t, now);
            sql.push(" = ").text(state.as_str());
        }
        if let Some(o) = &filter.organisation {
            sql.push(" AND o.id = ").text(o);
        }
        if let Some(site) = &filter.site {
            sql.push(" AND s.uai = ").text(site);
        }
        if let Some(lot) = &filter.lot {
            let (c, n) = lot.rsplit_once('#').unwrap_or((lot, ""));
            sql.push(" AND l.contract_ref = ")
                .text(c)
                .push(" AND l.lot_number = ")
                .int(n.parse().unwrap_or(-1));
        }
        if let Some(m) = &filter.model {
            sql.push(" AND COALESCE(l.model, d.product_name) = ")
                .text(m);
        }
        if let Some(after) = &filter.after {
            sql.push(" AND d.device_id > ").text(after);
        }
        sql.push(" ORDER BY d.device_id LIMIT ").int(limit + 1);
        let rows = sql.fetch_all(self).await?;
        let mut devices = rows
            .iter()
            .map(fleet_device)
            .collect::<Result<Vec<_>, _>>()?;
        let next_after = if devices.len() as i64 > limit {
            devices.truncate(limit as usize);
            devices.last().map(|d| d.device_id.clone())
        } else {
            None
        };
        Ok(FleetPage {
            devices,
            next_after,
        })
    }

    /// The device if `scope` may see it: the gate every per-device read goes through.
    pub async fn fleet_device(
        &self,
        scope: &Scope,
        device_id: &str,
        t: &StateThresholds,
        now: DateTime<Utc>,
    ) -> Result<Option<FleetDevice>, StoreError> {
        let mut sql = Sql::new(FLEET_COLUMNS);
        push_state(&mut sql, t, now);
        sql.push(DEVICE_JOINS);
        sql.push("WHERE d.device_id = ")
            .text(device_id)
            .push(" AND ");
        sql.scope(scope, "o", "lo");
        sql.fetch_all(self)
            .await?
            .first()
            .map(fleet_device)
            .transpose()
    }

    /// Deliveries (with their lots' terms and reporting device) within `scope`, by serial.
    pub async fn delivered_devices_in(
        &self,
        scope: &Scope,
    ) -> Result<Vec<DeliveredDevice>, StoreError> {
        let mut sql = Sql::new(&super::procurement::delivered_select("LEFT JOIN"));
        sql.push(
            " JOIN sites s ON s.uai = l.site_uai JOIN organisations o ON o.id = s.owner_id WHERE ",
        );
        sql.scope(scope, "o", "lo");
        sql.push(" ORDER BY l.serial");
        sql.fetch_all(self)
            .await?
            .iter()
            .map(super::procurement::delivered_from_row)
            .collect()
    }

    /// Site UAIs within `scope` (a holder's: the sites its lots delivered to).
    pub async fn site_uais_in(&self, scope: &Scope) -> Result<HashSet<String>, StoreError> {
        let mut sql = Sql::new(
            "SELECT DISTINCT s.uai FROM sites s JOIN organisations o ON o.id = s.owner_id \
             LEFT JOIN deliveries l ON l.site_uai = s.uai \
             LEFT JOIN lots lo ON lo.contract_ref = l.contract_ref AND lo.number = l.lot_number \
             WHERE ",
        );
        sql.scope(scope, "o", "lo");
        sql.fetch_all(self)
            .await?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }

    /// Order references within `scope`: a member's own (and, for a coordinator, its
    /// members'), a holder's lots'.
    pub async fn order_refs_in(&self, scope: &Scope) -> Result<HashSet<String>, StoreError> {
        let mut sql = Sql::new(
            "SELECT od.reference FROM orders od JOIN organisations o ON o.id = od.member_id \
             JOIN lots lo ON lo.contract_ref = od.contract_ref AND lo.number = od.lot_number \
             WHERE ",
        );
        sql.scope(scope, "o", "lo");
        sql.fetch_all(self)
            .await?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }

    /// Lots: all of them (public procurement data), a holder's own only.
    pub async fn lots_in(&self, scope: &Scope) -> Result<Vec<super::LotRow>, StoreError> {
        let lots = self.lots().await?;
        Ok(match scope {
            Scope::Holder(h) => lots.into_iter().filter(|l| &l.holder_id == h).collect(),
            _ => lots,
        })
    }

    /// Carts at the sites of `scope` (see [`Store::site_uais_in`]); a holder sees only the
    /// devices of its own lots in them.
    pub async fn carts_in(&self, scope: &Scope) -> Result<Vec<super::CartRow>, StoreError> {
        let sites = self.site_uais_in(scope).await?;
        let mut carts: Vec<super::CartRow> = self
            .carts()
            .await?
            .into_iter()
            .filter(|c| sites.contains(&c.site))
            .collect();
        if let Scope::Holder(_) = scope {
            let serials: HashSet<String> = self
                .delivered_devices_in(scope)
                .await?
                .into_iter()
                .map(|d| d.delivery.serial)
                .collect();
            for c in &mut carts {
                c.devices.retain(|d| serials.contains(&d.serial));
                c.last_seen = c.devices.iter().filter_map(|d| d.last_seen).max();
            }
        }
        Ok(carts)
    }

    /// Orders within `scope` (see [`Store::order_refs_in`]).
    pub async fn orders_in(&self, scope: &Scope) -> Result<Vec<super::OrderRow>, StoreError> {
        let refs = self.order_refs_in(scope).await?;
        Ok(self
            .orders()
            .await?
            .into_iter()
            .filter(|o| refs.contains(&o.reference))
            .collect())
    }

    /// Schools within `scope`.
    pub async fn sites_in(&self, scope: &Scope) -> Result<Vec<super::SiteRow>, StoreError> {
        let uais = self.site_uais_in(scope).await?;
        Ok(self
            .sites()
            .await?
            .into_iter()
            .filter(|s| uais.contains(&s.uai))
            .collect())
    }

    /// Health bodies (JSON text) of one device in `[from, to)` that contain `needle`
    /// (e.g. `"storage"`, to read SMART data only where there is some), oldest first,
    /// at most 2,000.
    pub async fn health_bodies_with(
        &self,
        device: &parc_protocol::DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        needle: &str,
    ) -> Result<Vec<(DateTime<Utc>, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT collected_at_ms, body FROM health_samples WHERE device_id = $1 \
             AND collected_at_ms >= $2 AND collected_at_ms < $3 AND body LIKE $4 \
             ORDER BY collected_at_ms LIMIT 2000",
        )
        .bind(device.as_str().to_string())
        .bind(ms(from))
        .bind(ms(to))
        .bind(format!("%{}%", needle.replace('%', "")))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((from_ms(r.try_get(0)?), r.try_get(1)?)))
            .collect()
    }

    /// Latest battery health of each of `devices` that has one.
    pub async fn latest_battery(
        &self,
        devices: &[String],
    ) -> Result<std::collections::HashMap<String, f64>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in devices.chunks(500) {
            let mut sql = Sql::new(
                "SELECT device_id, battery_health_percent FROM device_latest WHERE \
                 battery_health_percent IS NOT NULL AND device_id IN (",
            );
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.text(id);
            }
            sql.push(")");
            for r in sql.fetch_all(self).await? {
                out.insert(r.try_get(0)?, r.try_get(1)?);
            }
        }
        Ok(out)
    }

    /// Per lot and model within `scope`: delivered serials, those a device reports, and
    /// the faulty ones now.
    pub async fn lot_model_health(
        &self,
        scope: &Scope,
        t: &StateThresholds,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::scorecard::ModelHealth>, StoreError> {
        let mut sql = Sql::new(
            "SELECT l.contract_ref, l.lot_number, l.model, CAST(COUNT(*) AS BIGINT), \
             CAST(COUNT(d.device_id) AS BIGINT), CAST(SUM(CASE WHEN d.device_id IS NOT NULL AND ",
        );
        push_state(&mut sql, t, now);
        sql.push(
            " = 'faulty' THEN 1 ELSE 0 END) AS BIGINT) FROM deliveries l \
             JOIN sites s ON s.uai = l.site_uai JOIN organisations o ON o.id = s.owner_id \
             JOIN lots lo ON lo.contract_ref = l.contract_ref AND lo.number = l.lot_number \
             LEFT JOIN devices d ON d.serial = l.serial AND d.revoked_at_ms IS NULL \
             LEFT JOIN device_latest lt ON lt.device_id = d.device_id WHERE ",
        );
        sql.scope(scope, "o", "lo");
        sql.push(" GROUP BY l.contract_ref, l.lot_number, l.model ORDER BY l.contract_ref, l.lot_number, l.model");
        sql.fetch_all(self)
            .await?
            .iter()
            .map(|r| {
                Ok(crate::scorecard::ModelHealth {
                    contract: r.try_get(0)?,
                    lot: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
                    model: r.try_get(2)?,
                    delivered: r.try_get(3)?,
                    reporting: r.try_get(4)?,
                    faulty: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Tickets within `scope`, newest first. An authority sees its own tickets (a
    /// coordinator also its members'), a holder the tickets in its queue.
    pub async fn tickets_in(
        &self,
        scope: &Scope,
        f: &TicketFilter,
        limit: i64,
    ) -> Result<Vec<TicketView>, StoreError> {
        let cols: Vec<String> = super::tickets::TICKET_COLUMNS
            .split(',')
            .map(|c| format!("t.{}", c.trim()))
            .collect();
        let mut sql = Sql::new(&format!(
            "SELECT {}, h.company, s.name, s.departement, lo.business_opens_at, \
             lo.business_closes_at FROM tickets t \
             LEFT JOIN organisations o ON o.id = t.organisation_id \
             LEFT JOIN contract_holders h ON h.id = t.holder_id \
             LEFT JOIN sites s ON s.uai = t.site_uai \
             LEFT JOIN lots lo ON lo.contract_ref = t.contract_ref AND lo.number = t.lot_number \
             WHERE ",
            cols.join(", ")
        ));
        match scope {
            Scope::All => sql.push("1 = 1"),
            Scope::Organisation(o) => sql
                .push("(o.id = ")
                .text(o)
                .push(" OR o.coordinator_id = ")
                .text(o)
                .push(")"),
            Scope::Holder(h) => sql.push("t.queue = 'holder' AND t.holder_id = ").text(h),
        };
        if f.open_only {
            sql.push(" AND t.status NOT IN ('closed', 'rejected')");
        }
        if let Some(lot) = &f.lot {
            let (c, n) = lot.rsplit_once('#').unwrap_or((lot, ""));
            sql.push(" AND t.contract_ref = ")
                .text(c)
                .push(" AND t.lot_number = ")
                .int(n.parse().unwrap_or(-1));
        }
        if let Some(h) = &f.holder {
            sql.push(" AND t.holder_id = ").text(h);
        }
        if let Some(site) = &f.site {
            sql.push(" AND t.site_uai = ").text(site);
        }
        if let Some(d) = &f.device {
            sql.push(" AND (t.device_id = ")
                .text(d)
                .push(" OR t.id IN (SELECT ticket_id FROM ticket_devices WHERE device_id = ")
                .text(d)
                .push("))");
        }
        if let Some(r) = &f.reference {
            sql.push(" AND t.reference = ").text(r);
        }
        sql.push(" ORDER BY t.opened_at_ms DESC, t.id DESC LIMIT ")
            .int(limit.clamp(1, 10_000));
        let n = cols.len();
        sql.fetch_all(self)
            .await?
            .iter()
            .map(|r| {
                Ok(TicketView {
                    ticket: super::tickets::ticket_row(r)?,
                    holder: r.try_get(n)?,
                    site: r.try_get(n + 1)?,
                    departement: r.try_get(n + 2)?,
                    business_opens_at: r.try_get(n + 3)?,
                    business_closes_at: r.try_get(n + 4)?,
                })
            })
            .collect()
    }

    /// Most recent events of one device first.
    pub async fn device_events(
        &self,
        device_id: &str,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT occurred_at_ms, event_type, detail FROM events WHERE device_id = $1 \
             ORDER BY occurred_at_ms DESC LIMIT $2",
        )
        .bind(device_id.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    occurred_at: from_ms(r.try_get(0)?),
                    event_type: r.try_get(1)?,
                    detail: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Hours in use per device and per school in `[from, to)`, within `scope`.
    pub async fn usage(
        &self,
        scope: &Scope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Usage, StoreError> {
        let mut sql = Sql::new(
            "SELECT d.device_id, d.hostname, s.uai, s.name, u.hours FROM (SELECT device_id, \
             CAST(COUNT(*) AS BIGINT) AS hours FROM health_hourly WHERE hour_ms >= ",
        );
        sql.int(ms(from))
            .push(" AND hour_ms < ")
            .int(ms(to))
            .push(" GROUP BY device_id) u JOIN devices d ON d.device_id = u.device_id ")
            .push(
                "LEFT JOIN deliveries l ON l.serial = d.serial \
                 LEFT JOIN sites s ON s.uai = l.site_uai \
                 LEFT JOIN organisations o ON o.id = s.owner_id \
                 LEFT JOIN lots lo ON lo.contract_ref = l.contract_ref AND lo.number = l.lot_number \
                 WHERE ",
            )
            .scope(scope, "o", "lo")
            .push(" ORDER BY s.uai, d.device_id");
        let mut devices = Vec::new();
        let mut sites: BTreeMap<String, SiteUsage> = BTreeMap::new();
        for r in sql.fetch_all(self).await? {
            let u = DeviceUsage {
                device_id: r.try_get(0)?,
                hostname: r.try_get(1)?,
                site_uai: r.try_get(2)?,
                site: r.try_get(3)?,
                hours: r.try_get(4)?,
            };
            if let (Some(uai), Some(name)) = (&u.site_uai, &u.site) {
                let s = sites.entry(uai.clone()).or_insert_with(|| SiteUsage {
                    site_uai: uai.clone(),
                    site: name.clone(),
                    devices: 0,
                    hours: 0,
                });
                s.devices += 1;
                s.hours += u.hours;
            }
            devices.push(u);
        }
        Ok(Usage {
            from,
            to,
            devices,
            sites: sites.into_values().collect(),
        })
    }

    /// Copies into `device_latest` the newest health sample of every device that sent
    /// one collected at or after `since`. Returns the rows written. Samples collected in
    /// the same millisecond (two epochs, a replay) fold into one row — the worst battery,
    /// the hottest sensor — since PostgreSQL refuses to upsert one key twice.
    pub async fn refresh_device_latest(&self, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "INSERT INTO device_latest (device_id, collected_at_ms, battery_health_percent, \
             temperature_max_celsius) \
             SELECT h.device_id, h.collected_at_ms, MIN(h.battery_health_percent), \
             MAX(h.temperature_max_celsius) FROM health_samples h \
             JOIN (SELECT device_id, MAX(collected_at_ms) AS m FROM health_samples \
                   WHERE collected_at_ms >= $1 GROUP BY device_id) x \
               ON x.device_id = h.device_id AND x.m = h.collected_at_ms \
             WHERE TRUE GROUP BY h.device_id, h.collected_at_ms \
             ON CONFLICT (device_id) DO UPDATE SET collected_at_ms = excluded.collected_at_ms, \
             battery_health_percent = excluded.battery_health_percent, \
             temperature_max_celsius = excluded.temperature_max_celsius \
             WHERE excluded.collected_at_ms >= device_latest.collected_at_ms",
        )
        .bind(ms(since))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }
}
