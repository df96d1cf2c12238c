//! Agent releases in the database: publishing an archive (its bytes included, so every
//! replica serves the same file), setting a release's rollout, listing releases, serving
//! an archive, and the facts a rollout decision needs (a device's site, the fleet's
//! versions).
//!
//! It must never decide who gets a release (that is `crate::releases`) and never
//! change an archive once published: a new build is a new version.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row as _;

use super::{Store, StoreError, from_ms, ms};
use crate::releases::{ReleaseInfo, Rollout};

/// An archive to publish, already checked by `crate::releases`.
pub struct NewRelease<'a> {
    pub channel: &'a str,
    pub version: &'a str,
    pub file_name: &'a str,
    pub target: &'a str,
    pub sha256: &'a str,
    pub archive: &'a [u8],
    pub percent: i64,
    pub sites: &'a [String],
}

/// An `update_*` event a device reported (applied, refused, rolled back).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateEventRow {
    pub device_id: String,
    pub occurred_at: DateTime<Utc>,
    pub event_type: String,
    pub detail: Option<String>,
    pub data: Option<serde_json::Value>,
}

/// An online device that may be told of a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceTarget {
    pub device_id: String,
    pub key_b64: String,
    pub agent_version: Option<String>,
    pub site: Option<String>,
}

/// How many devices run each agent version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionCount {
    /// None for devices that never said hello.
    pub agent_version: Option<String>,
    pub devices: i64,
    pub online: i64,
}

const COLUMNS: &str = "channel, version, file_name, target, sha256, size_bytes, published_at_ms, \
     rollout_percent, rollout_sites, rollout_at_ms";

fn release_row(r: &sqlx::any::AnyRow) -> Result<ReleaseInfo, StoreError> {
    let sites: String = r.try_get("rollout_sites")?;
    Ok(ReleaseInfo {
        channel: r.try_get("channel")?,
        version: r.try_get("version")?,
        file_name: r.try_get("file_name")?,
        target: r.try_get("target")?,
        sha256: r.try_get("sha256")?,
        size_bytes: r.try_get("size_bytes")?,
        published_at: from_ms(r.try_get("published_at_ms")?),
        rollout: Rollout {
            percent: r.try_get("rollout_percent")?,
            sites: sites
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            updated_at: from_ms(r.try_get("rollout_at_ms")?),
        },
    })
}

impl Store {
    /// Stores a release. Returns false, changing nothing, when this channel already has
    /// an archive of that name.
    pub async fn publish_release(
        &self,
        r: &NewRelease<'_>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO agent_releases (channel, version, file_name, target, sha256, size_bytes, \
             archive, published_at_ms, rollout_percent, rollout_sites, rollout_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (channel, file_name) DO NOTHING",
        )
        .bind(r.channel.to_string())
        .bind(r.version.to_string())
        .bind(r.file_name.to_string())
        .bind(r.target.to_string())
        .bind(r.sha256.to_string())
        .bind(r.archive.len() as i64)
        .bind(r.archive.to_vec())
        .bind(ms(now))
        .bind(r.percent)
        .bind(r.sites.join(","))
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the rollout of every archive of `version` on `channel`; returns how many
    /// archives it changed (0: no such release).
    pub async fn set_rollout(
        &self,
        channel: &str,
        version: &str,
        percent: i64,
        sites: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE agent_releases SET rollout_percent = $1, rollout_sites = $2, rollout_at_ms = $3 \
             WHERE channel = $4 AND version = $5",
        )
        .bind(percent)
        .bind(sites.join(","))
        .bind(ms(now))
        .bind(channel.to_string())
        .bind(version.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Releases, newest publication first; one channel or all.
    pub async fn releases(&self, channel: Option<&str>) -> Result<Vec<ReleaseInfo>, StoreError> {
        let rows = match channel {
            Some(c) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM agent_releases WHERE channel = $1 \
                     ORDER BY published_at_ms DESC, file_name"
                )))
                .bind(c.to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM agent_releases ORDER BY published_at_ms DESC, channel, file_name"
                )))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(release_row).collect()
    }

    /// The bytes of a published archive.
    pub async fn release_archive(
        &self,
        channel: &str,
        file_name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row =
            sqlx::query("SELECT archive FROM agent_releases WHERE channel = $1 AND file_name = $2")
                .bind(channel.to_string())
                .bind(file_name.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<Vec<u8>, _>(0)?),
            None => None,
        })
    }

    /// The site (UAI) of a device for rollouts: where its delivery went, else the scope
    /// of the token that enrolled it. `Ok(None)` for an unknown device too.
    pub async fn device_site(&self, device_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT dl.site_uai, t.scope FROM devices d \
             LEFT JOIN deliveries dl ON dl.serial = d.serial \
             LEFT JOIN enrollment_tokens t ON t.id = d.token_id \
             WHERE d.device_id = $1",
        )
        .bind(device_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let delivered: Option<String> = row.try_get(0)?;
        let scope: Option<String> = row.try_get(1)?;
        Ok(delivered.or(scope))
    }

    /// The latest `update_*` events, of one device or of the fleet, newest first.
    pub async fn update_events(
        &self,
        device_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<UpdateEventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT device_id, occurred_at_ms, event_type, detail, data FROM events \
             WHERE event_type IN ('update_applied', 'update_refused', 'update_rolled_back') AND ($1 = '' OR device_id = $1) \
             ORDER BY occurred_at_ms DESC, seq DESC LIMIT $2",
        )
        .bind(device_id.unwrap_or("").to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let data: Option<String> = r.try_get(4)?;
                Ok(UpdateEventRow {
                    device_id: r.try_get(0)?,
                    occurred_at: from_ms(r.try_get(1)?),
                    event_type: r.try_get(2)?,
                    detail: r.try_get(3)?,
                    data: data.and_then(|d| serde_json::from_str(&d).ok()),
                })
            })
            .collect()
    }

    /// Online, non-revoked devices with what a rollout decision needs.
    pub async fn announce_targets(&self) -> Result<Vec<AnnounceTarget>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.device_id, d.key_b64, d.agent_version, dl.site_uai, t.scope FROM devices d \
             LEFT JOIN deliveries dl ON dl.serial = d.serial \
             LEFT JOIN enrollment_tokens t ON t.id = d.token_id \
             WHERE d.online AND d.revoked_at_ms IS NULL ORDER BY d.device_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let delivered: Option<String> = r.try_get(3)?;
                let scope: Option<String> = r.try_get(4)?;
                Ok(AnnounceTarget {
                    device_id: r.try_get(0)?,
                    key_b64: r.try_get(1)?,
                    agent_version: r.try_get(2)?,
                    site: delivered.or(scope),
                })
            })
            .collect()
    }

    /// Whether `device` was already told of `version` on `channel`.
    pub async fn was_announced(
        &self,
        device: &str,
        channel: &str,
        version: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM release_announcements WHERE device_id = $1 AND channel = $2 AND version = $3",
        )
        .bind(device.to_string())
        .bind(channel.to_string())
        .bind(version.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub async fn record_announcement(
        &self,
        device: &str,
        channel: &str,
        version: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO release_announcements (device_id, channel, version, announced_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (device_id, channel, version) DO NOTHING",
        )
        .bind(device.to_string())
        .bind(channel.to_string())
        .bind(version.to_string())
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Devices per reported agent version (revoked devices left out).
    pub async fn fleet_versions(&self) -> Result<Vec<VersionCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent_version, CAST(COUNT(*) AS BIGINT), \
             CAST(SUM(CASE WHEN online THEN 1 ELSE 0 END) AS BIGINT) \
             FROM devices WHERE revoked_at_ms IS NULL \
             GROUP BY agent_version ORDER BY agent_version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VersionCount {
                    agent_version: r.try_get(0)?,
                    devices: r.try_get(1)?,
                    online: r.try_get::<Option<i64>, _>(2)?.unwrap_or(0),
                })
            })
            .collect()
    }
}
