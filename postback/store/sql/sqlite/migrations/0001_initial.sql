-- Postback schema, version 1 (SQLite). Times are integer milliseconds since the epoch.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- API keys are stored as SHA-256 hashes only; the key itself is shown once, at creation.
CREATE TABLE api_keys (
    key_hash    TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    created_at  INTEGER NOT NULL
);

CREATE TABLE endpoints (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    url              TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    all_event_types  INTEGER NOT NULL,          -- 1: subscribed to every event type
    config           TEXT NOT NULL,             -- JSON: retry_policy, timeout_ms, headers, auth, ...
    disabled         INTEGER NOT NULL DEFAULT 0,
    is_callback_url  INTEGER NOT NULL DEFAULT 0,
    deleted          INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX endpoints_by_account ON endpoints(account_id, id) WHERE deleted = 0;
CREATE UNIQUE INDEX endpoints_callback_url ON endpoints(account_id, url)
    WHERE is_callback_url = 1 AND deleted = 0;

CREATE TABLE endpoint_event_types (
    endpoint_id  TEXT NOT NULL REFERENCES endpoints(id),
    event_type   TEXT NOT NULL,
    PRIMARY KEY (event_type, endpoint_id)
) WITHOUT ROWID;

CREATE TABLE signing_secrets (
    endpoint_id  TEXT NOT NULL REFERENCES endpoints(id),
    secret       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER                       -- NULL: current secret
);
CREATE INDEX signing_secrets_by_endpoint ON signing_secrets(endpoint_id);

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    payload          BLOB NOT NULL,            -- exact submitted bytes
    idempotency_key  TEXT,
    created_at       INTEGER NOT NULL
);

CREATE TABLE idempotency_keys (
    account_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;

CREATE TABLE deliveries (
    id                TEXT PRIMARY KEY,
    message_id        TEXT NOT NULL,
    account_id        TEXT NOT NULL,
    endpoint_id       TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    state             TEXT NOT NULL,
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    schedule_base     INTEGER NOT NULL DEFAULT 0,   -- attempt_count when last replayed
    next_attempt_at   INTEGER,
    lease_until       INTEGER,
    last_status_code  INTEGER,
    last_error        TEXT,
    dead_reason       TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
-- The claim query walks this index in due order; it holds only pending rows.
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_leased ON deliveries(lease_until) WHERE state = 'delivering';
CREATE INDEX deliveries_by_account ON deliveries(account_id, id);
CREATE INDEX deliveries_by_message ON deliveries(message_id);
CREATE INDEX deliveries_by_endpoint ON deliveries(endpoint_id, state);

CREATE TABLE attempts (
    id              TEXT PRIMARY KEY,
    delivery_id     TEXT NOT NULL,
    attempt_number  INTEGER NOT NULL,
    started_at      INTEGER NOT NULL,
    duration_ms     REAL NOT NULL,
    outcome         TEXT NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    response_body   TEXT
);
CREATE INDEX attempts_by_delivery ON attempts(delivery_id, id);
