//! Accounts, browser sessions and API tokens in the store (migrations 0006).
//!
//! Only hashes are stored: argon2id PHC strings for passwords (computed by
//! `crate::auth`), SHA-256 of the high-entropy session and token secrets. This module
//! must never receive or return a clear password, and never decide who may do what
//! (that is `crate::auth`'s).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{Store, StoreError, from_ms, ms};
use crate::auth::{Principal, Role};

/// An account as stored, with its password hash (never serialised).
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub principal: Principal,
    pub password_hash: String,
    pub disabled: bool,
}

/// An account for listings: no hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountInfo {
    pub login: String,
    pub display_name: String,
    pub role: Role,
    pub organisation_id: Option<String>,
    pub holder_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub disabled: bool,
}

/// Why an account could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountRefused {
    #[error("an account `{0}` already exists")]
    Exists(String),
    #[error("no organisation has the id `{0}`")]
    UnknownOrganisation(String),
    #[error("no contract holder has the id `{0}`")]
    UnknownHolder(String),
}

pub struct NewAccount<'a> {
    pub login: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
    pub organisation_id: Option<&'a str>,
    pub holder_id: Option<&'a str>,
}

const ACCOUNT_COLUMNS: &str = "a.login, a.display_name, a.role, a.organisation_id, a.holder_id, \
     a.password_hash, a.disabled_at_ms";

fn account_from(r: &AnyRow) -> Result<AccountRow, StoreError> {
    let login: String = r.try_get(0)?;
    let role: String = r.try_get(2)?;
    let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt {
        what: format!("account {login}"),
        message: format!("unknown role {role:?}"),
    })?;
    Ok(AccountRow {
        principal: Principal {
            display_name: r.try_get(1)?,
            role,
            organisation_id: r.try_get(3)?,
            holder_id: r.try_get(4)?,
            login,
        },
        password_hash: r.try_get(5)?,
        disabled: r.try_get::<Option<i64>, _>(6)?.is_some(),
    })
}

impl Store {
    /// Creates an account; refuses an existing login or a dangling attachment.
    pub async fn create_account(
        &self,
        a: &NewAccount<'_>,
        now: DateTime<Utc>,
    ) -> Result<Result<(), AccountRefused>, StoreError> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT 1 FROM accounts WHERE login = $1")
            .bind(a.login.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .is_some()
        {
            return Ok(Err(AccountRefused::Exists(a.login.to_string())));
        }
        if let Some(org) = a.organisation_id {
            let q = sqlx::query("SELECT 1 FROM organisations WHERE id = $1").bind(org.to_string());
            if q.fetch_optional(&mut *tx).await?.is_none() {
                return Ok(Err(AccountRefused::UnknownOrganisation(org.to_string())));
            }
        }
        if let Some(h) = a.holder_id {
            let q = sqlx::query("SELECT 1 FROM contract_holders WHERE id = $1").bind(h.to_string());
            if q.fetch_optional(&mut *tx).await?.is_none() {
                return Ok(Err(AccountRefused::UnknownHolder(h.to_string())));
            }
        }
        sqlx::query(
            "INSERT INTO accounts (login, display_name, password_hash, role, organisation_id, \
             holder_id, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.login.to_string())
        .bind(a.display_name.to_string())
        .bind(a.password_hash.to_string())
        .bind(a.role.as_str())
        .bind(a.organisation_id.map(str::to_string))
        .bind(a.holder_id.map(str::to_string))
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Replaces an account's password hash and ends its sessions. False when unknown.
    pub async fn set_password(&self, login: &str, password_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE login = $2")
            .bind(password_hash.to_string())
            .bind(login.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE login = $1")
            .bind(login.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn accounts(&self) -> Result<Vec<AccountInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT login, display_name, role, organisation_id, holder_id, created_at_ms, \
             disabled_at_ms FROM accounts ORDER BY login",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let login: String = r.try_get(0)?;
                let role: String = r.try_get(2)?;
                Ok(AccountInfo {
                    role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt {
                        what: format!("account {login}"),
                        message: format!("unknown role {role:?}"),
                    })?,
                    display_name: r.try_get(1)?,
                    organisation_id: r.try_get(3)?,
                    holder_id: r.try_get(4)?,
                    created_at: from_ms(r.try_get(5)?),
                    disabled: r.try_get::<Option<i64>, _>(6)?.is_some(),
                    login,
                })
            })
            .collect()
    }

    pub async fn account(&self, login: &str) -> Result<Option<AccountRow>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.login = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(login.to_string())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| account_from(&r))
            .transpose()
    }

    pub async fn create_session(
        &self,
        secret_sha256: &str,
        login: &str,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (secret_sha256, login, csrf_token, created_at_ms, \
             expires_at_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(secret_sha256.to_string())
        .bind(login.to_string())
        .bind(csrf_token.to_string())
        .bind(ms(now))
        .bind(ms(expires))
        .execute(&self.pool)
        .await?;
        // Expired sessions go with each login: the table stays the size of active use.
        sqlx::query("DELETE FROM sessions WHERE expires_at_ms < $1")
            .bind(ms(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The account and CSRF token of a live session of an enabled account.
    pub async fn session(
        &self,
        secret_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Principal, String)>, StoreError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS}, s.csrf_token FROM sessions s \
             JOIN accounts a ON a.login = s.login \
             WHERE s.secret_sha256 = $1 AND s.expires_at_ms > $2 AND a.disabled_at_ms IS NULL"
        );
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(secret_sha256.to_string())
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((account_from(&r)?.principal, r.try_get(7)?)))
    }

    pub async fn delete_session(&self, secret_sha256: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE secret_sha256 = $1")
            .bind(secret_sha256.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores an API token for `login` (its id and the secret's SHA-256). False when
    /// the account does not exist.
    pub async fn create_api_token(
        &self,
        id: &str,
        secret_sha256: &str,
        login: &str,
        label: &str,
        now: DateTime<Utc>,
        expires: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        if self.account(login).await?.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO api_tokens (id, secret_sha256, login, label, created_at_ms, \
             expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(secret_sha256.to_string())
        .bind(login.to_string())
        .bind(label.to_string())
        .bind(ms(now))
        .bind(expires.map(ms))
        .execute(&self.pool)
        .await?;
        Ok(true)
    }

    /// The principal of a live, unrevoked token of an enabled account, with the stored
    /// secret hash for the caller to compare in constant time.
    pub async fn api_token(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Principal, String)>, StoreError> {
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS}, t.secret_sha256 FROM api_tokens t \
             JOIN accounts a ON a.login = t.login WHERE t.id = $1 AND t.revoked_at_ms IS NULL \
             AND (t.expires_at_ms IS NULL OR t.expires_at_ms > $2) AND a.disabled_at_ms IS NULL"
        );
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(ms(now))
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((account_from(&r)?.principal, r.try_get(7)?)))
    }

    pub async fn revoke_api_token(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(ms(now))
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }
}
