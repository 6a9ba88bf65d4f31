-- Endpoint health, kept by the dispatcher as it records attempts (postback/core/health.py), and
-- why and when an endpoint was disabled. One row per endpoint that has been attempted.
CREATE TABLE endpoint_health (
    endpoint_id           text PRIMARY KEY,
    window_start          bigint NOT NULL DEFAULT 0,
    successes             bigint NOT NULL DEFAULT 0,
    failures              bigint NOT NULL DEFAULT 0,
    prev_successes        bigint NOT NULL DEFAULT 0,
    prev_failures         bigint NOT NULL DEFAULT 0,
    latency               text NOT NULL DEFAULT '[]',   -- JSON: bucket counts, current window
    prev_latency          text NOT NULL DEFAULT '[]',   -- JSON: bucket counts, previous window
    consecutive_failures  bigint NOT NULL DEFAULT 0,
    consecutive_dead      bigint NOT NULL DEFAULT 0,
    failing_since         bigint,
    last_success_at       bigint,
    last_failure_at       bigint,
    failing_announced     boolean NOT NULL DEFAULT false,
    disabled_reason       text,
    disabled_at           bigint,
    updated_at            bigint NOT NULL DEFAULT 0
);
-- The metrics poller's "top failing endpoints".
CREATE INDEX endpoint_health_failing ON endpoint_health(consecutive_failures)
    WHERE consecutive_failures > 0;

-- Counting dead deliveries (the backlog gauge, an endpoint's health) without a scan.
CREATE INDEX deliveries_dead ON deliveries(endpoint_id) WHERE state = 'dead';

-- Account-wide auto-disable period in seconds (NULL: the process default; 0: never).
ALTER TABLE accounts ADD COLUMN disable_after_s bigint;

-- /readyz writes here: "the database takes a write" is what readiness means.
CREATE TABLE readiness_probe (
    id         integer PRIMARY KEY,
    probed_at  bigint NOT NULL
);
INSERT INTO readiness_probe (id, probed_at) VALUES (1, 0);
