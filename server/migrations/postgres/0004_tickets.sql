-- Fault rules and maintenance tickets: the rule inbox ingest fills, per-device rule
-- states, findings, tickets (one per device and fault, or one grouped claim per lot,
-- model and fault), their audit trail, and the outbox that dispatches them.
-- Instants are unix milliseconds (UTC). No BOOLEAN (see 0003). Keep this file
-- equivalent to ../sqlite/0004_tickets.sql.

-- Health samples not yet evaluated by the rules, written in the ingest transaction and
-- deleted in the transaction that evaluates them: no sample is judged twice or never.
CREATE TABLE rule_inbox (
    device_id       TEXT NOT NULL,
    epoch           TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    collected_at_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, epoch, seq)
);

-- Hysteresis counters per device and rule (a JSON rules::RuleState).
CREATE TABLE rule_states (
    device_id       TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    raised          BIGINT NOT NULL,
    state           TEXT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (device_id, rule_id)
);

-- Background work that only one replica may do at a time (rules, dispatch).
CREATE TABLE leases (
    name            TEXT PRIMARY KEY,
    holder          TEXT NOT NULL,
    until_ms        BIGINT NOT NULL
);

CREATE TABLE tickets (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reference           TEXT NOT NULL UNIQUE,
    -- device (one device, one fault) or batch (a grouped claim for a lot and model)
    kind                TEXT NOT NULL,
    -- Set while the ticket is open: at most one open ticket per device and fault, and
    -- one open claim per lot, model and fault. NULL once closed or rejected.
    open_key            TEXT UNIQUE,
    device_id           TEXT,
    rule_id             TEXT NOT NULL,
    category            TEXT NOT NULL,
    severity            TEXT NOT NULL,
    -- holder (the lot's contract holder) or authority (the owner's own team)
    queue               TEXT NOT NULL,
    route_reason        TEXT NOT NULL,
    holder_id           TEXT,
    organisation_id     TEXT,
    contract_ref        TEXT,
    lot_number          BIGINT,
    model               TEXT,
    site_uai            TEXT,
    -- A device ticket merged into a grouped claim.
    parent_id           BIGINT REFERENCES tickets (id),
    status              TEXT NOT NULL,
    opened_at_ms        BIGINT NOT NULL,
    sent_at_ms          BIGINT,
    acknowledged_at_ms  BIGINT,
    in_progress_at_ms   BIGINT,
    resolved_at_ms      BIGINT,
    closed_at_ms        BIGINT,
    gti_due_ms          BIGINT,
    gtr_due_ms          BIGINT,
    penalty_per_day_cents BIGINT,
    occurrences         BIGINT NOT NULL,
    last_finding_at_ms  BIGINT NOT NULL,
    -- Bad samples seen since a resolution was declared (telemetry confirmation).
    bad_since_resolved  BIGINT NOT NULL DEFAULT 0,
    -- JSON parc_protocol::TicketNotice: everything the receiver needs.
    document            TEXT NOT NULL,
    updated_at_ms       BIGINT NOT NULL
);
CREATE INDEX tickets_device ON tickets (device_id, rule_id);
CREATE INDEX tickets_status ON tickets (status, opened_at_ms);
CREATE INDEX tickets_lot ON tickets (contract_ref, lot_number, opened_at_ms);
CREATE INDEX tickets_holder ON tickets (holder_id, status);
CREATE INDEX tickets_org ON tickets (organisation_id, status);

-- Devices of a grouped claim.
CREATE TABLE ticket_devices (
    ticket_id       BIGINT NOT NULL REFERENCES tickets (id),
    device_id       TEXT NOT NULL,
    added_at_ms     BIGINT NOT NULL,
    PRIMARY KEY (ticket_id, device_id)
);

-- Every status change and notable fact, with who did it.
CREATE TABLE ticket_events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id       BIGINT NOT NULL REFERENCES tickets (id),
    at_ms           BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    from_status     TEXT,
    to_status       TEXT,
    note            TEXT
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, at_ms);

-- A rule raised on a device: what storm control counts and the scorecard reads.
CREATE TABLE findings (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id       TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    contract_ref    TEXT,
    lot_number      BIGINT,
    model           TEXT,
    raised_at_ms    BIGINT NOT NULL,
    cleared_at_ms   BIGINT,
    value           DOUBLE PRECISION NOT NULL,
    ticket_id       BIGINT REFERENCES tickets (id)
);
CREATE INDEX findings_group ON findings (contract_ref, lot_number, model, rule_id, raised_at_ms);
CREATE INDEX findings_device ON findings (device_id, rule_id, raised_at_ms);

-- Deliveries to send, written in the transaction that created or changed the ticket.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id       BIGINT NOT NULL REFERENCES tickets (id),
    -- webhook or email
    channel         TEXT NOT NULL,
    destination     TEXT NOT NULL,
    -- ticket.created or ticket.updated
    event           TEXT NOT NULL,
    -- Sent with every attempt: receivers apply a key once.
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at_ms   BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    delivered_at_ms BIGINT,
    -- delivered, coalesced (a later update carried it), or failed (gave up)
    outcome         TEXT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (delivered_at_ms, next_attempt_ms);
CREATE INDEX outbox_ticket ON outbox (ticket_id);

-- The secret a contract holder verifies X-Parc-Signature with.
ALTER TABLE contract_holders ADD COLUMN webhook_secret TEXT;
