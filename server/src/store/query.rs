//! Read queries for the HTTP API, metrics and tests: devices, counts, health series,
//! component history and the quarantine.
//!
//! Read-only: nothing here may write. Aggregates are cast to BIGINT or DOUBLE in SQL
//! because PostgreSQL returns NUMERIC for SUM over integers, which `Any` cannot map.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use parc_protocol::DeviceId;
use serde::Serialize;
use sqlx::Row as _;

use super::{Engine, Store, StoreError, from_ms, ms};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    pub devices: i64,
    pub devices_online: i64,
    pub devices_revoked: i64,
    pub messages: i64,
    pub health_samples: i64,
    pub health_hours: i64,
    pub events: i64,
    pub inventories: i64,
    pub inventory_changes: i64,
    pub quarantined: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceRow {
    pub device_id: String,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub product_name: Option<String>,
    pub hostname: Option<String>,
    pub agent_version: Option<String>,
    pub enrolled_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    pub online: Option<bool>,
    pub battery_health_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthPoint {
    pub collected_at: DateTime<Utc>,
    pub battery_health_percent: Option<f64>,
    pub battery_charge_percent: Option<f64>,
    pub temperature_max_celsius: Option<f64>,
    pub cpu_usage_percent: Option<f64>,
    pub memory_used_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourlyPoint {
    pub hour: DateTime<Utc>,
    pub samples: i64,
    pub battery_health_min: Option<f64>,
    pub battery_charge_avg: Option<f64>,
    pub temperature_max_celsius: Option<f64>,
    pub cpu_usage_avg: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InventoryChangeRow {
    pub changed_at: DateTime<Utc>,
    pub component: String,
    pub slot: String,
    pub change: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineRow {
    pub received_at: DateTime<Utc>,
    pub topic: String,
    pub reason: String,
    pub error: String,
    pub size_bytes: i64,
    pub head: String,
}

fn avg(sum: f64, count: i64) -> Option<f64> {
    (count > 0).then(|| sum / count as f64)
}

impl Store {
    async fn scalar(&self, sql: &'static str) -> Result<i64, StoreError> {
        Ok(sqlx::query(sql).fetch_one(&self.pool).await?.try_get(0)?)
    }

    /// Refreshes the planner's statistics after a bulk load (a benchmark's fill, a large
    /// import). PostgreSQL's autovacuum would do it within minutes, but until then the
    /// planner guesses the fleet's size and picks whole-table joins for the dashboard's
    /// paged queries; SQLite gets `PRAGMA optimize`, which analyses only what needs it.
    pub async fn analyze(&self) -> Result<(), StoreError> {
        let sql = match self.engine {
            Engine::Sqlite => "PRAGMA optimize",
            Engine::Postgres => "ANALYZE",
        };
        sqlx::query(sql).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let mut c = Counts {
            devices: self.scalar("SELECT COUNT(*) FROM devices").await?,
            devices_online: self
                .scalar(
                    "SELECT COUNT(*) FROM devices WHERE online = TRUE AND revoked_at_ms IS NULL",
                )
                .await?,
            devices_revoked: self
                .scalar("SELECT COUNT(*) FROM devices WHERE revoked_at_ms IS NOT NULL")
                .await?,
            // Health samples are their own dedup record (see `batch`); other kinds are in
            // `received`.
            messages: self
                .scalar(
                    "SELECT (SELECT COUNT(*) FROM received) + (SELECT COUNT(*) FROM health_samples)",
                )
                .await?,
            health_samples: self.scalar("SELECT COUNT(*) FROM health_samples").await?,
            health_hours: self.scalar("SELECT COUNT(*) FROM health_hourly").await?,
            events: self.scalar("SELECT COUNT(*) FROM events").await?,
            inventories: self.scalar("SELECT COUNT(*) FROM inventory_latest").await?,
            inventory_changes: self
                .scalar("SELECT COUNT(*) FROM inventory_changes")
                .await?,
            quarantined: BTreeMap::new(),
        };
        for r in sqlx::query("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason")
            .fetch_all(&self.pool)
            .await?
        {
            c.quarantined.insert(r.try_get(0)?, r.try_get(1)?);
        }
        Ok(c)
    }

    /// Devices whose last status was online.
    pub async fn devices_online(&self) -> Result<i64, StoreError> {
        self.scalar("SELECT COUNT(*) FROM devices WHERE online = TRUE AND revoked_at_ms IS NULL")
            .await
    }

    /// Messages stored for one device (all kinds), counted on the dedup records.
    pub async fn message_count(&self, device: &DeviceId) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT (SELECT COUNT(*) FROM received WHERE device_id = $1) \
                 + (SELECT COUNT(*) FROM health_samples WHERE device_id = $1)",
        )
        .bind(device.as_str().to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?)
    }

    pub async fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.device_id, d.serial, d.manufacturer, d.product_name, d.hostname, \
             d.agent_version, d.enrolled_at_ms, d.revoked_at_ms, d.first_seen_ms, d.last_seen_ms, \
             CAST(CASE WHEN d.online THEN 1 WHEN NOT d.online THEN 0 END AS BIGINT) AS online, (SELECT h.battery_health_percent FROM health_samples h \
               WHERE h.device_id = d.device_id ORDER BY h.collected_at_ms DESC LIMIT 1) AS bh \
             FROM devices d ORDER BY d.device_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(DeviceRow {
                    device_id: r.try_get(0)?,
                    serial: r.try_get(1)?,
                    manufacturer: r.try_get(2)?,
                    product_name: r.try_get(3)?,
                    hostname: r.try_get(4)?,
                    agent_version: r.try_get(5)?,
                    enrolled_at: from_ms(r.try_get(6)?),
                    revoked_at: r.try_get::<Option<i64>, _>(7)?.map(from_ms),
                    first_seen: r.try_get::<Option<i64>, _>(8)?.map(from_ms),
                    last_seen: r.try_get::<Option<i64>, _>(9)?.map(from_ms),
                    // Read as an integer: sqlx's Any driver cannot decode SQLite BOOLEAN.
                    online: r.try_get::<Option<i64>, _>(10)?.map(|v| v != 0),
                    battery_health_percent: r.try_get(11)?,
                })
            })
            .collect()
    }

    pub async fn health_series(
        &self,
        device: &DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<HealthPoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT collected_at_ms, battery_health_percent, battery_charge_percent, \
             temperature_max_celsius, cpu_usage_percent, memory_used_percent FROM health_samples \
             WHERE device_id = $1 AND collected_at_ms >= $2 AND collected_at_ms < $3 \
             ORDER BY collected_at_ms",
        )
        .bind(device.as_str().to_string())
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(HealthPoint {
                    collected_at: from_ms(r.try_get(0)?),
                    battery_health_percent: r.try_get(1)?,
                    battery_charge_percent: r.try_get(2)?,
                    temperature_max_celsius: r.try_get(3)?,
                    cpu_usage_percent: r.try_get(4)?,
                    memory_used_percent: r.try_get(5)?,
                })
            })
            .collect()
    }

    pub async fn hourly_series(
        &self,
        device: &DeviceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<HourlyPoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT hour_ms, samples, battery_health_min, battery_charge_sum, battery_charge_count, \
             temperature_max_celsius, cpu_usage_sum, cpu_usage_count FROM health_hourly \
             WHERE device_id = $1 AND hour_ms >= $2 AND hour_ms < $3 ORDER BY hour_ms",
        )
        .bind(device.as_str().to_string())
        .bind(ms(from))
        .bind(ms(to))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(HourlyPoint {
                    hour: from_ms(r.try_get(0)?),
                    samples: r.try_get(1)?,
                    battery_health_min: r.try_get(2)?,
                    battery_charge_avg: avg(r.try_get(3)?, r.try_get(4)?),
                    temperature_max_celsius: r.try_get(5)?,
                    cpu_usage_avg: avg(r.try_get(6)?, r.try_get(7)?),
                })
            })
            .collect()
    }

    pub async fn inventory_changes(
        &self,
        device: &DeviceId,
    ) -> Result<Vec<InventoryChangeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT changed_at_ms, component, slot, change, before_value, after_value \
             FROM inventory_changes WHERE device_id = $1 ORDER BY changed_at_ms, id",
        )
        .bind(device.as_str().to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(InventoryChangeRow {
                    changed_at: from_ms(r.try_get(0)?),
                    component: r.try_get(1)?,
                    slot: r.try_get(2)?,
                    change: r.try_get(3)?,
                    before: r.try_get(4)?,
                    after: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The latest inventory as stored (JSON text), if any.
    pub async fn latest_inventory(&self, device: &DeviceId) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT body FROM inventory_latest WHERE device_id = $1")
            .bind(device.as_str().to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Most recent quarantined publishes first.
    pub async fn quarantine(&self, limit: i64) -> Result<Vec<QuarantineRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT received_at_ms, topic, reason, error, size_bytes, head FROM quarantine \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(QuarantineRow {
                    received_at: from_ms(r.try_get(0)?),
                    topic: r.try_get(1)?,
                    reason: r.try_get(2)?,
                    error: r.try_get(3)?,
                    size_bytes: r.try_get(4)?,
                    head: r.try_get(5)?,
                })
            })
            .collect()
    }
}
