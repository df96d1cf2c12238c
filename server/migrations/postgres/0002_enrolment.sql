-- Enrolment: tokens issued per member authority or school, and each device's broker
-- credentials. Keep this file equivalent to ../sqlite/0002_enrolment.sql.

CREATE TABLE enrollment_tokens (
    id              TEXT PRIMARY KEY,
    secret_sha256   TEXT NOT NULL,
    label           TEXT NOT NULL,
    scope           TEXT,
    created_at_ms   BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    revoked_at_ms   BIGINT,
    max_uses        BIGINT,
    uses            BIGINT NOT NULL DEFAULT 0
);

-- The broker password is random and long: a SHA-256 is enough to check it (no
-- dictionary to attack), and the Mosquitto line is kept ready for its password file.
ALTER TABLE devices ADD COLUMN mqtt_password_sha256 TEXT;
ALTER TABLE devices ADD COLUMN mosquitto_password_line TEXT;
ALTER TABLE devices ADD COLUMN token_id TEXT;
-- Lower-case MACs joined by ',' (device facts, used to recognise re-enrolled hardware
-- that has no usable serial).
ALTER TABLE devices ADD COLUMN macs TEXT;
