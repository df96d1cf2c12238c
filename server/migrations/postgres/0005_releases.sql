-- Agent releases: the signed archives themselves (in the database, so that every server
-- replica serves the same bytes) and their staged rollout. Keep this file equivalent to
-- ../sqlite/0005_releases.sql.

CREATE TABLE agent_releases (
    channel          TEXT NOT NULL,
    version          TEXT NOT NULL,
    -- Published name: zipsign binds the signature to it, so it is never renamed.
    file_name        TEXT NOT NULL,
    target           TEXT NOT NULL,
    sha256           TEXT NOT NULL,
    size_bytes       BIGINT NOT NULL,
    archive          BYTEA NOT NULL,
    published_at_ms  BIGINT NOT NULL,
    -- Staged rollout: devices whose bucket (0-99) is below the percentage, plus every
    -- device of the named sites (UAIs, comma-separated).
    rollout_percent  BIGINT NOT NULL DEFAULT 0,
    rollout_sites    TEXT NOT NULL DEFAULT '',
    rollout_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (channel, file_name)
);
CREATE INDEX agent_releases_version ON agent_releases (channel, version);

-- update_available commands sent, so that each device is told once per release.
CREATE TABLE release_announcements (
    device_id        TEXT NOT NULL,
    channel          TEXT NOT NULL,
    version          TEXT NOT NULL,
    announced_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (device_id, channel, version)
);
