-- Devices, what they reported, and what was refused. Times are unix milliseconds (UTC):
-- sqlx's Any driver maps integers, not timestamps, and both engines compare them alike.
-- Keep this file equivalent to ../postgres/0001_ingest.sql.

CREATE TABLE devices (
    device_id       TEXT PRIMARY KEY,
    key_b64         TEXT NOT NULL,
    serial          TEXT,
    manufacturer    TEXT,
    product_name    TEXT,
    hostname        TEXT,
    agent_version   TEXT,
    enrolled_at_ms  INTEGER NOT NULL,
    revoked_at_ms   INTEGER,
    first_seen_ms   INTEGER,
    last_seen_ms    INTEGER,
    online          BOOLEAN,
    status_at_ms    INTEGER
);
CREATE INDEX devices_serial ON devices (serial);

-- One row per accepted message: the dedup key across broker redelivery and replays.
CREATE TABLE received (
    device_id       TEXT NOT NULL,
    epoch           TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE INDEX received_at ON received (received_at_ms);

CREATE TABLE health_samples (
    device_id               TEXT NOT NULL,
    epoch                   TEXT NOT NULL,
    seq                     INTEGER NOT NULL,
    collected_at_ms         INTEGER NOT NULL,
    received_at_ms          INTEGER NOT NULL,
    battery_health_percent  REAL,
    battery_charge_percent  REAL,
    battery_cycle_count     INTEGER,
    temperature_max_celsius REAL,
    cpu_usage_percent       REAL,
    memory_used_percent     REAL,
    load_1                  REAL,
    body                    TEXT NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE INDEX health_samples_device_time ON health_samples (device_id, collected_at_ms);
CREATE INDEX health_samples_time ON health_samples (collected_at_ms);

-- Hourly aggregates, kept long after raw samples are pruned. Averages are stored as
-- sum and count so that late samples merge exactly.
CREATE TABLE health_hourly (
    device_id               TEXT NOT NULL,
    hour_ms                 INTEGER NOT NULL,
    samples                 INTEGER NOT NULL,
    battery_health_min      REAL,
    battery_charge_sum      REAL NOT NULL,
    battery_charge_count    INTEGER NOT NULL,
    temperature_max_celsius REAL,
    cpu_usage_sum           REAL NOT NULL,
    cpu_usage_count         INTEGER NOT NULL,
    memory_used_sum         REAL NOT NULL,
    memory_used_count       INTEGER NOT NULL,
    load_1_sum              REAL NOT NULL,
    load_1_count            INTEGER NOT NULL,
    PRIMARY KEY (device_id, hour_ms)
);
CREATE INDEX health_hourly_time ON health_hourly (hour_ms);

CREATE TABLE inventory_latest (
    device_id       TEXT PRIMARY KEY,
    epoch           TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    collected_at_ms INTEGER NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    body_hash       TEXT NOT NULL,
    body            TEXT NOT NULL
);

-- A component that appeared, disappeared or was replaced between two inventories.
CREATE TABLE inventory_changes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id       TEXT NOT NULL,
    changed_at_ms   INTEGER NOT NULL,
    component       TEXT NOT NULL,
    slot            TEXT NOT NULL,
    change          TEXT NOT NULL,
    before_value    TEXT,
    after_value     TEXT
);
CREATE INDEX inventory_changes_device ON inventory_changes (device_id, changed_at_ms);

CREATE TABLE events (
    device_id       TEXT NOT NULL,
    epoch           TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    occurred_at_ms  INTEGER NOT NULL,
    received_at_ms  INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    detail          TEXT,
    data            TEXT,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE INDEX events_device_time ON events (device_id, occurred_at_ms);

-- Refused publishes: enough to diagnose, never the whole payload.
CREATE TABLE quarantine (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at_ms  INTEGER NOT NULL,
    topic           TEXT NOT NULL,
    reason          TEXT NOT NULL,
    error           TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    head            TEXT NOT NULL
);
CREATE INDEX quarantine_time ON quarantine (received_at_ms);
CREATE INDEX quarantine_reason ON quarantine (reason);
