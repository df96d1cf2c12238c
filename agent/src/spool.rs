//! The agent's disk spool: every outbound message is committed here before it is
//! published, and removed only once the broker has acknowledged it (PUBACK).
//!
//! Design constraints:
//! - **Durable before publish.** A record is committed with immediate durability
//!   (fsync) before the uplink may send it; its sequence number is allocated in the
//!   same transaction, so a seq is never handed out twice, even across a power cut.
//! - **Epoch and seq live together.** The epoch is created with the spool file and
//!   stored in it next to the seq counter: if the file is lost, a new epoch comes with
//!   it, so a restarted seq is never taken by the server for a replay.
//! - **Acks may be lost, pushes may not.** Acks are committed without fsync (a lost ack
//!   only means a duplicate, which the server removes on `(device_id, epoch, seq)`); the
//!   next immediate commit or [`Spool::flush`] makes them durable.
//! - **Checksummed records.** Each value carries a SHA-256 of its content; a record that
//!   does not match is logged, counted and removed, and the others are still delivered.
//! - **Bounded.** The total size is kept under `max_bytes`. When full, the oldest health
//!   samples go first (they are the most numerous and the least valuable one by one),
//!   then inventories superseded by a newer one; only then the oldest records of any
//!   kind. Every drop is counted so the runtime can report it as a `spool_dropped` event.
//! - **Oldest first.** Records are drained in the order they were pushed.
//!
//! The spool stores the message JSON, not the signed frame: the uplink signs each copy
//! when it sends it, so that `sent_at` says when that copy left the device.
//!
//! It must never delete a record that was not acknowledged, except by the documented
//! bound or because its checksum failed, and never hold a transaction open across IO
//! other than its own file. It knows nothing of MQTT or keys.

use std::path::Path;

use parc_protocol::{Epoch, Kind};
use redb::{
    Database, Durability, ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _,
    TableDefinition,
};
use sha2::{Digest as _, Sha256};

/// Records by id (insertion order). Value: see [`encode`].
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
/// Index `(kind code, id) -> accounted size`, to evict by kind without reading values.
const BY_KIND: TableDefinition<(u8, u64), u64> = TableDefinition::new("by_kind");
/// Counters.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The epoch, created with the file.
const IDENTITY: TableDefinition<&str, &str> = TableDefinition::new("identity");

const NEXT_ID: &str = "next_id";
const NEXT_SEQ: &str = "next_seq";
const BYTES: &str = "bytes";
const DROPPED_UNREPORTED: &str = "dropped_unreported";
const DROPPED_TOTAL: &str = "dropped_total";
const CORRUPT_TOTAL: &str = "corrupt_total";
const LAST_ACK_MS: &str = "last_ack_ms";

const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 1 + 8 + 2;
const CHECKSUM_LEN: usize = 32;
/// Counted per record on top of its value, for keys and index entries, so that many
/// tiny records cannot outgrow the bound unnoticed.
const RECORD_OVERHEAD: u64 = 64;

/// Default bound (`spool.max_bytes`).
pub const DEFAULT_MAX_BYTES: u64 = 20 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Another process (usually `parc-agent run`) has the spool open.
    #[error("the spool is in use by another parc-agent process")]
    Locked,
    #[error("a {size}-byte record cannot fit in a spool of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("spool database: {0}")]
    Db(redb::Error),
    #[error("spool file: {0}")]
    Io(#[from] std::io::Error),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for SpoolError {
            fn from(e: $t) -> Self {
                SpoolError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// One spooled message, verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: u64,
    pub kind: Kind,
    pub seq: u64,
    pub topic: String,
    /// The message JSON (unsigned).
    pub message: String,
}

/// What happened to a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub id: u64,
    pub seq: u64,
}

/// Counters, for `parc-agent status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpoolStats {
    pub records: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Dropped by the bound and not yet reported in a `spool_dropped` event.
    pub dropped_unreported: u64,
    pub dropped_total: u64,
    pub corrupt_total: u64,
    /// Unix ms of the last broker acknowledgement, if any.
    pub last_ack_ms: Option<u64>,
    /// The next sequence number to be handed out.
    pub next_seq: u64,
}

/// The spool. Cheap to share behind an `Arc`: every method takes `&self` and runs its
/// own transaction (blocking: call from `spawn_blocking` in async code).
pub struct Spool {
    db: Database,
    max_bytes: u64,
    epoch: Epoch,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("max_bytes", &self.max_bytes)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

fn kind_code(kind: Kind) -> u8 {
    match kind {
        Kind::Hello => 1,
        Kind::Inventory => 2,
        Kind::Health => 3,
        Kind::Event => 4,
        Kind::Status => 5,
        Kind::Cmd => 6,
    }
}

fn kind_from_code(code: u8) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| kind_code(*k) == code)
}

/// `version | kind | seq (BE) | topic length (BE u16) | topic | message | sha256(all before)`
fn encode(kind: Kind, seq: u64, topic: &str, message: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + topic.len() + message.len() + CHECKSUM_LEN);
    v.push(FORMAT_VERSION);
    v.push(kind_code(kind));
    v.extend_from_slice(&seq.to_be_bytes());
    // Topics are `parc/v1/{64 chars max}/{kind}`: far below u16::MAX.
    let topic_len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
    v.extend_from_slice(&topic_len.to_be_bytes());
    v.extend_from_slice(&topic.as_bytes()[..usize::from(topic_len)]);
    v.extend_from_slice(message.as_bytes());
    let sum = Sha256::digest(&v);
    v.extend_from_slice(&sum);
    v
}

/// Why a stored value was refused.
fn decode(id: u64, v: &[u8]) -> Result<Record, &'static str> {
    if v.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err("truncated");
    }
    let (content, sum) = v.split_at(v.len() - CHECKSUM_LEN);
    if Sha256::digest(content).as_slice() != sum {
        return Err("checksum mismatch");
    }
    if content[0] != FORMAT_VERSION {
        return Err("unknown record format");
    }
    let kind = kind_from_code(content[1]).ok_or("unknown kind")?;
    let seq = u64::from_be_bytes(content[2..10].try_into().map_err(|_| "truncated")?);
    let topic_len = usize::from(u16::from_be_bytes([content[10], content[11]]));
    let rest = &content[HEADER_LEN..];
    if rest.len() < topic_len {
        return Err("truncated topic");
    }
    let (topic, message) = rest.split_at(topic_len);
    Ok(Record {
        id,
        kind,
        seq,
        topic: String::from_utf8(topic.to_vec()).map_err(|_| "topic not UTF-8")?,
        message: String::from_utf8(message.to_vec()).map_err(|_| "message not UTF-8")?,
    })
}

fn get_meta(t: &impl redb::ReadableTable<&'static str, u64>, key: &str) -> Result<u64, SpoolError> {
    Ok(t.get(key)?.map(|g| g.value()).unwrap_or(0))
}

impl Spool {
    /// Opens the spool file, creating it (with an epoch from `new_epoch`) if needed.
    /// Records and counters survive reopening.
    pub fn open(
        path: &Path,
        max_bytes: u64,
        new_epoch: impl FnOnce() -> Epoch,
    ) -> Result<Self, SpoolError> {
        // The default 1 GiB page cache would let RSS grow with the spool; a small one is
        // plenty for a queue read front to back.
        let db = match redb::Builder::new().set_cache_size(512 * 1024).create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(SpoolError::Locked),
            Err(e) => return Err(e.into()),
        };
        Self::init(db, max_bytes, new_epoch)
    }

    /// A spool held in memory (redb's in-memory backend): the same records, seqs,
    /// bound and checksums, without a file. For the fleet simulator, which runs
    /// thousands of devices in one process: a file each would exhaust its descriptors.
    /// Not durable — a real device always uses [`Spool::open`].
    pub fn in_memory(
        max_bytes: u64,
        new_epoch: impl FnOnce() -> Epoch,
    ) -> Result<Self, SpoolError> {
        let db = redb::Builder::new()
            .set_cache_size(64 * 1024)
            .create_with_backend(redb::backends::InMemoryBackend::new())?;
        Self::init(db, max_bytes, new_epoch)
    }

    fn init(
        db: Database,
        max_bytes: u64,
        new_epoch: impl FnOnce() -> Epoch,
    ) -> Result<Self, SpoolError> {
        let tx = db.begin_write()?;
        let epoch = {
            let mut ids = tx.open_table(IDENTITY)?;
            let existing = ids.get("epoch")?.map(|g| g.value().to_string());
            match existing.and_then(|s| Epoch::parse(&s).ok()) {
                Some(e) => e,
                None => {
                    let e = new_epoch();
                    ids.insert("epoch", e.as_str())?;
                    e
                }
            }
        };
        {
            let mut meta = tx.open_table(META)?;
            if meta.get(NEXT_SEQ)?.is_none() {
                meta.insert(NEXT_SEQ, 1)?;
            }
            if meta.get(NEXT_ID)?.is_none() {
                meta.insert(NEXT_ID, 1)?;
            }
            tx.open_table(RECORDS)?;
            tx.open_table(BY_KIND)?;
        }
        tx.commit()?;
        Ok(Self {
            db,
            max_bytes,
            epoch,
        })
    }

    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Reserves a sequence number without storing a message (the MQTT last will, fixed
    /// at connect time, needs one). Durable when it returns.
    pub fn next_seq(&self) -> Result<u64, SpoolError> {
        let tx = self.db.begin_write()?;
        let seq = {
            let mut meta = tx.open_table(META)?;
            let seq = get_meta(&meta, NEXT_SEQ)?.max(1);
            meta.insert(NEXT_SEQ, seq + 1)?;
            seq
        };
        tx.commit()?;
        Ok(seq)
    }

    /// Allocates a seq and stores the message `build(seq)` returns as `(topic, json)`,
    /// in one durable transaction.
    pub fn push_new(
        &self,
        kind: Kind,
        build: impl FnOnce(u64) -> (String, String),
    ) -> Result<Pushed, SpoolError> {
        self.push_inner(kind, None, build)
    }

    /// Stores a message whose seq the caller already took from [`Spool::next_seq`].
    pub fn push(
        &self,
        kind: Kind,
        seq: u64,
        topic: &str,
        message: &str,
    ) -> Result<Pushed, SpoolError> {
        self.push_inner(kind, Some(seq), |_| {
            (topic.to_string(), message.to_string())
        })
    }

    fn push_inner(
        &self,
        kind: Kind,
        given_seq: Option<u64>,
        build: impl FnOnce(u64) -> (String, String),
    ) -> Result<Pushed, SpoolError> {
        let tx = self.db.begin_write()?;
        let pushed = {
            let mut meta = tx.open_table(META)?;
            let mut records = tx.open_table(RECORDS)?;
            let mut by_kind = tx.open_table(BY_KIND)?;
            let seq = match given_seq {
                Some(s) => s,
                None => {
                    let s = get_meta(&meta, NEXT_SEQ)?.max(1);
                    meta.insert(NEXT_SEQ, s + 1)?;
                    s
                }
            };
            let (topic, message) = build(seq);
            let value = encode(kind, seq, &topic, &message);
            let size = value.len() as u64 + RECORD_OVERHEAD;
            if size > self.max_bytes {
                return Err(SpoolError::TooLarge {
                    size,
                    max: self.max_bytes,
                });
            }
            let mut bytes = get_meta(&meta, BYTES)?;
            let mut dropped = 0u64;
            if bytes + size > self.max_bytes {
                let need = bytes + size - self.max_bytes;
                let (n, freed) = evict(&mut records, &mut by_kind, need)?;
                dropped = n;
                bytes = bytes.saturating_sub(freed);
            }
            let id = get_meta(&meta, NEXT_ID)?.max(1);
            meta.insert(NEXT_ID, id + 1)?;
            records.insert(id, value.as_slice())?;
            by_kind.insert((kind_code(kind), id), size)?;
            meta.insert(BYTES, bytes + size)?;
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "spool full ({} bytes): dropped the oldest records",
                    self.max_bytes
                );
                let unreported = get_meta(&meta, DROPPED_UNREPORTED)?;
                meta.insert(DROPPED_UNREPORTED, unreported + dropped)?;
                let total = get_meta(&meta, DROPPED_TOTAL)?;
                meta.insert(DROPPED_TOTAL, total + dropped)?;
            }
            Pushed { id, seq }
        };
        tx.commit()?;
        Ok(pushed)
    }

    /// Up to `limit` records with an id above `after` (all when `None`), oldest first.
    /// Records whose checksum fails are logged, counted and removed.
    pub fn pending_after(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Record>, SpoolError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        let mut corrupt = Vec::new();
        {
            let tx = self.db.begin_read()?;
            let records = tx.open_table(RECORDS)?;
            for item in records.range(start..)? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item?;
                let id = k.value();
                match decode(id, v.value()) {
                    Ok(r) => out.push(r),
                    Err(why) => {
                        tracing::error!(id, reason = why, "corrupted spool record skipped");
                        corrupt.push(id);
                    }
                }
            }
        }
        if !corrupt.is_empty() {
            self.remove_corrupt(&corrupt)?;
        }
        Ok(out)
    }

    /// Up to `limit` records, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<Record>, SpoolError> {
        self.pending_after(None, limit)
    }

    fn remove_corrupt(&self, ids: &[u64]) -> Result<(), SpoolError> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let mut records = tx.open_table(RECORDS)?;
            let mut by_kind = tx.open_table(BY_KIND)?;
            let freed = remove_ids(&mut records, &mut by_kind, ids)?;
            let bytes = get_meta(&meta, BYTES)?;
            meta.insert(BYTES, bytes.saturating_sub(freed))?;
            let total = get_meta(&meta, CORRUPT_TOTAL)?;
            meta.insert(CORRUPT_TOTAL, total + ids.len() as u64)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes acknowledged records. `now_ms` is recorded as the last acknowledgement
    /// time. Not fsynced: see the module documentation.
    pub fn ack(&self, ids: &[u64], now_ms: u64) -> Result<(), SpoolError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::None)?;
        {
            let mut meta = tx.open_table(META)?;
            let mut records = tx.open_table(RECORDS)?;
            let mut by_kind = tx.open_table(BY_KIND)?;
            let freed = remove_ids(&mut records, &mut by_kind, ids)?;
            let bytes = get_meta(&meta, BYTES)?;
            meta.insert(BYTES, bytes.saturating_sub(freed))?;
            meta.insert(LAST_ACK_MS, now_ms)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes every earlier commit durable (call before exiting).
    pub fn flush(&self) -> Result<(), SpoolError> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }

    /// Returns and resets the number of records the bound dropped since the last call.
    pub fn take_dropped_count(&self) -> Result<u64, SpoolError> {
        let tx = self.db.begin_write()?;
        let n = {
            let mut meta = tx.open_table(META)?;
            let n = get_meta(&meta, DROPPED_UNREPORTED)?;
            if n > 0 {
                meta.insert(DROPPED_UNREPORTED, 0)?;
            }
            n
        };
        tx.commit()?;
        Ok(n)
    }

    pub fn len(&self) -> Result<u64, SpoolError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(RECORDS)?.len()?)
    }

    pub fn is_empty(&self) -> Result<bool, SpoolError> {
        Ok(self.len()? == 0)
    }

    /// Accounted size of the stored records.
    pub fn bytes(&self) -> Result<u64, SpoolError> {
        let tx = self.db.begin_read()?;
        get_meta(&tx.open_table(META)?, BYTES)
    }

    pub fn stats(&self) -> Result<SpoolStats, SpoolError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        let records = tx.open_table(RECORDS)?.len()?;
        let last = get_meta(&meta, LAST_ACK_MS)?;
        Ok(SpoolStats {
            records,
            bytes: get_meta(&meta, BYTES)?,
            max_bytes: self.max_bytes,
            dropped_unreported: get_meta(&meta, DROPPED_UNREPORTED)?,
            dropped_total: get_meta(&meta, DROPPED_TOTAL)?,
            corrupt_total: get_meta(&meta, CORRUPT_TOTAL)?,
            last_ack_ms: (last > 0).then_some(last),
            next_seq: get_meta(&meta, NEXT_SEQ)?.max(1),
        })
    }

    /// Test hook: flips one byte of a stored record's value, through redb, as a bit rot
    /// on disk would.
    #[doc(hidden)]
    pub fn corrupt_record_for_tests(&self, id: u64) -> Result<bool, SpoolError> {
        let tx = self.db.begin_write()?;
        let found = {
            let mut records = tx.open_table(RECORDS)?;
            let value = records.get(id)?.map(|g| g.value().to_vec());
            match value {
                Some(mut v) => {
                    let i = v.len() / 2;
                    v[i] ^= 0x5a;
                    records.insert(id, v.as_slice())?;
                    true
                }
                None => false,
            }
        };
        tx.commit()?;
        Ok(found)
    }
}

fn remove_ids(
    records: &mut redb::Table<u64, &[u8]>,
    by_kind: &mut redb::Table<(u8, u64), u64>,
    ids: &[u64],
) -> Result<u64, SpoolError> {
    let mut freed = 0;
    for &id in ids {
        let kind = records
            .remove(id)?
            .map(|v| v.value().get(1).copied().unwrap_or(0));
        if let Some(code) = kind {
            // A corrupted kind byte still finds its index entry by scanning codes.
            let codes: Vec<u8> = std::iter::once(code).chain(1..=6).collect();
            for c in codes {
                if let Some(size) = by_kind.remove((c, id))? {
                    freed += size.value();
                    break;
                }
            }
        }
    }
    Ok(freed)
}

/// Frees at least `need` bytes: oldest health first, then inventories older than the
/// newest one, then the oldest records of any kind. Returns (records dropped, bytes freed).
fn evict(
    records: &mut redb::Table<u64, &[u8]>,
    by_kind: &mut redb::Table<(u8, u64), u64>,
    need: u64,
) -> Result<(u64, u64), SpoolError> {
    let mut victims: Vec<u64> = Vec::new();
    let mut planned = 0u64;
    let health = kind_code(Kind::Health);
    let inventory = kind_code(Kind::Inventory);
    for item in by_kind.range((health, 0)..=(health, u64::MAX))? {
        if planned >= need {
            break;
        }
        let (k, size) = item?;
        victims.push(k.value().1);
        planned += size.value();
    }
    if planned < need {
        let inventories: Vec<(u64, u64)> = by_kind
            .range((inventory, 0)..=(inventory, u64::MAX))?
            .map(|item| item.map(|(k, s)| (k.value().1, s.value())))
            .collect::<Result<_, _>>()?;
        // Keep the newest inventory: it is the one that describes the device now.
        for (id, size) in inventories.iter().take(inventories.len().saturating_sub(1)) {
            if planned >= need {
                break;
            }
            victims.push(*id);
            planned += size;
        }
    }
    if planned < need {
        for item in records.iter()? {
            if planned >= need {
                break;
            }
            let (k, v) = item?;
            let id = k.value();
            if !victims.contains(&id) {
                victims.push(id);
                planned += v.value().len() as u64 + RECORD_OVERHEAD;
            }
        }
    }
    let freed = remove_ids(records, by_kind, &victims)?;
    Ok((victims.len() as u64, freed))
}
