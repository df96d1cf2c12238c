-- Devices, what they reported, and what was refused. Times are unix milliseconds (UTC):
-- sqlx's Any driver maps integers, not timestamps, and both engines compare them alike.
-- Keep this file equivalent to ../sqlite/0001_ingest.sql.

CREATE TABLE devices (
    device_id       TEXT PRIMARY KEY,
    key_b64         TEXT NOT NULL,
    serial          TEXT,
    manufacturer    TEXT,
    product_name    TEXT,
    hostname        TEXT,
    agent_version   TEXT,
    enrolled_at_ms  BIGINT NOT NULL,
    revoked_at_ms   BIGINT,
    first_seen_ms   BIGINT,
    last_seen_ms    BIGINT,
    online          BOOLEAN,
    status_at_ms    BIGINT
);
CREATE INDEX devices_serial ON devices (serial);

-- One row per accepted message: the dedup key across broker redelivery and replays.
CREATE TABLE received (
    device_id       TEXT NOT NULL,
    epoch           TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    received_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE INDEX received_at ON received (received_at_ms);

CREATE TABLE health_samples (
    device_id               TEXT NOT NULL,
    epoch                   TEXT NOT NULL,
    seq                     BIGINT NOT NULL,
    collected_at_ms         BIGINT NOT NULL,
    received_at_ms          BIGINT NOT NULL,
    battery_health_percent  DOUBLE PRECISION,
    battery_charge_percent  DOUBLE PRECISION,
    battery_cycle_count     BIGINT,
    temperature_max_celsius DOUBLE PRECISION,
    cpu_usage_percent       DOUBLE PRECISION,
    memory_used_percent     DOUBLE PRECISION,
    load_1                  DOUBLE PRECISION,
    body                    TEXT NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE INDEX health_samples_device_time ON health_samples (device_id, collected_at_ms);
CREATE INDEX health_samples_time ON health_samples (collected_at_ms);

-- Hourly aggregates, kept long after raw samples are pruned. Averages are stored as
-- sum and count so that late samples merge exactly.
CREATE TABLE health_hourly (
    device_id               TEXT NOT NULL,
    hour_ms                 BIGINT NOT NULL,
    samples                 BIGINT NOT NULL,
    battery_health_min      DOUBLE PRECISION,
    battery_charge_sum      DOUBLE PRECISION NOT NULL,
    battery_charge_count    BIGINT NOT NULL,
    temperature_max_celsius DOUBLE PRECISION,
    cpu_usage_sum           DOUBLE PRECISION NOT NULL,
    cpu_usage_count         BIGINT NOT NULL,
    memory_used_sum         DOUBLE PRECISION NOT NULL,
    memory_used_count       BIGINT NOT NULL,
    load_1_sum              DOUBLE PRECISION NOT NULL,
    load_1_count            BIGINT NOT NULL,
    PRIMARY KEY (device_id, hour_ms)
);
CREATE INDEX health_hourly_time ON health_hourly (hour_ms);

CREATE TABLE inventory_latest (
    device_id       TEXT PRIMARY KEY,
    epoch           TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    collected_at_ms BIGINT NOT NULL,
    received_at_ms  BIGINT NOT NULL,
    body_hash       TEXT NOT NULL,
    body            TEXT NOT NULL
);

-- A component that appeared, disappeared or was replaced between two inventories.
CREATE TABLE inventory_changes (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id       TEXT NOT NULL,
    changed_at_ms   BIGINT NOT NULL,
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
    seq             BIGINT NOT NULL,
    occurred_at_ms  BIGINT NOT NULL,
    received_at_ms  BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    detail          TEXT,
    data            TEXT,
    PRIMARY KEY (device_id, epoch, seq)
);
CREATE INDEX events_device_time ON events (device_id, occurred_at_ms);

-- Refused publishes: enough to diagnose, never the whole payload.
CREATE TABLE quarantine (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at_ms  BIGINT NOT NULL,
    topic           TEXT NOT NULL,
    reason          TEXT NOT NULL,
    error           TEXT NOT NULL,
    size_bytes      BIGINT NOT NULL,
    head            TEXT NOT NULL
);
CREATE INDEX quarantine_time ON quarantine (received_at_ms);
CREATE INDEX quarantine_reason ON quarantine (reason);
