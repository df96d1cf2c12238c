-- Access control and the dashboard's read model: local accounts (argon2id password
-- hashes), browser sessions and API tokens (SHA-256 of high-entropy secrets, never the
-- secrets), and each device's latest health readings, kept by the dashboard refresher so
-- the fleet overview never scans health samples. Keep this file equivalent to
-- ../postgres/0006_accounts.sql.

-- role: admin (the coordinator's administrators: everything), technician (its
-- organisation's sites, devices and tickets), holder (the tickets and devices of its
-- lots), viewer (read-only, scoped like a technician when it has an organisation).
CREATE TABLE accounts (
    login            TEXT PRIMARY KEY,
    display_name     TEXT NOT NULL,
    password_hash    TEXT NOT NULL,
    role             TEXT NOT NULL,
    organisation_id  TEXT REFERENCES organisations (id),
    holder_id        TEXT REFERENCES contract_holders (id),
    created_at_ms    INTEGER NOT NULL,
    disabled_at_ms   INTEGER
);

-- The cookie carries the session secret; only its SHA-256 is stored.
CREATE TABLE sessions (
    secret_sha256    TEXT PRIMARY KEY,
    login            TEXT NOT NULL REFERENCES accounts (login),
    csrf_token       TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    expires_at_ms    INTEGER NOT NULL
);
CREATE INDEX sessions_login ON sessions (login);

CREATE TABLE api_tokens (
    id               TEXT PRIMARY KEY,
    secret_sha256    TEXT NOT NULL,
    login            TEXT NOT NULL REFERENCES accounts (login),
    label            TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    expires_at_ms    INTEGER,
    revoked_at_ms    INTEGER
);

-- The latest health readings per device (a copy of its newest health sample's columns).
CREATE TABLE device_latest (
    device_id               TEXT PRIMARY KEY,
    collected_at_ms         INTEGER NOT NULL,
    battery_health_percent  REAL,
    temperature_max_celsius REAL
);

CREATE INDEX devices_hostname ON devices (hostname);
CREATE INDEX devices_last_seen ON devices (last_seen_ms);
