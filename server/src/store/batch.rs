//! Writing one ingest batch in one transaction: dedup on (device_id, epoch, seq) —
//! health samples on their own table's key, other kinds on `received` — then the
//! hourly aggregates of new health samples, events, inventories with their
//! component changes, presence, last-seen times, the quarantine, and the rules' inbox.
//!
//! Frequent kinds (health, events) go in multi-row statements so a batch of a
//! thousand messages costs a handful of round trips. It must never commit part of a
//! batch: the caller acknowledges the whole batch to the broker after the commit.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use parc_protocol::{Body, Event, Health, Inventory, Kind, Message, Presence};
use sha2::{Digest as _, Sha256};
use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments as _, AssertSqlSafe, Row as _, Transaction};

use super::{Engine, Store, StoreError, ms};
use crate::inventory_diff;

/// A refused publish, kept for diagnosis.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    pub received_at: DateTime<Utc>,
    pub topic: String,
    pub reason: &'static str,
    pub error: String,
    pub size_bytes: usize,
    /// The first bytes of the payload, as lossy UTF-8.
    pub head: String,
}

impl Quarantined {
    /// Bytes of payload kept: enough to recognise it, never a whole report.
    pub const HEAD_BYTES: usize = 256;

    pub fn new(
        received_at: DateTime<Utc>,
        topic: &str,
        payload: &[u8],
        reason: &'static str,
        error: String,
    ) -> Self {
        let head = &payload[..payload.len().min(Self::HEAD_BYTES)];
        // Topics come from the network too: bound them.
        let topic: String = topic.chars().take(256).collect();
        Self {
            received_at,
            topic,
            reason,
            error: error.chars().take(1024).collect(),
            size_bytes: payload.len(),
            head: String::from_utf8_lossy(head).into_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Item {
    Accepted(Box<Accepted>),
    /// Boxed, as `Accepted` is: an item is a pointer wide, so a full queue and a batch's
    /// vectors stay small.
    Rejected(Box<Quarantined>),
}

impl Item {
    /// A decoded, authenticated message to store. What the store keeps of a health
    /// report (its body as JSON, its summary figures) is computed here, by the caller:
    /// the ingest does it on the task that reads from the broker, so that the writer,
    /// whose commits are the pipeline's one serial step, only binds ready values.
    pub fn accepted(message: Message) -> Self {
        let health = match &message.body {
            Body::Health(h) => Some(HealthRow {
                // Re-serialised rather than kept as sent: only the fields this
                // protocol version knows are stored.
                body: health_json(h),
                figures: HealthFigures::of(h),
            }),
            _ => None,
        };
        Self::Accepted(Box::new(Accepted { message, health }))
    }
}

/// A health body as JSON. Written into a buffer that fits a typical report (636 bytes
/// in `ingest_bench`): `serde_json::to_string` starts at 128 bytes and doubles, copying
/// the text three times on the way.
fn health_json(h: &Health) -> String {
    let mut buf = Vec::with_capacity(1024);
    serde_json::to_writer(&mut buf, h).expect("health serializes");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// A message accepted for storage (see [`Item::accepted`]).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub message: Message,
    health: Option<HealthRow>,
}

/// The stored form of a health report.
#[derive(Debug, Clone)]
struct HealthRow {
    body: String,
    figures: HealthFigures,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// New messages stored, by kind.
    pub stored: BTreeMap<&'static str, u64>,
    /// Messages already stored (broker redelivery or replay).
    pub duplicates: u64,
    /// Messages older than raw retention: acknowledged but not stored (they would be
    /// pruned at once and could no longer be deduplicated).
    pub stale: u64,
    pub quarantined: BTreeMap<&'static str, u64>,
    /// A `status` message changed some device's presence.
    pub presence_changed: bool,
    /// Component changes recorded from new inventories.
    pub inventory_changes: u64,
    /// New health samples queued for the rules.
    pub health_queued: u64,
}

/// The `n`th bind parameter (from 1) in the engine's preferred form.
pub(super) fn param(engine: Engine, n: usize) -> String {
    match engine {
        Engine::Sqlite => "?".to_string(),
        Engine::Postgres => format!("${n}"),
    }
}

/// "($1, $2), ($3, $4)" for `rows` rows of `cols` columns; "(?, ?), (?, ?)" on SQLite.
///
/// SQLite gets anonymous `?`: sqlx asks SQLite for each parameter's name, and for
/// `$N` names SQLite finds it by a linear scan — quadratic in a 5,000-parameter
/// statement, which made SQLite batches CPU-bound (measured in ingest_bench).
pub(super) fn placeholders(engine: Engine, rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    let mut n = 1;
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&param(engine, n));
            n += 1;
        }
        s.push(')');
    }
    s
}

/// Rows per multi-row statement: well under SQLite's 32,766 and PostgreSQL's 65,535
/// bind parameters for our widest table.
const ROWS_PER_STATEMENT: usize = 400;

pub(super) fn seq_i64(seq: u64) -> i64 {
    // The protocol caps seq at 2^53 − 1.
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Summary figures of one health sample, extracted for aggregation and queries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct HealthFigures {
    pub battery_health_percent: Option<f64>,
    pub battery_charge_percent: Option<f64>,
    pub battery_cycle_count: Option<i64>,
    pub temperature_max_celsius: Option<f64>,
    pub cpu_usage_percent: Option<f64>,
    pub memory_used_percent: Option<f64>,
    pub load_1: Option<f64>,
}

fn min_f(it: impl Iterator<Item = f64>) -> Option<f64> {
    it.reduce(f64::min)
}

fn max_f(it: impl Iterator<Item = f64>) -> Option<f64> {
    it.reduce(f64::max)
}

impl HealthFigures {
    pub fn of(h: &Health) -> Self {
        Self {
            // The worst battery is the one a technician must hear about.
            battery_health_percent: min_f(h.batteries.iter().filter_map(|b| b.health_percent)),
            battery_charge_percent: min_f(h.batteries.iter().filter_map(|b| b.charge_percent)),
            battery_cycle_count: h
                .batteries
                .iter()
                .filter_map(|b| b.cycle_count)
                .max()
                .map(i64::from),
            temperature_max_celsius: max_f(h.temperatures.iter().map(|t| t.celsius)),
            cpu_usage_percent: h.cpu_usage_percent,
            memory_used_percent: match (h.memory_used_bytes, h.memory_total_bytes) {
                (Some(u), Some(t)) if t > 0 => Some(u as f64 * 100.0 / t as f64),
                _ => None,
            },
            load_1: h.load_1,
        }
    }
}

#[derive(Debug, Default)]
struct Hourly {
    samples: i64,
    battery_health_min: Option<f64>,
    battery_charge: (f64, i64),
    temperature_max: Option<f64>,
    cpu: (f64, i64),
    memory: (f64, i64),
    load: (f64, i64),
}

impl Hourly {
    fn add(&mut self, f: &HealthFigures) {
        fn acc(a: &mut (f64, i64), v: Option<f64>) {
            if let Some(v) = v {
                a.0 += v;
                a.1 += 1;
            }
        }
        self.samples += 1;
        self.battery_health_min = min_f(
            self.battery_health_min
                .into_iter()
                .chain(f.battery_health_percent),
        );
        self.temperature_max = max_f(
            self.temperature_max
                .into_iter()
                .chain(f.temperature_max_celsius),
        );
        acc(&mut self.battery_charge, f.battery_charge_percent);
        acc(&mut self.cpu, f.cpu_usage_percent);
        acc(&mut self.memory, f.memory_used_percent);
        acc(&mut self.load, f.load_1);
    }
}

const HOUR_MS: i64 = 3_600_000;

/// How stale a device's `last_seen_ms` may get while it reports.
const LAST_SEEN_RESOLUTION_MS: i64 = 60_000;

impl Store {
    /// Stores one batch atomically. `stale_before`: messages collected earlier are
    /// counted as stale and not stored.
    pub async fn write_batch(
        &self,
        items: &[Item],
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<BatchOutcome, StoreError> {
        // Almost every batch is all new: its health rows go in without asking the
        // database which ones were kept. If one was already stored (a redelivery), that
        // transaction is dropped and the batch is written again, asking row by row.
        let mut dedup = Dedup::Assume;
        loop {
            // `Dedup::Ask` always comes back with an outcome.
            if let Some(out) = self.write_batch_as(items, now, stale_before, dedup).await? {
                return Ok(out);
            }
            dedup = Dedup::Ask;
        }
    }

    /// One attempt at a batch; `None` when `Dedup::Assume` met a stored health sample
    /// (nothing is committed then).
    async fn write_batch_as(
        &self,
        items: &[Item],
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
        dedup: Dedup,
    ) -> Result<Option<BatchOutcome>, StoreError> {
        let mut out = BatchOutcome::default();
        let engine = self.engine;
        let now_ms = ms(now);
        let mut accepted: Vec<&Accepted> = Vec::with_capacity(items.len());
        let mut rejected: Vec<&Quarantined> = Vec::new();
        let mut keys_in_batch = HashSet::with_capacity(items.len());
        for item in items {
            match item {
                Item::Accepted(a) => {
                    let m = &a.message;
                    if m.header.collected_at < stale_before {
                        out.stale += 1;
                    } else if keys_in_batch.insert((
                        m.header.device_id.as_str(),
                        m.header.epoch.as_str(),
                        m.header.seq,
                    )) {
                        accepted.push(a);
                    } else {
                        out.duplicates += 1;
                    }
                }
                Item::Rejected(q) => rejected.push(q.as_ref()),
            }
        }

        let mut tx = self.begin_write().await?;
        // Health reports, the bulk of the traffic, are deduplicated by their own table's
        // primary key (one insert instead of two); the other kinds by `received`.
        let mut samples: Vec<Sample> = Vec::with_capacity(accepted.len());
        let mut keyed: Vec<&Message> = Vec::new();
        for a in accepted {
            match &a.health {
                Some(row) => samples.push(Sample { m: &a.message, row }),
                None => keyed.push(&a.message),
            }
        }
        // Inserted grouped by device (each device's reports keep their arrival order):
        // consecutive rows then land on the same leaves of the two device-ordered indexes,
        // whose pages are still in the CPU's cache, instead of a different device's each
        // time (`populate`, 200 devices, batches of 5,000: 70,700 → 82,200 rows/s).
        samples.sort_by(|a, b| a.m.header.device_id.cmp(&b.m.header.device_id));
        let mut fresh: Vec<&Message> = Vec::with_capacity(keyed.len());
        for chunk in keyed.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO received (device_id, epoch, seq, kind, received_at_ms) VALUES {} \
                 ON CONFLICT (device_id, epoch, seq) DO NOTHING RETURNING device_id, epoch, seq",
                placeholders(engine, chunk.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for m in chunk {
                q = q
                    .bind(m.header.device_id.as_str().to_string())
                    .bind(m.header.epoch.as_str().to_string())
                    .bind(seq_i64(m.header.seq))
                    .bind(m.kind().as_str())
                    .bind(now_ms);
            }
            let rows = q.fetch_all(&mut *tx).await?;
            out.duplicates += keep_new(chunk, |m| m, rows, &mut fresh)?;
        }
        let Some(health) = insert_health_samples(&mut tx, engine, &samples, now_ms, dedup).await?
        else {
            // Dropping `tx` rolls it back.
            return Ok(None);
        };
        out.duplicates += (samples.len() - health.len()) as u64;
        if !health.is_empty() {
            out.stored
                .insert(Kind::Health.as_str(), health.len() as u64);
        }

        let mut events = Vec::new();
        let mut others = Vec::new();
        for m in &fresh {
            *out.stored.entry(m.kind().as_str()).or_default() += 1;
            match &m.body {
                Body::Event(e) => events.push((*m, e)),
                _ => others.push(*m),
            }
        }
        merge_hourly(&mut tx, engine, &health).await?;
        // The rules judge each new sample exactly once: queue it in this transaction,
        // a row per slice (see migration 0007).
        let slices: Vec<String> = health
            .chunks(super::RULE_QUEUE_SLICE)
            .map(|slice| {
                let keys: Vec<(&str, &str, i64, i64)> = slice
                    .iter()
                    .map(|Sample { m, .. }| {
                        (
                            m.header.device_id.as_str(),
                            m.header.epoch.as_str(),
                            seq_i64(m.header.seq),
                            ms(m.header.collected_at),
                        )
                    })
                    .collect();
                serde_json::to_string(&keys).expect("sample keys serialize")
            })
            .collect();
        if !slices.is_empty() {
            let sql = format!(
                "INSERT INTO rule_queue (samples) VALUES {}",
                placeholders(engine, slices.len(), 1)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for s in slices {
                q = q.bind(s);
            }
            q.execute(&mut *tx).await?;
        }
        out.health_queued = health.len() as u64;
        insert_events(&mut tx, engine, &events, now_ms).await?;
        // Inventories in collection order, so that changes read forwards in time.
        others.sort_by_key(|m| m.header.collected_at);
        for m in others {
            match &m.body {
                Body::Inventory(inv) => {
                    out.inventory_changes += store_inventory(&mut tx, m, inv, now_ms).await?;
                }
                Body::Status(s) => {
                    let r = sqlx::query(
                        "UPDATE devices SET online = $1, status_at_ms = $2 WHERE device_id = $3 \
                         AND (status_at_ms IS NULL OR status_at_ms <= $2)",
                    )
                    .bind(s.state == Presence::Online)
                    .bind(ms(m.header.collected_at))
                    .bind(m.header.device_id.as_str().to_string())
                    .execute(&mut *tx)
                    .await?;
                    out.presence_changed |= r.rows_affected() > 0;
                }
                Body::Hello(h) => {
                    sqlx::query("UPDATE devices SET agent_version = $1 WHERE device_id = $2")
                        .bind(h.agent_version.clone())
                        .bind(m.header.device_id.as_str().to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                _ => {}
            }
        }

        let seen: BTreeSet<&str> = fresh
            .iter()
            .copied()
            .chain(health.iter().map(|s| s.m))
            .map(|m| m.header.device_id.as_str())
            .collect();
        let seen: Vec<&str> = seen.into_iter().collect();
        for chunk in seen.chunks(ROWS_PER_STATEMENT) {
            // "Last seen" is kept to the minute: a device reporting every few seconds
            // would otherwise rewrite its row (and the row's four index entries) in
            // every batch. The time twice (`?` cannot be reused), the threshold, the ids.
            let (t1, t2, t3) = (param(engine, 1), param(engine, 2), param(engine, 3));
            let ids: Vec<String> = (4..chunk.len() + 4).map(|n| param(engine, n)).collect();
            let sql = format!(
                "UPDATE devices SET last_seen_ms = {t1}, first_seen_ms = COALESCE(first_seen_ms, {t2}) \
                 WHERE (last_seen_ms IS NULL OR last_seen_ms <= {t3}) AND device_id IN ({})",
                ids.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql))
                .bind(now_ms)
                .bind(now_ms)
                .bind(now_ms - LAST_SEEN_RESOLUTION_MS);
            for d in chunk {
                q = q.bind(d.to_string());
            }
            q.execute(&mut *tx).await?;
        }

        for chunk in rejected.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO quarantine (received_at_ms, topic, reason, error, size_bytes, head) \
                 VALUES {}",
                placeholders(engine, chunk.len(), 6)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                *out.quarantined.entry(r.reason).or_default() += 1;
                q = q
                    .bind(ms(r.received_at))
                    .bind(r.topic.clone())
                    .bind(r.reason)
                    .bind(r.error.clone())
                    .bind(i64::try_from(r.size_bytes).unwrap_or(i64::MAX))
                    .bind(r.head.clone());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.wal_written.notify_one();
        Ok(Some(out))
    }
}

/// How a batch learns which of its health samples were already stored.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dedup {
    /// Insert without `RETURNING` and expect every row to be new: no row comes back
    /// from the database (on SQLite each one is a hop between threads).
    Assume,
    /// `RETURNING` the keys actually inserted.
    Ask,
}

/// A new health report with what the health table and the hourly aggregates keep of it.
#[derive(Clone, Copy)]
struct Sample<'m> {
    m: &'m Message,
    row: &'m HealthRow,
}

/// Moves the items of `chunk` whose message's key the insert returned into `fresh`;
/// returns how many were duplicates.
fn keep_new<'m, T: Copy>(
    chunk: &[T],
    message: impl Fn(T) -> &'m Message,
    rows: Vec<sqlx::any::AnyRow>,
    fresh: &mut Vec<T>,
) -> Result<u64, StoreError> {
    let mut new_keys = HashSet::with_capacity(rows.len());
    for r in rows {
        let d: String = r.try_get(0)?;
        let e: String = r.try_get(1)?;
        let s: i64 = r.try_get(2)?;
        new_keys.insert((d, e, s));
    }
    let mut duplicates = 0;
    for &item in chunk {
        let m = message(item);
        let key = (
            m.header.device_id.as_str().to_string(),
            m.header.epoch.as_str().to_string(),
            seq_i64(m.header.seq),
        );
        if new_keys.contains(&key) {
            fresh.push(item);
        } else {
            duplicates += 1;
        }
    }
    Ok(duplicates)
}

/// Inserts the health samples not stored yet (deduplicated on the table's primary key
/// `(device_id, epoch, seq)`) and returns them; `None` when `Dedup::Assume` found one
/// stored already, and the caller must drop the transaction.
async fn insert_health_samples<'m>(
    tx: &mut Transaction<'static, Any>,
    engine: Engine,
    samples: &[Sample<'m>],
    now_ms: i64,
    dedup: Dedup,
) -> Result<Option<Vec<Sample<'m>>>, StoreError> {
    let mut kept = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO health_samples (device_id, epoch, seq, collected_at_ms, received_at_ms, \
             battery_health_percent, battery_charge_percent, battery_cycle_count, \
             temperature_max_celsius, cpu_usage_percent, memory_used_percent, load_1, body) \
             VALUES {} ON CONFLICT (device_id, epoch, seq) DO NOTHING{}",
            placeholders(engine, chunk.len(), 13),
            match dedup {
                Dedup::Assume => "",
                Dedup::Ask => " RETURNING device_id, epoch, seq",
            }
        );
        // Sized up front: grown push by push, the 5,000-odd arguments were copied over
        // a dozen times.
        let mut args = AnyArguments::default();
        args.reserve(chunk.len() * 13, 0);
        let mut q = sqlx::query_with(AssertSqlSafe(sql), args);
        for Sample { m, row } in chunk {
            let f = &row.figures;
            q = q
                .bind(m.header.device_id.as_str().to_string())
                .bind(m.header.epoch.as_str().to_string())
                .bind(seq_i64(m.header.seq))
                .bind(ms(m.header.collected_at))
                .bind(now_ms)
                .bind(f.battery_health_percent)
                .bind(f.battery_charge_percent)
                .bind(f.battery_cycle_count)
                .bind(f.temperature_max_celsius)
                .bind(f.cpu_usage_percent)
                .bind(f.memory_used_percent)
                .bind(f.load_1)
                .bind(row.body.clone());
        }
        match dedup {
            Dedup::Assume => {
                let inserted = q.execute(&mut **tx).await?.rows_affected();
                if inserted != chunk.len() as u64 {
                    return Ok(None);
                }
                kept.extend_from_slice(chunk);
            }
            Dedup::Ask => {
                let rows = q.fetch_all(&mut **tx).await?;
                keep_new(chunk, |s| s.m, rows, &mut kept)?;
            }
        }
    }
    Ok(Some(kept))
}

/// Merges the new samples into their hours' aggregates.
async fn merge_hourly(
    tx: &mut Transaction<'static, Any>,
    engine: Engine,
    samples: &[Sample<'_>],
) -> Result<(), StoreError> {
    let mut hourly: BTreeMap<(&str, i64), Hourly> = BTreeMap::new();
    for Sample { m, row } in samples {
        let f = &row.figures;
        let at = ms(m.header.collected_at);
        hourly
            .entry((
                m.header.device_id.as_str(),
                at.div_euclid(HOUR_MS) * HOUR_MS,
            ))
            .or_default()
            .add(f);
    }
    let rows: Vec<_> = hourly.into_iter().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        // Merging keeps aggregates exact when late samples land in an hour that
        // already has some: sums and counts add, extremes compare (CASE, because
        // SQLite's min() and PostgreSQL's LEAST() treat NULL differently).
        let sql = format!(
            "INSERT INTO health_hourly (device_id, hour_ms, samples, battery_health_min, \
             battery_charge_sum, battery_charge_count, temperature_max_celsius, cpu_usage_sum, \
             cpu_usage_count, memory_used_sum, memory_used_count, load_1_sum, load_1_count) \
             VALUES {} ON CONFLICT (device_id, hour_ms) DO UPDATE SET \
             samples = health_hourly.samples + excluded.samples, \
             battery_health_min = CASE WHEN excluded.battery_health_min IS NULL THEN health_hourly.battery_health_min \
               WHEN health_hourly.battery_health_min IS NULL OR excluded.battery_health_min < health_hourly.battery_health_min \
               THEN excluded.battery_health_min ELSE health_hourly.battery_health_min END, \
             battery_charge_sum = health_hourly.battery_charge_sum + excluded.battery_charge_sum, \
             battery_charge_count = health_hourly.battery_charge_count + excluded.battery_charge_count, \
             temperature_max_celsius = CASE WHEN excluded.temperature_max_celsius IS NULL THEN health_hourly.temperature_max_celsius \
               WHEN health_hourly.temperature_max_celsius IS NULL OR excluded.temperature_max_celsius > health_hourly.temperature_max_celsius \
               THEN excluded.temperature_max_celsius ELSE health_hourly.temperature_max_celsius END, \
             cpu_usage_sum = health_hourly.cpu_usage_sum + excluded.cpu_usage_sum, \
             cpu_usage_count = health_hourly.cpu_usage_count + excluded.cpu_usage_count, \
             memory_used_sum = health_hourly.memory_used_sum + excluded.memory_used_sum, \
             memory_used_count = health_hourly.memory_used_count + excluded.memory_used_count, \
             load_1_sum = health_hourly.load_1_sum + excluded.load_1_sum, \
             load_1_count = health_hourly.load_1_count + excluded.load_1_count",
            placeholders(engine, chunk.len(), 13)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for ((device, hour), h) in chunk {
            q = q
                .bind(device.to_string())
                .bind(*hour)
                .bind(h.samples)
                .bind(h.battery_health_min)
                .bind(h.battery_charge.0)
                .bind(h.battery_charge.1)
                .bind(h.temperature_max)
                .bind(h.cpu.0)
                .bind(h.cpu.1)
                .bind(h.memory.0)
                .bind(h.memory.1)
                .bind(h.load.0)
                .bind(h.load.1);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_events(
    tx: &mut Transaction<'static, Any>,
    engine: Engine,
    msgs: &[(&Message, &Event)],
    now_ms: i64,
) -> Result<(), StoreError> {
    for chunk in msgs.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO events (device_id, epoch, seq, occurred_at_ms, received_at_ms, \
             event_type, detail, data) VALUES {}",
            placeholders(engine, chunk.len(), 8)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (m, e) in chunk {
            q = q
                .bind(m.header.device_id.as_str().to_string())
                .bind(m.header.epoch.as_str().to_string())
                .bind(seq_i64(m.header.seq))
                .bind(ms(e.occurred_at))
                .bind(now_ms)
                .bind(e.event_type.clone())
                .bind(e.detail.clone())
                .bind(
                    (!e.data.is_empty())
                        .then(|| serde_json::to_string(&e.data).expect("event data serializes")),
                );
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Replaces the latest inventory when this one is newer, recording component changes.
/// Returns the number of changes recorded.
async fn store_inventory(
    tx: &mut Transaction<'static, Any>,
    m: &Message,
    inv: &Inventory,
    now_ms: i64,
) -> Result<u64, StoreError> {
    let device = m.header.device_id.as_str().to_string();
    let at = ms(m.header.collected_at);
    let body = serde_json::to_string(inv).expect("inventory serializes");
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let previous = sqlx::query(
        "SELECT collected_at_ms, body_hash, body FROM inventory_latest WHERE device_id = $1",
    )
    .bind(device.clone())
    .fetch_optional(&mut **tx)
    .await?;
    let mut changes = 0;
    if let Some(row) = &previous {
        let prev_at: i64 = row.try_get("collected_at_ms")?;
        if prev_at > at {
            // An older inventory delivered late (from the agent's spool): history is
            // already past it.
            return Ok(0);
        }
        let prev_hash: String = row.try_get("body_hash")?;
        if prev_hash != hash {
            let prev_body: String = row.try_get("body")?;
            let old: Inventory =
                serde_json::from_str(&prev_body).map_err(|e| StoreError::Corrupt {
                    what: format!("the latest inventory of {device}"),
                    message: e.to_string(),
                })?;
            for c in inventory_diff::diff(&old, inv) {
                sqlx::query(
                    "INSERT INTO inventory_changes (device_id, changed_at_ms, component, slot, \
                     change, before_value, after_value) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(device.clone())
                .bind(at)
                .bind(c.component)
                .bind(c.slot)
                .bind(c.change.as_str())
                .bind(c.before)
                .bind(c.after)
                .execute(&mut **tx)
                .await?;
                changes += 1;
            }
        }
    }
    sqlx::query(
        "INSERT INTO inventory_latest (device_id, epoch, seq, collected_at_ms, received_at_ms, \
         body_hash, body) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (device_id) DO UPDATE \
         SET epoch = excluded.epoch, seq = excluded.seq, collected_at_ms = excluded.collected_at_ms, \
         received_at_ms = excluded.received_at_ms, body_hash = excluded.body_hash, body = excluded.body",
    )
    .bind(device.clone())
    .bind(m.header.epoch.as_str().to_string())
    .bind(seq_i64(m.header.seq))
    .bind(at)
    .bind(now_ms)
    .bind(hash)
    .bind(body)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE devices SET serial = COALESCE($1, serial), manufacturer = COALESCE($2, manufacturer), \
         product_name = COALESCE($3, product_name), hostname = COALESCE($4, hostname), \
         agent_version = $5 WHERE device_id = $6",
    )
    .bind(inv.identity.system_serial.clone())
    .bind(inv.identity.system_manufacturer.clone())
    .bind(inv.identity.product_name.clone())
    .bind(inv.os.hostname.clone())
    .bind(inv.agent_version.clone())
    .bind(device)
    .execute(&mut **tx)
    .await?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_and_columns() {
        assert_eq!(
            placeholders(Engine::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Engine::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn quarantine_keeps_only_the_head_of_a_payload() {
        let big = vec![b'x'; 1 << 20];
        let q = Quarantined::new(Utc::now(), "t", &big, "too_large", "too big".into());
        assert_eq!(q.size_bytes, 1 << 20);
        assert_eq!(q.head.len(), Quarantined::HEAD_BYTES);
    }

    #[test]
    fn health_figures_take_the_worst_battery_and_hottest_sensor() {
        let h: Health = serde_json::from_value(serde_json::json!({
            "batteries": [{"name": "BAT0", "health_percent": 91.0}, {"name": "BAT1", "health_percent": 55.5}],
            "temperatures": [{"sensor": "a", "celsius": 40.0}, {"sensor": "b", "celsius": 71.0}],
            "memory_total_bytes": 1000, "memory_used_bytes": 250
        }))
        .unwrap();
        let f = HealthFigures::of(&h);
        assert_eq!(f.battery_health_percent, Some(55.5));
        assert_eq!(f.temperature_max_celsius, Some(71.0));
        assert_eq!(f.memory_used_percent, Some(25.0));
        assert_eq!(f.cpu_usage_percent, None);
    }
}
