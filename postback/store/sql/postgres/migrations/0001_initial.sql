-- Postback schema, version 1 (PostgreSQL). Times are bigint milliseconds since the epoch.

CREATE TABLE accounts (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  bigint NOT NULL
);

-- API keys are stored as SHA-256 hashes only; the key itself is shown once, at creation.
CREATE TABLE api_keys (
    key_hash    text PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts(id),
    created_at  bigint NOT NULL
);

CREATE TABLE endpoints (
    id               text PRIMARY KEY,
    account_id       text NOT NULL REFERENCES accounts(id),
    url              text NOT NULL,
    description      text NOT NULL DEFAULT '',
    all_event_types  boolean NOT NULL,
    config           text NOT NULL,            -- JSON: retry_policy, timeout_ms, headers, auth, ...
    disabled         boolean NOT NULL DEFAULT false,
    is_callback_url  boolean NOT NULL DEFAULT false,
    deleted          boolean NOT NULL DEFAULT false,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL
);
CREATE INDEX endpoints_by_account ON endpoints(account_id, id) WHERE NOT deleted;
CREATE UNIQUE INDEX endpoints_callback_url ON endpoints(account_id, url)
    WHERE is_callback_url AND NOT deleted;

CREATE TABLE endpoint_event_types (
    endpoint_id  text NOT NULL REFERENCES endpoints(id),
    event_type   text NOT NULL,
    PRIMARY KEY (event_type, endpoint_id)
);

CREATE TABLE signing_secrets (
    id           bigserial PRIMARY KEY,
    endpoint_id  text NOT NULL REFERENCES endpoints(id),
    secret       text NOT NULL,
    created_at   bigint NOT NULL,
    expires_at   bigint                        -- NULL: current secret
);
CREATE INDEX signing_secrets_by_endpoint ON signing_secrets(endpoint_id);

CREATE TABLE messages (
    id               text PRIMARY KEY,
    account_id       text NOT NULL,
    event_type       text NOT NULL,
    payload          bytea NOT NULL,           -- exact submitted bytes
    idempotency_key  text,
    created_at       bigint NOT NULL
);

CREATE TABLE idempotency_keys (
    account_id   text NOT NULL,
    key          text NOT NULL,
    message_id   text NOT NULL,
    created_at   bigint NOT NULL,
    PRIMARY KEY (account_id, key)
);

CREATE TABLE deliveries (
    id                text PRIMARY KEY,
    message_id        text NOT NULL,
    account_id        text NOT NULL,
    endpoint_id       text NOT NULL,
    event_type        text NOT NULL,
    state             text NOT NULL,
    attempt_count     integer NOT NULL DEFAULT 0,
    schedule_base     integer NOT NULL DEFAULT 0,   -- attempt_count when last replayed
    next_attempt_at   bigint,
    lease_until       bigint,
    last_status_code  integer,
    last_error        text,
    dead_reason       text,
    created_at        bigint NOT NULL,
    updated_at        bigint NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_leased ON deliveries(lease_until) WHERE state = 'delivering';
CREATE INDEX deliveries_by_account ON deliveries(account_id, id);
CREATE INDEX deliveries_by_message ON deliveries(message_id);
CREATE INDEX deliveries_by_endpoint ON deliveries(endpoint_id, state);

CREATE TABLE attempts (
    id              text PRIMARY KEY,
    delivery_id     text NOT NULL,
    attempt_number  integer NOT NULL,
    started_at      bigint NOT NULL,
    duration_ms     double precision NOT NULL,
    outcome         text NOT NULL,
    status_code     integer,
    error           text,
    response_body   text
);
CREATE INDEX attempts_by_delivery ON attempts(delivery_id, id);
