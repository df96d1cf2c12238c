//! Rules and tickets in the database: the rule inbox, per-device rule states, findings,
//! tickets with their audit trail and grouped-claim members, the dispatch outbox, and
//! the lease that lets one replica at a time do this work.
//!
//! The maintenance worker drives a [`MaintenanceTx`]: everything one round decides
//! (states, findings, tickets, outbox rows, the inbox rows it consumed) commits
//! together or not at all, so a crash can neither lose a finding nor send a ticket
//! twice. This module decides nothing; it must never evaluate a rule or pick a queue.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use parc_protocol::ticket::{SiteRef, TicketDocument};
use parc_protocol::{Health, Inventory};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row as _, Transaction};

use super::batch::{param, placeholders};
use super::procurement::{lot_number, parse_day, warranty_terms};
use super::{Engine, Store, StoreError, from_ms, ms};
use crate::domain::warranty::WarrantyTerms;
use crate::rules::RuleState;

/// One health sample waiting for the rules. `health` is `None` when the sample was
/// pruned before the rules reached it (it is then just dropped from the inbox).
#[derive(Debug, Clone)]
pub struct InboxSample {
    pub device_id: String,
    pub epoch: String,
    pub seq: i64,
    pub collected_at: DateTime<Utc>,
    pub health: Option<Health>,
}

/// What [`MaintenanceTx::take_inbox`] took from the rules' queue.
#[derive(Debug, Default)]
pub struct Inbox {
    /// By device, then collection time.
    pub samples: Vec<InboxSample>,
    /// The queue rows they came from, deleted by [`MaintenanceTx::delete_inbox`].
    rows: Vec<i64>,
    /// More rows wait in the queue.
    pub more: bool,
}

/// The lot a device was delivered under, with what routing and deadlines need.
#[derive(Debug, Clone, PartialEq)]
pub struct LotContext {
    pub contract: String,
    pub number: u32,
    pub title: String,
    pub holder_id: String,
    pub holder_company: String,
    pub support_email: String,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub terms: WarrantyTerms,
    pub gti: Option<String>,
    pub gtr: Option<String>,
    pub opens_at: String,
    pub closes_at: String,
    pub penalty_per_day_cents: Option<i64>,
}

/// Everything the maintenance worker knows of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceContext {
    pub device_id: String,
    pub serial: Option<String>,
    pub hostname: Option<String>,
    /// The delivered model, else what the firmware reports.
    pub model: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub order_ref: Option<String>,
    pub delivered_on: Option<NaiveDate>,
    pub accepted_on: Option<NaiveDate>,
    pub cart: Option<String>,
    pub site: Option<SiteRef>,
    pub departement: Option<String>,
    /// The member authority that ordered it (else the site's owner).
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
    pub owner_self_maintained: bool,
    pub lot: Option<LotContext>,
    pub inventory: Option<Inventory>,
}

/// A ticket as the worker and the API see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketRow {
    pub id: i64,
    pub reference: String,
    pub kind: String,
    pub device_id: Option<String>,
    pub rule_id: String,
    pub category: String,
    pub severity: String,
    pub queue: String,
    pub route_reason: String,
    pub holder_id: Option<String>,
    pub organisation_id: Option<String>,
    pub contract_ref: Option<String>,
    pub lot_number: Option<u32>,
    pub model: Option<String>,
    pub site_uai: Option<String>,
    pub parent_id: Option<i64>,
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub in_progress_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub gti_due: Option<DateTime<Utc>>,
    pub gtr_due: Option<DateTime<Utc>>,
    pub penalty_per_day_cents: Option<i64>,
    pub occurrences: i64,
    pub last_finding_at: DateTime<Utc>,
    pub bad_since_resolved: i64,
}

pub(super) const TICKET_COLUMNS: &str = "id, reference, kind, device_id, rule_id, category, severity, \
     queue, route_reason, holder_id, organisation_id, contract_ref, lot_number, model, \
     site_uai, parent_id, status, opened_at_ms, sent_at_ms, acknowledged_at_ms, \
     in_progress_at_ms, resolved_at_ms, closed_at_ms, gti_due_ms, gtr_due_ms, \
     penalty_per_day_cents, occurrences, last_finding_at_ms, bad_since_resolved";

/// `TICKET_COLUMNS` qualified with a table alias, for joins.
fn ticket_columns_of(alias: &str) -> String {
    TICKET_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn opt_ms(r: &AnyRow, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(r.try_get::<Option<i64>, _>(i)?.map(from_ms))
}

pub(super) fn ticket_row(r: &AnyRow) -> Result<TicketRow, StoreError> {
    let reference: String = r.try_get(1)?;
    Ok(TicketRow {
        id: r.try_get(0)?,
        kind: r.try_get(2)?,
        device_id: r.try_get(3)?,
        rule_id: r.try_get(4)?,
        category: r.try_get(5)?,
        severity: r.try_get(6)?,
        queue: r.try_get(7)?,
        route_reason: r.try_get(8)?,
        holder_id: r.try_get(9)?,
        organisation_id: r.try_get(10)?,
        contract_ref: r.try_get(11)?,
        lot_number: r
            .try_get::<Option<i64>, _>(12)?
            .map(|n| lot_number(&reference, n))
            .transpose()?,
        model: r.try_get(13)?,
        site_uai: r.try_get(14)?,
        parent_id: r.try_get(15)?,
        status: r.try_get(16)?,
        opened_at: from_ms(r.try_get(17)?),
        sent_at: opt_ms(r, 18)?,
        acknowledged_at: opt_ms(r, 19)?,
        in_progress_at: opt_ms(r, 20)?,
        resolved_at: opt_ms(r, 21)?,
        closed_at: opt_ms(r, 22)?,
        gti_due: opt_ms(r, 23)?,
        gtr_due: opt_ms(r, 24)?,
        penalty_per_day_cents: r.try_get(25)?,
        occurrences: r.try_get(26)?,
        last_finding_at: from_ms(r.try_get(27)?),
        bad_since_resolved: r.try_get(28)?,
        reference,
    })
}

/// A ticket to open.
#[derive(Debug, Clone)]
pub struct NewTicket<'a> {
    pub kind: &'a str,
    pub open_key: &'a str,
    pub device_id: Option<&'a str>,
    pub rule_id: &'a str,
    pub category: &'a str,
    pub severity: &'a str,
    pub queue: &'a str,
    pub route_reason: &'a str,
    pub holder_id: Option<&'a str>,
    pub organisation_id: Option<&'a str>,
    pub contract_ref: Option<&'a str>,
    pub lot_number: Option<u32>,
    pub model: Option<&'a str>,
    pub site_uai: Option<&'a str>,
    pub gti_due: Option<DateTime<Utc>>,
    pub gtr_due: Option<DateTime<Utc>>,
    pub penalty_per_day_cents: Option<i64>,
    pub at: DateTime<Utc>,
}

/// A delivery the dispatcher owes.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub id: i64,
    pub ticket_id: i64,
    pub channel: String,
    pub destination: String,
    pub event: String,
    pub idempotency_key: String,
    pub attempts: i64,
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRow {
    pub channel: String,
    pub destination: String,
    pub event: String,
    pub idempotency_key: String,
    pub created_at: DateTime<Utc>,
    pub attempts: i64,
    pub delivered_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketEventRow {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub note: Option<String>,
}

/// Which tickets a query may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketScope {
    All,
    /// An authority's own tickets (its devices, whichever queue).
    Organisation(String),
    /// A contract holder's tickets: its queue only.
    Holder(String),
}

impl TicketScope {
    /// A SQL condition on the `tickets` table and its bind value, numbered from `n`.
    fn condition(&self, engine: Engine, n: usize) -> (String, Option<String>) {
        match self {
            TicketScope::All => ("1 = 1".into(), None),
            TicketScope::Organisation(id) => (
                format!("organisation_id = {}", param(engine, n)),
                Some(id.clone()),
            ),
            TicketScope::Holder(id) => (
                format!("queue = 'holder' AND holder_id = {}", param(engine, n)),
                Some(id.clone()),
            ),
        }
    }
}

/// One round of the maintenance worker.
pub struct MaintenanceTx {
    tx: Transaction<'static, Any>,
    engine: Engine,
}

fn id_list(engine: Engine, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| param(engine, i))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    pub async fn begin_maintenance(&self) -> Result<MaintenanceTx, StoreError> {
        Ok(MaintenanceTx {
            tx: self.begin_write().await?,
            engine: self.engine,
        })
    }

    /// Takes or renews the lease `name` for `holder` until `now + ttl`; false while
    /// another holder's lease runs.
    pub async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
             WHERE leases.holder = excluded.holder OR leases.until_ms < $4",
        )
        .bind(name.to_string())
        .bind(holder.to_string())
        .bind(ms(now + ttl))
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Deliveries due at `now`, oldest first.
    pub async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, ticket_id, channel, destination, event, idempotency_key, attempts \
             FROM outbox WHERE delivered_at_ms IS NULL AND outcome IS NULL \
             AND next_attempt_ms <= $1 ORDER BY next_attempt_ms, id LIMIT $2",
        )
        .bind(ms(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDelivery {
                    id: r.try_get(0)?,
                    ticket_id: r.try_get(1)?,
                    channel: r.try_get(2)?,
                    destination: r.try_get(3)?,
                    event: r.try_get(4)?,
                    idempotency_key: r.try_get(5)?,
                    attempts: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// When the next pending delivery falls due, if any.
    pub async fn next_delivery_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_ms) FROM outbox \
             WHERE delivered_at_ms IS NULL AND outcome IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(v.map(from_ms))
    }

    /// The ticket's stored document with its current status, occurrences and (for a
    /// grouped claim) devices, and the holder's webhook secret.
    pub async fn ticket_document(
        &self,
        ticket_id: i64,
    ) -> Result<(TicketDocument, Option<String>), StoreError> {
        let row = sqlx::query(
            "SELECT t.document, t.status, t.occurrences, h.webhook_secret FROM tickets t \
             LEFT JOIN contract_holders h ON h.id = t.holder_id WHERE t.id = $1",
        )
        .bind(ticket_id)
        .fetch_one(&self.pool)
        .await?;
        let text: String = row.try_get(0)?;
        let mut doc: TicketDocument =
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                what: format!("ticket {ticket_id}"),
                message: e.to_string(),
            })?;
        doc.status = row.try_get(1)?;
        doc.occurrences = u32::try_from(row.try_get::<i64, _>(2)?).unwrap_or(u32::MAX);
        Ok((doc, row.try_get(3)?))
    }

    /// Records a successful delivery: marks it, folds older pending updates of the
    /// same ticket and channel into it (it carried the current state), and moves a
    /// `new` ticket to `sent`.
    pub async fn delivery_succeeded(
        &self,
        d: &DueDelivery,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE outbox SET delivered_at_ms = $1, outcome = 'delivered', \
             attempts = attempts + 1, last_error = NULL WHERE id = $2",
        )
        .bind(ms(now))
        .bind(d.id)
        .execute(&mut *tx)
        .await?;
        let coalesced = sqlx::query(
            "UPDATE outbox SET delivered_at_ms = $1, outcome = 'coalesced' \
             WHERE ticket_id = $2 AND channel = $3 AND event = 'ticket.updated' \
             AND delivered_at_ms IS NULL AND outcome IS NULL AND id < $4",
        )
        .bind(ms(now))
        .bind(d.ticket_id)
        .bind(d.channel.clone())
        .bind(d.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let status: String = sqlx::query_scalar("SELECT status FROM tickets WHERE id = $1")
            .bind(d.ticket_id)
            .fetch_one(&mut *tx)
            .await?;
        // A reopened ticket stays `reopened` (its history says it was sent before).
        if status == "new" {
            set_status(
                &mut tx,
                d.ticket_id,
                &status,
                "sent",
                "system",
                Some(&format!("delivered by {}", d.channel)),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(coalesced)
    }

    /// Records a failed attempt: retry at `retry_at`, or give up when `None`.
    pub async fn delivery_failed(
        &self,
        d: &DueDelivery,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(1000).collect();
        match retry_at {
            Some(at) => {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = $1, \
                     last_error = $2 WHERE id = $3",
                )
                .bind(ms(at))
                .bind(error)
                .bind(d.id)
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, outcome = 'failed', \
                     last_error = $1 WHERE id = $2",
                )
                .bind(error)
                .bind(d.id)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Tickets in `scope`, newest first; `open_only` hides closed and rejected ones.
    pub async fn tickets(
        &self,
        scope: &TicketScope,
        open_only: bool,
        limit: i64,
    ) -> Result<Vec<TicketRow>, StoreError> {
        let (cond, bind) = scope.condition(self.engine, 1);
        let open = if open_only {
            " AND status NOT IN ('closed', 'rejected')"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE {cond}{open} \
             ORDER BY opened_at_ms DESC, id DESC LIMIT {}",
            param(self.engine, if bind.is_some() { 2 } else { 1 })
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(b) = bind {
            q = q.bind(b);
        }
        let rows = q.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(ticket_row).collect()
    }

    /// One ticket by reference, if `scope` may see it.
    pub async fn ticket(
        &self,
        scope: &TicketScope,
        reference: &str,
    ) -> Result<Option<TicketRow>, StoreError> {
        let (cond, bind) = scope.condition(self.engine, 2);
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE reference = $1 AND {cond}");
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(reference.to_string());
        if let Some(b) = bind {
            q = q.bind(b);
        }
        q.fetch_optional(&self.pool)
            .await?
            .map(|r| ticket_row(&r))
            .transpose()
    }

    /// Devices of a ticket: its device, or a grouped claim's members.
    pub async fn ticket_devices(&self, ticket_id: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT device_id FROM ticket_devices WHERE ticket_id = $1 ORDER BY device_id",
        )
        .bind(ticket_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn ticket_events(&self, ticket_id: i64) -> Result<Vec<TicketEventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms, actor, from_status, to_status, note FROM ticket_events \
             WHERE ticket_id = $1 ORDER BY id",
        )
        .bind(ticket_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TicketEventRow {
                    at: from_ms(r.try_get(0)?),
                    actor: r.try_get(1)?,
                    from_status: r.try_get(2)?,
                    to_status: r.try_get(3)?,
                    note: r.try_get(4)?,
                })
            })
            .collect()
    }

    pub async fn ticket_deliveries(&self, ticket_id: i64) -> Result<Vec<DeliveryRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, destination, event, idempotency_key, created_at_ms, attempts, \
             delivered_at_ms, outcome, last_error FROM outbox WHERE ticket_id = $1 ORDER BY id",
        )
        .bind(ticket_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRow {
                    channel: r.try_get(0)?,
                    destination: r.try_get(1)?,
                    event: r.try_get(2)?,
                    idempotency_key: r.try_get(3)?,
                    created_at: from_ms(r.try_get(4)?),
                    attempts: r.try_get(5)?,
                    delivered_at: opt_ms(r, 6)?,
                    outcome: r.try_get(7)?,
                    last_error: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// Moves a ticket (already checked by `tickets::check_transition`) and audits it;
    /// a change the holder should hear about queues an update on its channels.
    /// Returns false when the ticket was no longer in `from` (a concurrent change).
    #[allow(clippy::too_many_arguments)]
    pub async fn change_ticket_status(
        &self,
        ticket_id: i64,
        from: &str,
        to: &str,
        actor: &str,
        note: Option<&str>,
        notify: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT status FROM tickets WHERE id = $1")
                .bind(ticket_id)
                .fetch_optional(&mut *tx)
                .await?;
        if current.as_deref() != Some(from) {
            return Ok(false);
        }
        set_status(&mut tx, ticket_id, from, to, actor, note, now).await?;
        for (channel, destination) in notify {
            enqueue(
                &mut tx,
                ticket_id,
                channel,
                destination,
                "ticket.updated",
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Sets a contract holder's webhook address and signing secret.
    pub async fn set_holder_webhook(
        &self,
        holder_id: &str,
        url: &str,
        secret: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE contract_holders SET webhook_url = $1, webhook_secret = $2 WHERE id = $3",
        )
        .bind(url.to_string())
        .bind(secret.to_string())
        .bind(holder_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The channels a holder's tickets go out on: (channel, destination).
    pub async fn holder_channels(
        &self,
        holder_id: &str,
        email_enabled: bool,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        holder_channels(&mut conn, holder_id, email_enabled).await
    }

    /// Devices to check for silence: those seen before `seen_before`, and those whose
    /// silence rule is raised (to clear it).
    pub async fn silence_candidates(
        &self,
        seen_before: DateTime<Utc>,
        rule_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT device_id FROM devices WHERE revoked_at_ms IS NULL AND last_seen_ms < $1 \
             UNION SELECT device_id FROM rule_states WHERE rule_id = $2 AND raised = 1",
        )
        .bind(ms(seen_before))
        .bind(rule_id.to_string())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Holder-queue tickets opened in `[from, to)` (claims, not the device tickets
    /// merged into them), with the site's département and the lot's business hours,
    /// for penalties.
    pub async fn holder_tickets_opened(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(TicketRow, Option<String>, Option<String>, Option<String>)>, StoreError> {
        let cols = ticket_columns_of("t");
        let sql = format!(
            "SELECT {cols}, s.departement, lo.business_opens_at, lo.business_closes_at \
             FROM tickets t LEFT JOIN sites s ON s.uai = t.site_uai \
             LEFT JOIN lots lo ON lo.contract_ref = t.contract_ref AND lo.number = t.lot_number \
             WHERE t.queue = 'holder' AND t.parent_id IS NULL \
             AND t.opened_at_ms >= $1 AND t.opened_at_ms < $2 ORDER BY t.id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ms(from))
            .bind(ms(to))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    ticket_row(r)?,
                    r.try_get(29)?,
                    r.try_get(30)?,
                    r.try_get(31)?,
                ))
            })
            .collect()
    }
}

async fn holder_channels(
    conn: &mut sqlx::AnyConnection,
    holder_id: &str,
    email_enabled: bool,
) -> Result<Vec<(String, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT webhook_url, webhook_secret, support_email FROM contract_holders WHERE id = $1",
    )
    .bind(holder_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(r) => channels(
            r.try_get(0)?,
            r.try_get::<Option<String>, _>(1)?.is_some(),
            r.try_get(2)?,
            email_enabled,
        ),
        None => Vec::new(),
    })
}

/// Webhook when the holder has an address and a secret; e-mail when SMTP is set.
fn channels(
    webhook_url: Option<String>,
    has_secret: bool,
    support_email: String,
    email_enabled: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(url) = webhook_url.filter(|_| has_secret) {
        out.push(("webhook".to_string(), url));
    }
    if email_enabled && !support_email.is_empty() {
        out.push(("email".to_string(), support_email));
    }
    out
}

async fn set_status(
    tx: &mut Transaction<'static, Any>,
    ticket_id: i64,
    from: &str,
    to: &str,
    actor: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    // The first time a milestone is reached is what the deadlines are judged on;
    // a reopen clears the resolution so GTR runs again.
    let column = match to {
        "sent" => Some("sent_at_ms"),
        "acknowledged" => Some("acknowledged_at_ms"),
        "in_progress" => Some("in_progress_at_ms"),
        "resolved" => Some("resolved_at_ms"),
        "closed" | "rejected" => Some("closed_at_ms"),
        _ => None,
    };
    let mut sets = vec!["status = $1".to_string(), "updated_at_ms = $2".to_string()];
    if let Some(c) = column {
        if to == "resolved" || to == "closed" || to == "rejected" {
            sets.push(format!("{c} = $2"));
        } else {
            sets.push(format!("{c} = COALESCE({c}, $2)"));
        }
    }
    match to {
        "closed" | "rejected" => sets.push("open_key = NULL".into()),
        "reopened" => {
            sets.push("resolved_at_ms = NULL".into());
            sets.push("closed_at_ms = NULL".into());
            sets.push("bad_since_resolved = 0".into());
            // Takes its slot back (the key is derived from what the ticket is about).
            sets.push(
                "open_key = CASE WHEN kind = 'device' THEN 'device/' || device_id || '/' || rule_id \
                 ELSE open_key END"
                    .into(),
            );
        }
        "resolved" => sets.push("bad_since_resolved = 0".into()),
        _ => {}
    }
    let sql = format!("UPDATE tickets SET {} WHERE id = $3", sets.join(", "));
    sqlx::query(AssertSqlSafe(sql))
        .bind(to.to_string())
        .bind(ms(now))
        .bind(ticket_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO ticket_events (ticket_id, at_ms, actor, from_status, to_status, note) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(ticket_id)
    .bind(ms(now))
    .bind(actor.to_string())
    .bind(from.to_string())
    .bind(to.to_string())
    .bind(note.map(str::to_string))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn enqueue(
    tx: &mut Transaction<'static, Any>,
    ticket_id: i64,
    channel: &str,
    destination: &str,
    event: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("the OS random source works");
    let key = format!("parc-{ticket_id}-{channel}-{}", hex::encode(nonce));
    sqlx::query(
        "INSERT INTO outbox (ticket_id, channel, destination, event, idempotency_key, \
         created_at_ms, next_attempt_ms) VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(ticket_id)
    .bind(channel.to_string())
    .bind(destination.to_string())
    .bind(event.to_string())
    .bind(key)
    .bind(ms(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl MaintenanceTx {
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }

    /// The oldest rows of the rules' queue, about `max_samples` samples (whole rows, at
    /// least one), with their health bodies.
    pub async fn take_inbox(&mut self, max_samples: usize) -> Result<Inbox, StoreError> {
        let want = (max_samples / super::RULE_QUEUE_SLICE).max(1);
        let rows = sqlx::query("SELECT id, samples FROM rule_queue ORDER BY id LIMIT $1")
            .bind(want as i64 + 1)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut inbox = Inbox {
            more: rows.len() > want,
            ..Inbox::default()
        };
        let mut keys: Vec<(String, String, i64, i64)> = Vec::new();
        for r in rows.iter().take(want) {
            let id: i64 = r.try_get(0)?;
            let text: String = r.try_get(1)?;
            let slice: Vec<(String, String, i64, i64)> =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    what: format!("rule queue row {id}"),
                    message: e.to_string(),
                })?;
            inbox.rows.push(id);
            keys.extend(slice);
        }
        let mut bodies: HashMap<(String, String, i64), String> = HashMap::new();
        for chunk in keys.chunks(300) {
            let sql = format!(
                "SELECT device_id, epoch, seq, body FROM health_samples \
                 WHERE (device_id, epoch, seq) IN (VALUES {})",
                placeholders(self.engine, chunk.len(), 3)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (device, epoch, seq, _) in chunk {
                q = q.bind(device.clone()).bind(epoch.clone()).bind(*seq);
            }
            for r in q.fetch_all(&mut *self.tx).await? {
                bodies.insert((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?), r.try_get(3)?);
            }
        }
        keys.sort_by(|a, b| (&a.0, a.3, a.2).cmp(&(&b.0, b.3, b.2)));
        for (device_id, epoch, seq, collected_at_ms) in keys {
            let health = bodies
                .remove(&(device_id.clone(), epoch.clone(), seq))
                .map(|b| {
                    serde_json::from_str::<Health>(&b).map_err(|e| StoreError::Corrupt {
                        what: format!("health sample of {device_id}"),
                        message: e.to_string(),
                    })
                })
                .transpose()?;
            inbox.samples.push(InboxSample {
                device_id,
                epoch,
                seq,
                collected_at: from_ms(collected_at_ms),
                health,
            });
        }
        Ok(inbox)
    }

    /// Removes from the queue the rows `inbox` came from.
    pub async fn delete_inbox(&mut self, inbox: &Inbox) -> Result<(), StoreError> {
        if inbox.rows.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = (1..=inbox.rows.len())
            .map(|n| super::batch::param(self.engine, n))
            .collect();
        let sql = format!("DELETE FROM rule_queue WHERE id IN ({})", ids.join(", "));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in &inbox.rows {
            q = q.bind(*id);
        }
        q.execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Context of each device in `ids` that exists.
    pub async fn device_contexts(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<String, DeviceContext>, StoreError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(300) {
            let sql = format!(
                "SELECT d.device_id, d.serial, d.hostname, COALESCE(l.model, d.product_name), \
                 d.last_seen_ms, l.order_ref, l.delivered_on, l.accepted_on, l.cart_id, \
                 s.uai, s.name, s.street, s.postcode, s.city, s.departement, \
                 COALESCE(o.id, so.id), COALESCE(o.name, so.name), \
                 COALESCE(o.self_maintained, so.self_maintained), \
                 lo.contract_ref, lo.number, lo.title, h.id, h.company, h.support_email, \
                 h.webhook_url, h.webhook_secret, lo.warranty_months, lo.warranty_starts_at, \
                 lo.battery_months, lo.service_mode, lo.gti, lo.gtr, lo.business_opens_at, \
                 lo.business_closes_at, lo.penalty_per_day_cents, il.body \
                 FROM devices d \
                 LEFT JOIN deliveries l ON l.serial = d.serial \
                 LEFT JOIN sites s ON s.uai = l.site_uai \
                 LEFT JOIN orders ord ON ord.reference = l.order_ref \
                 LEFT JOIN organisations o ON o.id = ord.member_id \
                 LEFT JOIN organisations so ON so.id = s.owner_id \
                 LEFT JOIN lots lo ON lo.contract_ref = l.contract_ref AND lo.number = l.lot_number \
                 LEFT JOIN contract_holders h ON h.id = lo.holder_id \
                 LEFT JOIN inventory_latest il ON il.device_id = d.device_id \
                 WHERE d.device_id IN ({})",
                id_list(self.engine, 1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(&mut *self.tx).await? {
                let c = context_row(&r)?;
                out.insert(c.device_id.clone(), c);
            }
        }
        Ok(out)
    }

    pub async fn rule_states(
        &mut self,
        ids: &[String],
    ) -> Result<HashMap<(String, String), RuleState>, StoreError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(300) {
            let sql = format!(
                "SELECT device_id, rule_id, state FROM rule_states WHERE device_id IN ({})",
                id_list(self.engine, 1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(&mut *self.tx).await? {
                let device: String = r.try_get(0)?;
                let rule: String = r.try_get(1)?;
                let text: String = r.try_get(2)?;
                // A state written by another version that no longer parses restarts
                // the rule's hysteresis rather than blocking the device forever.
                let state = serde_json::from_str(&text).unwrap_or_else(|e| {
                    tracing::warn!(device = %device, rule = %rule, error = %e, "unreadable rule state reset");
                    RuleState::default()
                });
                out.insert((device, rule), state);
            }
        }
        Ok(out)
    }

    pub async fn save_rule_states(
        &mut self,
        states: &[(&str, &str, &RuleState)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for chunk in states.chunks(200) {
            let sql = format!(
                "INSERT INTO rule_states (device_id, rule_id, raised, state, updated_at_ms) \
                 VALUES {} ON CONFLICT (device_id, rule_id) DO UPDATE SET \
                 raised = excluded.raised, state = excluded.state, \
                 updated_at_ms = excluded.updated_at_ms",
                placeholders(self.engine, chunk.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (device, rule, state) in chunk {
                q = q
                    .bind(device.to_string())
                    .bind(rule.to_string())
                    .bind(i64::from(state.raised))
                    .bind(serde_json::to_string(state).expect("a rule state serializes"))
                    .bind(ms(now));
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Open device tickets of these devices (one query per 300 devices, through the
    /// `(device_id, rule_id)` index).
    pub async fn open_device_tickets(
        &mut self,
        ids: &[String],
    ) -> Result<Vec<TicketRow>, StoreError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(300) {
            let sql = format!(
                "SELECT {TICKET_COLUMNS} FROM tickets WHERE kind = 'device' \
                 AND open_key IS NOT NULL AND device_id IN ({})",
                id_list(self.engine, 1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(&mut *self.tx).await? {
                out.push(ticket_row(&r)?);
            }
        }
        Ok(out)
    }

    /// Open tickets whose `open_key` is one of `keys`.
    pub async fn open_tickets(&mut self, keys: &[String]) -> Result<Vec<TicketRow>, StoreError> {
        let mut out = Vec::new();
        for chunk in keys.chunks(300) {
            let sql = format!(
                "SELECT {TICKET_COLUMNS} FROM tickets WHERE open_key IN ({})",
                id_list(self.engine, 1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for k in chunk {
                q = q.bind(k.clone());
            }
            for r in q.fetch_all(&mut *self.tx).await? {
                out.push(ticket_row(&r)?);
            }
        }
        Ok(out)
    }

    pub async fn insert_finding(
        &mut self,
        device_id: &str,
        rule_id: &str,
        lot: Option<(&str, u32)>,
        model: Option<&str>,
        value: f64,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO findings (device_id, rule_id, contract_ref, lot_number, model, \
             raised_at_ms, value) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(device_id.to_string())
        .bind(rule_id.to_string())
        .bind(lot.map(|l| l.0.to_string()))
        .bind(lot.map(|l| i64::from(l.1)))
        .bind(model.map(str::to_string))
        .bind(ms(at))
        .bind(value)
        .fetch_one(&mut *self.tx)
        .await?)
    }

    /// Links findings to the ticket that carries them.
    pub async fn link_findings(&mut self, ids: &[i64], ticket_id: i64) -> Result<(), StoreError> {
        for id in ids {
            sqlx::query("UPDATE findings SET ticket_id = $1 WHERE id = $2")
                .bind(ticket_id)
                .bind(*id)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    pub async fn clear_findings(
        &mut self,
        device_id: &str,
        rule_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE findings SET cleared_at_ms = $1 WHERE device_id = $2 AND rule_id = $3 \
             AND cleared_at_ms IS NULL",
        )
        .bind(ms(at))
        .bind(device_id.to_string())
        .bind(rule_id.to_string())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Uncleared findings of one lot, model and rule raised since `since`:
    /// (finding id, device id), oldest first.
    pub async fn storm_findings(
        &mut self,
        contract: &str,
        lot: u32,
        model: &str,
        rule_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, device_id FROM findings WHERE contract_ref = $1 AND lot_number = $2 \
             AND model = $3 AND rule_id = $4 AND raised_at_ms >= $5 AND cleared_at_ms IS NULL \
             ORDER BY id",
        )
        .bind(contract.to_string())
        .bind(i64::from(lot))
        .bind(model.to_string())
        .bind(rule_id.to_string())
        .bind(ms(since))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Devices of a claim whose finding for `rule_id` is still uncleared.
    pub async fn claim_devices_still_faulty(
        &mut self,
        ticket_id: i64,
        rule_id: &str,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM ticket_devices td WHERE td.ticket_id = $1 AND EXISTS \
             (SELECT 1 FROM findings f WHERE f.device_id = td.device_id AND f.rule_id = $2 \
             AND f.cleared_at_ms IS NULL)",
        )
        .bind(ticket_id)
        .bind(rule_id.to_string())
        .fetch_one(&mut *self.tx)
        .await?)
    }

    /// The open grouped claim a device belongs to for `rule_id`, if any.
    pub async fn open_claim_of(
        &mut self,
        device_id: &str,
        rule_id: &str,
    ) -> Result<Option<TicketRow>, StoreError> {
        let cols = ticket_columns_of("t");
        let sql = format!(
            "SELECT {cols} FROM tickets t JOIN ticket_devices td ON td.ticket_id = t.id \
             WHERE td.device_id = $1 AND t.rule_id = $2 AND t.kind = 'batch' \
             AND t.open_key IS NOT NULL"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(device_id.to_string())
            .bind(rule_id.to_string())
            .fetch_optional(&mut *self.tx)
            .await?
            .map(|r| ticket_row(&r))
            .transpose()
    }

    /// Opens a ticket; its reference is made from its id. Returns (id, reference).
    pub async fn insert_ticket(
        &mut self,
        t: &NewTicket<'_>,
        prefix: &str,
        document: impl FnOnce(&str) -> TicketDocument,
    ) -> Result<(i64, String), StoreError> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).expect("the OS random source works");
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tickets (reference, kind, open_key, device_id, rule_id, category, \
             severity, queue, route_reason, holder_id, organisation_id, contract_ref, lot_number, \
             model, site_uai, status, opened_at_ms, gti_due_ms, gtr_due_ms, \
             penalty_per_day_cents, occurrences, last_finding_at_ms, document, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'new', \
             $16, $17, $18, $19, 1, $16, '{}', $16) RETURNING id",
        )
        .bind(format!("pending-{}", hex::encode(nonce)))
        .bind(t.kind.to_string())
        .bind(t.open_key.to_string())
        .bind(t.device_id.map(str::to_string))
        .bind(t.rule_id.to_string())
        .bind(t.category.to_string())
        .bind(t.severity.to_string())
        .bind(t.queue.to_string())
        .bind(t.route_reason.to_string())
        .bind(t.holder_id.map(str::to_string))
        .bind(t.organisation_id.map(str::to_string))
        .bind(t.contract_ref.map(str::to_string))
        .bind(t.lot_number.map(i64::from))
        .bind(t.model.map(str::to_string))
        .bind(t.site_uai.map(str::to_string))
        .bind(ms(t.at))
        .bind(t.gti_due.map(ms))
        .bind(t.gtr_due.map(ms))
        .bind(t.penalty_per_day_cents)
        .fetch_one(&mut *self.tx)
        .await?;
        let reference = crate::tickets::reference(prefix, chrono::Datelike::year(&t.at), id);
        let doc = document(&reference);
        sqlx::query("UPDATE tickets SET reference = $1, document = $2 WHERE id = $3")
            .bind(reference.clone())
            .bind(serde_json::to_string(&doc).expect("a ticket document serializes"))
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "INSERT INTO ticket_events (ticket_id, at_ms, actor, from_status, to_status, note) \
             VALUES ($1, $2, 'system', NULL, 'new', $3)",
        )
        .bind(id)
        .bind(ms(t.at))
        .bind(format!("opened: {}", t.route_reason))
        .execute(&mut *self.tx)
        .await?;
        Ok((id, reference))
    }

    /// Replaces a ticket's stored document (a claim's device list grew).
    pub async fn set_document(
        &mut self,
        ticket_id: i64,
        doc: &TicketDocument,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET document = $1 WHERE id = $2")
            .bind(serde_json::to_string(doc).expect("a ticket document serializes"))
            .bind(ticket_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn document(&mut self, ticket_id: i64) -> Result<TicketDocument, StoreError> {
        let text: String = sqlx::query_scalar("SELECT document FROM tickets WHERE id = $1")
            .bind(ticket_id)
            .fetch_one(&mut *self.tx)
            .await?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            what: format!("ticket {ticket_id}"),
            message: e.to_string(),
        })
    }

    pub async fn add_claim_device(
        &mut self,
        ticket_id: i64,
        device_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO ticket_devices (ticket_id, device_id, added_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (ticket_id, device_id) DO NOTHING",
        )
        .bind(ticket_id)
        .bind(device_id.to_string())
        .bind(ms(at))
        .execute(&mut *self.tx)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// A recurring finding on an open ticket.
    pub async fn recurrence(
        &mut self,
        ticket_id: i64,
        at: DateTime<Utc>,
        note: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tickets SET occurrences = occurrences + 1, last_finding_at_ms = $1, \
             updated_at_ms = $1 WHERE id = $2",
        )
        .bind(ms(at))
        .bind(ticket_id)
        .execute(&mut *self.tx)
        .await?;
        self.note(ticket_id, at, "system", note).await
    }

    /// An audit line without a status change.
    pub async fn note(
        &mut self,
        ticket_id: i64,
        at: DateTime<Utc>,
        actor: &str,
        note: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ticket_events (ticket_id, at_ms, actor, from_status, to_status, note) \
             VALUES ($1, $2, $3, NULL, NULL, $4)",
        )
        .bind(ticket_id)
        .bind(ms(at))
        .bind(actor.to_string())
        .bind(note.to_string())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn set_bad_since_resolved(
        &mut self,
        ticket_id: i64,
        n: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET bad_since_resolved = $1 WHERE id = $2")
            .bind(n)
            .bind(ticket_id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// A device ticket folded into a grouped claim.
    pub async fn merge_into(
        &mut self,
        ticket: &TicketRow,
        claim_id: i64,
        claim_reference: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET parent_id = $1 WHERE id = $2")
            .bind(claim_id)
            .bind(ticket.id)
            .execute(&mut *self.tx)
            .await?;
        set_status(
            &mut self.tx,
            ticket.id,
            &ticket.status,
            "closed",
            "system",
            Some(&format!("merged into grouped claim {claim_reference}")),
            at,
        )
        .await
    }

    pub async fn set_status(
        &mut self,
        ticket_id: i64,
        from: &str,
        to: &str,
        actor: &str,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        set_status(&mut self.tx, ticket_id, from, to, actor, note, at).await
    }

    pub async fn enqueue(
        &mut self,
        ticket_id: i64,
        channel: &str,
        destination: &str,
        event: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        enqueue(&mut self.tx, ticket_id, channel, destination, event, at).await
    }

    /// The channels a holder's tickets go out on (see [`Store::holder_channels`]).
    pub async fn holder_channels(
        &mut self,
        holder_id: &str,
        email_enabled: bool,
    ) -> Result<Vec<(String, String)>, StoreError> {
        holder_channels(&mut self.tx, holder_id, email_enabled).await
    }

    /// Recent readings of a health column for the evidence, oldest first.
    pub async fn history(
        &mut self,
        device_id: &str,
        column: HistoryColumn,
        since: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, f64)>, StoreError> {
        let col = match column {
            HistoryColumn::BatteryHealth => "battery_health_min",
            HistoryColumn::Temperature => "temperature_max_celsius",
        };
        // Hourly aggregates: a month of a battery curve in at most 720 points.
        let sql = format!(
            "SELECT hour_ms, {col} FROM health_hourly WHERE device_id = $1 AND hour_ms >= $2 \
             AND {col} IS NOT NULL ORDER BY hour_ms"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(device_id.to_string())
            .bind(ms(since))
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| Ok((from_ms(r.try_get(0)?), r.try_get(1)?)))
            .collect()
    }

    /// The channels a holder's tickets go out on (see [`Store::holder_channels`]).
    pub fn channels_of(lot: &LotContext, email_enabled: bool) -> Vec<(String, String)> {
        channels(
            lot.webhook_url.clone(),
            lot.webhook_secret.is_some(),
            lot.support_email.clone(),
            email_enabled,
        )
    }
}

/// Health columns kept hourly that make a useful evidence curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryColumn {
    BatteryHealth,
    Temperature,
}

fn context_row(r: &AnyRow) -> Result<DeviceContext, StoreError> {
    let device_id: String = r.try_get(0)?;
    let what = format!("device {device_id}");
    let day = |i: usize| -> Result<Option<NaiveDate>, StoreError> {
        r.try_get::<Option<String>, _>(i)?
            .map(|t| parse_day(&what, &t))
            .transpose()
    };
    let site = match r.try_get::<Option<String>, _>(9)? {
        Some(uai) => Some(SiteRef {
            uai,
            name: r.try_get(10)?,
            street: r.try_get(11)?,
            postcode: r.try_get(12)?,
            city: r.try_get(13)?,
        }),
        None => None,
    };
    let lot = match r.try_get::<Option<String>, _>(18)? {
        Some(contract) => Some(LotContext {
            number: lot_number(&what, r.try_get(19)?)?,
            title: r.try_get(20)?,
            holder_id: r.try_get(21)?,
            holder_company: r.try_get(22)?,
            support_email: r.try_get(23)?,
            webhook_url: r.try_get(24)?,
            webhook_secret: r.try_get(25)?,
            terms: warranty_terms(
                &what,
                r.try_get(26)?,
                &r.try_get::<String, _>(27)?,
                r.try_get(28)?,
                &r.try_get::<String, _>(29)?,
            )?,
            gti: r.try_get(30)?,
            gtr: r.try_get(31)?,
            opens_at: r.try_get(32)?,
            closes_at: r.try_get(33)?,
            penalty_per_day_cents: r.try_get(34)?,
            contract,
        }),
        None => None,
    };
    let inventory = r
        .try_get::<Option<String>, _>(35)?
        .and_then(|b| serde_json::from_str::<Inventory>(&b).ok());
    Ok(DeviceContext {
        serial: r.try_get(1)?,
        hostname: r.try_get(2)?,
        model: r.try_get(3)?,
        last_seen: r.try_get::<Option<i64>, _>(4)?.map(from_ms),
        order_ref: r.try_get(5)?,
        delivered_on: day(6)?,
        accepted_on: day(7)?,
        cart: r.try_get(8)?,
        site,
        departement: r.try_get(14)?,
        owner_id: r.try_get(15)?,
        owner_name: r.try_get(16)?,
        owner_self_maintained: r.try_get::<Option<i64>, _>(17)?.unwrap_or(0) != 0,
        lot,
        inventory,
        device_id,
    })
}
