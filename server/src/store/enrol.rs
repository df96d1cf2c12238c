//! Enrolment tokens and device credentials in the database: issuing, listing and
//! revoking tokens, enrolling (or re-enrolling) a device in one transaction, and
//! checking broker passwords.
//!
//! Secrets arrive here already hashed, except device keys (the HMAC check needs them).
//! It must never accept an expired, revoked or used-up token, and never re-enrol a
//! revoked device.

use chrono::{DateTime, Utc};
use parc_protocol::{DeviceId, DeviceKey};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Row as _};

use super::{Store, StoreError, from_ms, ms};

/// A token as listed to administrators (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRow {
    pub id: String,
    pub label: String,
    pub scope: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub max_uses: Option<i64>,
    pub uses: i64,
}

pub struct NewTokenRecord<'a> {
    pub id: &'a str,
    pub secret_sha256: &'a str,
    pub label: &'a str,
    pub scope: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
    pub max_uses: Option<i64>,
}

/// What a device sends to enrol, with the credentials the server drew for it.
pub struct EnrolmentRequest<'a> {
    pub token_id: &'a str,
    pub token_secret_sha256: &'a str,
    pub serial: Option<&'a str>,
    pub manufacturer: Option<&'a str>,
    pub product_name: Option<&'a str>,
    pub hostname: Option<&'a str>,
    pub agent_version: &'a str,
    pub macs: &'a [String],
    /// Used only when the hardware is not already known.
    pub new_device_id: &'a DeviceId,
    pub key: &'a DeviceKey,
    pub mqtt_password_sha256: &'a str,
    pub mosquitto_line_for: &'a (dyn Fn(&DeviceId) -> String + Sync),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub device_id: DeviceId,
    pub reenrolled: bool,
}

/// Why an enrolment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrolmentRefused {
    /// Unknown id or wrong secret: deliberately the same answer.
    #[error("the enrolment token is not valid")]
    InvalidToken,
    #[error("the enrolment token expired on {0}")]
    Expired(DateTime<Utc>),
    #[error("the enrolment token was revoked")]
    Revoked,
    #[error("the enrolment token was already used {0} times, its limit")]
    UsedUp(i64),
    #[error("this device was revoked; an administrator must delete it before it can enrol again")]
    DeviceRevoked,
}

fn token_row(r: &sqlx::any::AnyRow) -> Result<TokenRow, StoreError> {
    Ok(TokenRow {
        id: r.try_get("id")?,
        label: r.try_get("label")?,
        scope: r.try_get("scope")?,
        created_at: from_ms(r.try_get("created_at_ms")?),
        expires_at: from_ms(r.try_get("expires_at_ms")?),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at_ms")?.map(from_ms),
        max_uses: r.try_get("max_uses")?,
        uses: r.try_get("uses")?,
    })
}

const TOKEN_COLUMNS: &str =
    "id, label, scope, created_at_ms, expires_at_ms, revoked_at_ms, max_uses, uses";

impl Store {
    pub async fn create_token(
        &self,
        t: &NewTokenRecord<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, secret_sha256, label, scope, created_at_ms, \
             expires_at_ms, max_uses) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(t.id.to_string())
        .bind(t.secret_sha256.to_string())
        .bind(t.label.to_string())
        .bind(t.scope.map(str::to_string))
        .bind(ms(now))
        .bind(ms(t.expires_at))
        .bind(t.max_uses)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let sql =
            format!("SELECT {TOKEN_COLUMNS} FROM enrollment_tokens ORDER BY created_at_ms, id");
        sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(token_row)
            .collect()
    }

    /// Returns false when no such token exists or it was already revoked.
    pub async fn revoke_token(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE enrollment_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(ms(now))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Enrols a device, or re-enrols known hardware (same normalised serial and
    /// manufacturer, or — without a serial — a shared hardware MAC) under its existing
    /// id with new credentials.
    pub async fn enroll(
        &self,
        req: &EnrolmentRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Result<Enrolled, EnrolmentRefused>, StoreError> {
        // SQLite: the write lock up front (a transaction that read first and then wrote
        // failed with "database is locked" when enrolments ran concurrently).
        // PostgreSQL: take the token's row for writing first, which serialises
        // enrolments on one token so `max_uses` cannot be overrun by a race.
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE enrollment_tokens SET uses = uses WHERE id = $1")
            .bind(req.token_id.to_string())
            .execute(&mut *tx)
            .await?;
        let sql =
            format!("SELECT {TOKEN_COLUMNS}, secret_sha256 FROM enrollment_tokens WHERE id = $1");
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(req.token_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Err(EnrolmentRefused::InvalidToken));
        };
        let secret: String = row.try_get("secret_sha256")?;
        if secret != req.token_secret_sha256 {
            return Ok(Err(EnrolmentRefused::InvalidToken));
        }
        let token = token_row(&row)?;
        if token.revoked_at.is_some() {
            return Ok(Err(EnrolmentRefused::Revoked));
        }
        if token.expires_at <= now {
            return Ok(Err(EnrolmentRefused::Expired(token.expires_at)));
        }
        if let Some(max) = token.max_uses
            && token.uses >= max
        {
            return Ok(Err(EnrolmentRefused::UsedUp(max)));
        }

        let existing = if let Some(serial) = req.serial {
            sqlx::query(
                "SELECT device_id, revoked_at_ms FROM devices WHERE serial = $1 \
                 AND (manufacturer IS NULL OR $2 IS NULL OR manufacturer = $2) \
                 ORDER BY enrolled_at_ms DESC LIMIT 1",
            )
            .bind(serial.to_string())
            .bind(req.manufacturer.map(str::to_string))
            .fetch_optional(&mut *tx)
            .await?
        } else if !req.macs.is_empty() {
            let macs = &req.macs[..req.macs.len().min(16)];
            let cond: Vec<String> = (0..macs.len())
                .map(|i| format!("macs LIKE ${}", i + 1))
                .collect();
            let sql = format!(
                "SELECT device_id, revoked_at_ms FROM devices WHERE serial IS NULL AND ({}) \
                 ORDER BY enrolled_at_ms DESC LIMIT 1",
                cond.join(" OR ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for m in macs {
                q = q.bind(format!("%{m}%"));
            }
            q.fetch_optional(&mut *tx).await?
        } else {
            None
        };
        let (device_id, reenrolled) = match existing {
            Some(r) => {
                if r.try_get::<Option<i64>, _>("revoked_at_ms")?.is_some() {
                    return Ok(Err(EnrolmentRefused::DeviceRevoked));
                }
                let id: String = r.try_get("device_id")?;
                let id = DeviceId::parse(&id).map_err(|message| StoreError::Corrupt {
                    what: "a device id".into(),
                    message,
                })?;
                (id, true)
            }
            None => (req.new_device_id.clone(), false),
        };
        let macs = (!req.macs.is_empty()).then(|| req.macs.join(","));
        sqlx::query(
            "INSERT INTO devices (device_id, key_b64, serial, manufacturer, product_name, hostname, \
             agent_version, enrolled_at_ms, mqtt_password_sha256, mosquitto_password_line, token_id, macs) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (device_id) DO UPDATE SET key_b64 = excluded.key_b64, \
             serial = COALESCE(excluded.serial, devices.serial), \
             manufacturer = COALESCE(excluded.manufacturer, devices.manufacturer), \
             product_name = COALESCE(excluded.product_name, devices.product_name), \
             hostname = COALESCE(excluded.hostname, devices.hostname), \
             agent_version = excluded.agent_version, enrolled_at_ms = excluded.enrolled_at_ms, \
             mqtt_password_sha256 = excluded.mqtt_password_sha256, \
             mosquitto_password_line = excluded.mosquitto_password_line, \
             token_id = excluded.token_id, macs = COALESCE(excluded.macs, devices.macs)",
        )
        .bind(device_id.as_str().to_string())
        .bind(req.key.to_base64())
        .bind(req.serial.map(str::to_string))
        .bind(req.manufacturer.map(str::to_string))
        .bind(req.product_name.map(str::to_string))
        .bind(req.hostname.map(str::to_string))
        .bind(req.agent_version.to_string())
        .bind(ms(now))
        .bind(req.mqtt_password_sha256.to_string())
        .bind((req.mosquitto_line_for)(&device_id))
        .bind(token.id.clone())
        .bind(macs)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1")
            .bind(token.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(Enrolled {
            device_id,
            reenrolled,
        }))
    }

    /// Whether `username` is an enrolled, unrevoked device whose broker password
    /// hashes to `password_sha256`.
    pub async fn check_mqtt_password(
        &self,
        username: &str,
        password_sha256: &str,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT mqtt_password_sha256 FROM devices WHERE device_id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(username.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => r
                .try_get::<Option<String>, _>(0)?
                .is_some_and(|h| h == password_sha256),
            None => false,
        })
    }

    /// Mosquitto password-file lines of every enrolled, unrevoked device.
    pub async fn mosquitto_password_lines(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT mosquitto_password_line FROM devices WHERE revoked_at_ms IS NULL \
             AND mosquitto_password_line IS NOT NULL ORDER BY device_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }
}
