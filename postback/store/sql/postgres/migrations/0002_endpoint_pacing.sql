-- Shared per-endpoint pacing (rate limit slots and 429 backoff), so limits hold across the fleet.
CREATE TABLE endpoint_pacing (
    endpoint_id   text PRIMARY KEY,
    current_rate  double precision,
    ceiling       double precision,
    paused_until  bigint NOT NULL DEFAULT 0,
    next_slot     bigint NOT NULL DEFAULT 0,
    last_change   bigint NOT NULL DEFAULT 0
);
