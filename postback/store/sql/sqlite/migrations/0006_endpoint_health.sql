-- Endpoint health, kept by the dispatcher as it records attempts (postback/core/health.py), and
-- why and when an endpoint was disabled. One row per endpoint that has been attempted.
CREATE TABLE endpoint_health (
    endpoint_id           TEXT PRIMARY KEY,
    window_start          INTEGER NOT NULL DEFAULT 0,
    successes             INTEGER NOT NULL DEFAULT 0,
    failures              INTEGER NOT NULL DEFAULT 0,
    prev_successes        INTEGER NOT NULL DEFAULT 0,
    prev_failures         INTEGER NOT NULL DEFAULT 0,
    latency               TEXT NOT NULL DEFAULT '[]',   -- JSON: bucket counts, current window
    prev_latency          TEXT NOT NULL DEFAULT '[]',   -- JSON: bucket counts, previous window
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    consecutive_dead      INTEGER NOT NULL DEFAULT 0,
    failing_since         INTEGER,
    last_success_at       INTEGER,
    last_failure_at       INTEGER,
    failing_announced     INTEGER NOT NULL DEFAULT 0,
    disabled_reason       TEXT,
    disabled_at           INTEGER,
    updated_at            INTEGER NOT NULL DEFAULT 0
);
-- The metrics poller's "top failing endpoints".
CREATE INDEX endpoint_health_failing ON endpoint_health(consecutive_failures)
    WHERE consecutive_failures > 0;

-- Counting dead deliveries (the backlog gauge, an endpoint's health) without a scan.
CREATE INDEX deliveries_dead ON deliveries(endpoint_id) WHERE state = 'dead';

-- Account-wide auto-disable period in seconds (NULL: the process default; 0: never).
ALTER TABLE accounts ADD COLUMN disable_after_s INTEGER;

-- /readyz writes here: "the database takes a write" is what readiness means.
CREATE TABLE readiness_probe (
    id         INTEGER PRIMARY KEY,
    probed_at  INTEGER NOT NULL
);
INSERT INTO readiness_probe (id, probed_at) VALUES (1, 0);
