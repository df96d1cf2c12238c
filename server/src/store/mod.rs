//! Storage: the only module that speaks SQL. One code path for SQLite (the embedded
//! default) and PostgreSQL (at scale) through sqlx's `Any` driver, with one migration
//! folder per engine kept equivalent (`server/migrations/{sqlite,postgres}`).
//!
//! Times are stored as unix milliseconds (UTC) because the `Any` driver maps integers,
//! not timestamps. Statements use `$N` placeholders, which both engines accept. This
//! module must never decide what a message means (that is ingest's and the rules'
//! job) and never hold a transaction open across anything but SQL.

mod accounts;
mod batch;
mod enrol;
mod fleet;
mod procurement;
mod query;
mod releases;
mod synthetic;
mod tickets;

use std::time::Duration;

use chrono::{DateTime, Utc};
use parc_protocol::{DeviceId, DeviceKey};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row as _};

pub use accounts::{AccountInfo, AccountRefused, AccountRow, NewAccount};
pub use batch::{BatchOutcome, Item, Quarantined};
pub use enrol::{Enrolled, EnrolmentRefused, EnrolmentRequest, NewTokenRecord, TokenRow};
pub use fleet::{
    DeviceState, DeviceUsage, EventRow, FleetDevice, FleetFilter, FleetPage, GroupCounts,
    OVERVIEW_MAX_AGE, Overview, OverviewRow, SiteUsage, StateCounts, StateThresholds, TicketFilter,
    TicketView, Usage, overview_in,
};
pub use procurement::{
    CartDevice, CartRow, DatasetCounts, DemoDataError, FundingRow, LotRow, NeverSeen, OrderLineRow,
    OrderRow, Reconciliation, SiteRow, UnmatchedDevice, load_demo_dataset,
};
pub use query::{Counts, DeviceRow, HealthPoint, HourlyPoint, InventoryChangeRow, QuarantineRow};
pub use releases::{AnnounceTarget, NewRelease, UpdateEventRow, VersionCount};
pub use synthetic::{synthetic_device_id, synthetic_hostname, synthetic_serial};
pub use tickets::{
    DeliveryRow, DeviceContext, DueDelivery, HistoryColumn, Inbox, InboxSample, LotContext,
    MaintenanceTx, NewTicket, TicketEventRow, TicketRow, TicketScope,
};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrating the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored data for {what} is unreadable: {message}")]
    Corrupt { what: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Engine::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// How long each kind of data is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    pub raw: Duration,
    pub hourly: Duration,
    pub events: Duration,
    pub quarantine: Duration,
    /// Quarantine rows kept at most, oldest dropped first: a flood of garbage must not
    /// fill the disk.
    pub quarantine_max_rows: u64,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            raw: Duration::from_secs(30 * DAY),
            hourly: Duration::from_secs(730 * DAY),
            events: Duration::from_secs(730 * DAY),
            quarantine: Duration::from_secs(30 * DAY),
            quarantine_max_rows: 100_000,
        }
    }
}

/// Rows removed by one [`Store::prune`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub health_samples: u64,
    pub received: u64,
    pub health_hourly: u64,
    pub events: u64,
    pub quarantine: u64,
}

/// A device as enrolment creates it.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub device_id: DeviceId,
    pub key: DeviceKey,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub product_name: Option<String>,
    pub hostname: Option<String>,
    pub agent_version: Option<String>,
    /// SHA-256 (hex) of the broker password, and the Mosquitto password-file line.
    pub mqtt_password_sha256: Option<String>,
    pub mosquitto_password_line: Option<String>,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// Where transactions that write run. On SQLite, one connection kept open: writes
    /// queue for it in this process instead of sleeping in SQLite's busy handler, and
    /// its page cache stays warm (a pool rotates through its connections, and each one's
    /// cache is thrown away whenever another connection wrote). On PostgreSQL, `pool`.
    writer: AnyPool,
    /// Woken after each ingest commit on SQLite: see [`Store::run_checkpointer`].
    wal_written: std::sync::Arc<tokio::sync::Notify>,
    engine: Engine,
    /// The dashboard's fleet aggregate (see `fleet.rs`), shared by every clone.
    overview_cache: std::sync::Arc<tokio::sync::Mutex<Option<fleet::OverviewCache>>>,
}

/// A connection to the PostgreSQL server at `admin_url`, after checking that `name`
/// is a plain identifier (it is spliced into CREATE/DROP DATABASE).
async fn admin_connection(admin_url: &str, name: &str) -> Result<sqlx::AnyConnection, StoreError> {
    install_default_drivers();
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(StoreError::UnsupportedUrl(format!(
            "database name `{name}`"
        )));
    }
    <sqlx::AnyConnection as sqlx::Connection>::connect(admin_url)
        .await
        .map_err(StoreError::Connect)
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

/// New health samples per row of the rules' queue (migration 0007): a round of the rules
/// takes whole rows.
pub(crate) const RULE_QUEUE_SLICE: usize = 250;

/// Page size of a database the server creates. 16 KiB rather than SQLite's 4 KiB: an
/// ingest batch appends thousands of ~1 KiB health rows and touches leaves all over the
/// samples' indexes, and larger pages mean a quarter of the WAL frames (each
/// checksummed, then copied back by the checkpointer) and of the B-tree page
/// operations. Measured in ingest_bench (BENCHMARKS.md, five alternating pairs): the
/// server alone 48,125 → 54,219 reports/s, its CPU per report beside the bare subscriber
/// 26.4 → 21.3 µs; 8 and 32 KiB were no better than 16. A database that exists keeps
/// its page size: SQLite cannot change it in WAL mode without rewriting the file
/// (VACUUM).
const SQLITE_PAGE_SIZE: u32 = 16_384;

/// WAL size after which a committing SQLite connection copies the WAL back into the
/// database itself, in bytes (converted to pages of the database's own size): 4 MiB,
/// SQLite's default of 1,000 pages of 4 KiB, for the readers' connections (which rarely
/// write)…
const SQLITE_AUTOCHECKPOINT_BYTES: u32 = 4 << 20;
/// …and for the writer a backstop well above what [`Store::run_checkpointer`] leaves
/// behind, so that the copy is normally done off its thread.
const SQLITE_WRITER_AUTOCHECKPOINT_BYTES: u32 = 40 << 20;

/// Settings of every SQLite connection.
async fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    autocheckpoint_bytes: u32,
) -> Result<(), sqlx::Error> {
    // WAL lets dashboards read while the writer commits. FULL syncs the WAL at every
    // commit: the ingest acknowledges a batch to the broker right after its commit, and
    // with NORMAL a power cut (not a mere crash) could take back commits already
    // acknowledged — lost for good. One fsync per batch of up to 10,000 messages is
    // cheap: NORMAL measured no faster in ingest_bench (BENCHMARKS.md). A 64 MiB page
    // cache (SQLite's default is 2 MiB) keeps the upper levels of the samples' indexes
    // in memory: each ingest batch touches pages all over four B-trees. Memory-mapped
    // reads save a copy and a system call per page for the dashboards. Statement journals
    // stay in memory (`temp_store`): a multi-row insert's journal otherwise spills to a
    // temporary file, written and deleted per statement.
    //
    // The page size goes first: it only takes effect while the file is still empty,
    // before the switch to WAL writes the header (see SQLITE_PAGE_SIZE).
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA page_size = {SQLITE_PAGE_SIZE}"
    )))
    .execute(&mut *conn)
    .await?;
    for pragma in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = FULL",
        "PRAGMA busy_timeout = 10000",
        "PRAGMA foreign_keys = ON",
        "PRAGMA cache_size = -65536",
        "PRAGMA mmap_size = 268435456",
        "PRAGMA temp_store = MEMORY",
    ] {
        sqlx::query(pragma).execute(&mut *conn).await?;
    }
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await?;
    let pages = i64::from(autocheckpoint_bytes) / page_size.max(512);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA wal_autocheckpoint = {}",
        pages.max(1)
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// A transaction that will write. On SQLite it takes the write lock up front: a
    /// deferred transaction that reads first and then writes fails at once with
    /// SQLITE_BUSY (no busy_timeout wait) when another connection wrote meanwhile.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.engine {
            Engine::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.writer.begin().await?,
        })
    }

    /// Opens (creating a SQLite file if needed) and migrates the database at `url`.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let engine = Engine::from_url(url)?;
        install_default_drivers();
        let url = match engine {
            Engine::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(match engine {
                Engine::Sqlite => 4,
                Engine::Postgres => 8,
            });
        let pool = match engine {
            Engine::Sqlite => options.after_connect(|conn, _meta| {
                Box::pin(async move { sqlite_pragmas(conn, SQLITE_AUTOCHECKPOINT_BYTES).await })
            }),
            Engine::Postgres => options,
        }
        .connect(&url)
        .await
        .map_err(StoreError::Connect)?;
        match engine {
            Engine::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Engine::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let writer = match engine {
            // Never closed for age: its warm page cache is the point. The long wait
            // covers a large procurement import holding it for a while.
            Engine::Sqlite => AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        sqlite_pragmas(conn, SQLITE_WRITER_AUTOCHECKPOINT_BYTES).await
                    })
                })
                .connect(&url)
                .await
                .map_err(StoreError::Connect)?,
            Engine::Postgres => pool.clone(),
        };
        Ok(Self {
            pool,
            writer,
            wal_written: Default::default(),
            engine,
            overview_cache: Default::default(),
        })
    }

    /// Creates database `name` on the PostgreSQL server at `admin_url` (tests and
    /// benchmarks each make their own). `name` must be a plain identifier.
    pub async fn create_postgres_database(
        admin_url: &str,
        name: &str,
    ) -> Result<String, StoreError> {
        let mut conn = admin_connection(admin_url, name).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(admin_url);
        Ok(format!("{base}/{name}"))
    }

    /// Drops database `name` (see [`Store::create_postgres_database`]).
    pub async fn drop_postgres_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
        let mut conn = admin_connection(admin_url, name).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// The default SQLite URL for a data directory.
    pub fn sqlite_url(data_dir: &std::path::Path) -> String {
        format!("sqlite://{}", data_dir.join("parc.db").display())
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Succeeds when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// Copies committed SQLite WAL pages back into the database file, on a connection
    /// of its own (so on another thread than the writer), after each ingest commit and
    /// at least every second, until `shutdown`. Without it the writer does this copy
    /// (and its fsync) itself inside a commit once the WAL passes
    /// [`SQLITE_WRITER_AUTOCHECKPOINT_BYTES`]: tools that use the store without a
    /// server stay bounded. Returns at once on PostgreSQL.
    pub async fn run_checkpointer(&self, shutdown: impl std::future::Future<Output = ()>) {
        if self.engine != Engine::Sqlite {
            return;
        }
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wal_written.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            // PASSIVE: never waits for the writer or readers; what it cannot copy yet,
            // the next round will.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&self.pool)
                .await
            {
                tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
            }
        }
    }

    /// Records an enrolled device, or gives a known one a new key (re-enrolment).
    pub async fn upsert_device(&self, d: &NewDevice, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO devices (device_id, key_b64, serial, manufacturer, product_name, hostname, \
             agent_version, enrolled_at_ms, mqtt_password_sha256, mosquitto_password_line) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (device_id) DO UPDATE SET key_b64 = excluded.key_b64, \
             mqtt_password_sha256 = excluded.mqtt_password_sha256, \
             mosquitto_password_line = excluded.mosquitto_password_line, \
             serial = excluded.serial, manufacturer = excluded.manufacturer, \
             product_name = excluded.product_name, hostname = excluded.hostname, \
             agent_version = excluded.agent_version, enrolled_at_ms = excluded.enrolled_at_ms, \
             revoked_at_ms = NULL",
        )
        .bind(d.device_id.as_str().to_string())
        .bind(d.key.to_base64())
        .bind(d.serial.clone())
        .bind(d.manufacturer.clone())
        .bind(d.product_name.clone())
        .bind(d.hostname.clone())
        .bind(d.agent_version.clone())
        .bind(ms(now))
        .bind(d.mqtt_password_sha256.clone())
        .bind(d.mosquitto_password_line.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The key a device signs with; `None` when unknown or revoked.
    pub async fn device_key(&self, device: &DeviceId) -> Result<Option<DeviceKey>, StoreError> {
        let row = sqlx::query(
            "SELECT key_b64 FROM devices WHERE device_id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(device.as_str().to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let text: String = r.try_get("key_b64")?;
            DeviceKey::from_base64(&text).map_err(|message| StoreError::Corrupt {
                what: format!("the key of device {device}"),
                message,
            })
        })
        .transpose()
    }

    /// Stops accepting messages from a device. Returns false if it was not known.
    pub async fn revoke_device(
        &self,
        device: &DeviceId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE devices SET revoked_at_ms = $1 WHERE device_id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(ms(now))
        .bind(device.as_str().to_string())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Deletes what has outlived its retention. Idempotent; safe to run on every
    /// replica at once.
    pub async fn prune(
        &self,
        now: DateTime<Utc>,
        retention: &Retention,
    ) -> Result<Pruned, StoreError> {
        let cutoff = |d: Duration| ms(now) - i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let raw = cutoff(retention.raw);
        let mut out = Pruned {
            health_samples: self
                .delete("DELETE FROM health_samples WHERE collected_at_ms < $1", raw)
                .await?,
            received: self
                .delete("DELETE FROM received WHERE received_at_ms < $1", raw)
                .await?,
            health_hourly: self
                .delete(
                    "DELETE FROM health_hourly WHERE hour_ms < $1",
                    cutoff(retention.hourly),
                )
                .await?,
            events: self
                .delete(
                    "DELETE FROM events WHERE occurred_at_ms < $1",
                    cutoff(retention.events),
                )
                .await?,
            quarantine: self
                .delete(
                    "DELETE FROM quarantine WHERE received_at_ms < $1",
                    cutoff(retention.quarantine),
                )
                .await?,
        };
        let max = i64::try_from(retention.quarantine_max_rows).unwrap_or(i64::MAX);
        let r = sqlx::query(
            "DELETE FROM quarantine WHERE id <= (SELECT id FROM quarantine ORDER BY id DESC \
             LIMIT 1 OFFSET $1)",
        )
        .bind(max)
        .execute(&self.pool)
        .await?;
        out.quarantine += r.rows_affected();
        Ok(out)
    }

    async fn delete(&self, sql: &'static str, cutoff: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql)
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pragma(pool: &AnyPool, name: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_new_sqlite_database_gets_16_kib_pages_and_checkpoints_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("parc.db").display());
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(pragma(&store.pool, "page_size").await, 16_384);
        assert_eq!(pragma(&store.writer, "page_size").await, 16_384);
        // 4 MiB and 40 MiB of 16 KiB pages.
        assert_eq!(pragma(&store.pool, "wal_autocheckpoint").await, 256);
        assert_eq!(pragma(&store.writer, "wal_autocheckpoint").await, 2_560);
        store.close().await;
    }

    #[tokio::test]
    async fn an_existing_sqlite_database_keeps_its_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        install_default_drivers();
        {
            use sqlx::Connection as _;
            let mut c = sqlx::AnyConnection::connect(&format!("{url}?mode=rwc"))
                .await
                .unwrap();
            for sql in [
                "PRAGMA page_size = 4096",
                "PRAGMA journal_mode = WAL",
                "CREATE TABLE made_before (x INTEGER)",
            ] {
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
            c.close().await.unwrap();
        }
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(pragma(&store.writer, "page_size").await, 4_096);
        // The same WAL sizes, in pages of 4 KiB.
        assert_eq!(pragma(&store.pool, "wal_autocheckpoint").await, 1_024);
        assert_eq!(pragma(&store.writer, "wal_autocheckpoint").await, 10_240);
        assert_eq!(store.counts().await.unwrap().health_samples, 0);
        store.close().await;
    }
}
