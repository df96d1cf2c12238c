-- Procurement: who buys (organisations), where devices live (sites, grappes, classrooms,
-- mobile carts), under which contract (contracts, lots, contract holders), what was
-- ordered (orders, order lines, funding lines) and what was delivered (deliveries, one
-- row per serial number).
--
-- Calendar days (order, delivery, acceptance and contract dates) are ISO 'YYYY-MM-DD'
-- text: they are days in France, not instants, and ISO text sorts and compares alike
-- on both engines. Instants are unix milliseconds (UTC), as in 0001. Amounts are cents,
-- VAT rates basis points (2000 = 20 %). No BOOLEAN: the Any driver cannot decode
-- SQLite's. Keep this file equivalent to ../sqlite/0003_procurement.sql.

CREATE TABLE organisations (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    -- departement, commune, sivos, epci, metropole
    kind            TEXT NOT NULL,
    -- coordinator (runs the groupement de commandes) or member
    role            TEXT NOT NULL,
    siren           TEXT,
    siret           TEXT,
    -- The coordinator whose groupement a member joined.
    coordinator_id  TEXT REFERENCES organisations (id),
    -- Maintains its equipment itself: tickets go to its own team.
    self_maintained BIGINT NOT NULL DEFAULT 0
);

-- A collège and the primary schools that feed it.
CREATE TABLE grappes (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL
);

CREATE TABLE sites (
    uai             TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    -- ecole or college
    kind            TEXT NOT NULL,
    owner_id        TEXT NOT NULL REFERENCES organisations (id),
    street          TEXT NOT NULL,
    postcode        TEXT NOT NULL,
    city            TEXT NOT NULL,
    -- Decides the holiday calendar ('57' is Alsace-Moselle's).
    departement     TEXT NOT NULL,
    grappe_id       TEXT REFERENCES grappes (id)
);
CREATE INDEX sites_grappe ON sites (grappe_id);

CREATE TABLE classrooms (
    site_uai        TEXT NOT NULL REFERENCES sites (uai),
    name            TEXT NOT NULL,
    PRIMARY KEY (site_uai, name)
);

-- A classe mobile: its devices are the deliveries naming it.
CREATE TABLE carts (
    id              TEXT PRIMARY KEY,
    site_uai        TEXT NOT NULL REFERENCES sites (uai),
    name            TEXT NOT NULL,
    -- Where it is usually kept, if anywhere.
    home_classroom  TEXT
);
CREATE INDEX carts_site ON carts (site_uai);

CREATE TABLE contract_holders (
    id              TEXT PRIMARY KEY,
    company         TEXT NOT NULL,
    siret           TEXT NOT NULL,
    support_email   TEXT NOT NULL,
    webhook_url     TEXT,
    -- JSON array of {name, role, email, phone}.
    contacts        TEXT NOT NULL
);

CREATE TABLE contracts (
    reference       TEXT PRIMARY KEY,
    title           TEXT NOT NULL,
    coordinator_id  TEXT NOT NULL REFERENCES organisations (id),
    starts_on       TEXT NOT NULL,
    ends_on         TEXT NOT NULL
);

-- Warranty and SLA terms live on the lot; warranties are computed on read from them,
-- so changing a lot's terms changes every device's warranty at once.
CREATE TABLE lots (
    contract_ref            TEXT NOT NULL REFERENCES contracts (reference),
    number                  BIGINT NOT NULL,
    title                   TEXT NOT NULL,
    holder_id               TEXT NOT NULL REFERENCES contract_holders (id),
    warranty_months         BIGINT NOT NULL,
    -- delivery or acceptance
    warranty_starts_at      TEXT NOT NULL,
    battery_months          BIGINT,
    -- on_site or return_to_base
    service_mode            TEXT NOT NULL,
    -- SlaDuration text ("4h", "2d"), NULL when the CCAP states none.
    gti                     TEXT,
    gtr                     TEXT,
    -- 'HH:MM' local time.
    business_opens_at       TEXT NOT NULL,
    business_closes_at      TEXT NOT NULL,
    penalty_per_day_cents   BIGINT,
    PRIMARY KEY (contract_ref, number)
);

CREATE TABLE orders (
    reference       TEXT PRIMARY KEY,
    member_id       TEXT NOT NULL REFERENCES organisations (id),
    contract_ref    TEXT NOT NULL,
    lot_number      BIGINT NOT NULL,
    ordered_on      TEXT NOT NULL,
    FOREIGN KEY (contract_ref, lot_number) REFERENCES lots (contract_ref, number)
);

CREATE TABLE order_lines (
    order_ref               TEXT NOT NULL REFERENCES orders (reference),
    line_no                 BIGINT NOT NULL,
    model                   TEXT NOT NULL,
    quantity                BIGINT NOT NULL,
    unit_price_cents        BIGINT NOT NULL,
    vat_rate_bp             BIGINT NOT NULL,
    PRIMARY KEY (order_ref, line_no)
);

CREATE TABLE funding_lines (
    order_ref       TEXT NOT NULL REFERENCES orders (reference),
    line_no         BIGINT NOT NULL,
    source          TEXT NOT NULL,
    amount_cents    BIGINT NOT NULL,
    PRIMARY KEY (order_ref, line_no)
);

-- One row per delivered serial (normalised with parc_protocol::normalize_serial): the
-- key that makes re-importing a manifest a no-op and links a reporting device
-- (devices.serial) to its order, lot and site.
CREATE TABLE deliveries (
    serial          TEXT PRIMARY KEY,
    model           TEXT NOT NULL,
    order_ref       TEXT NOT NULL REFERENCES orders (reference),
    contract_ref    TEXT NOT NULL,
    lot_number      BIGINT NOT NULL,
    site_uai        TEXT NOT NULL REFERENCES sites (uai),
    delivered_on    TEXT NOT NULL,
    accepted_on     TEXT,
    cart_id         TEXT REFERENCES carts (id),
    imported_at_ms  BIGINT NOT NULL,
    FOREIGN KEY (contract_ref, lot_number) REFERENCES lots (contract_ref, number)
);
CREATE INDEX deliveries_order ON deliveries (order_ref);
CREATE INDEX deliveries_site ON deliveries (site_uai);
CREATE INDEX deliveries_cart ON deliveries (cart_id);
CREATE INDEX deliveries_lot ON deliveries (contract_ref, lot_number);
