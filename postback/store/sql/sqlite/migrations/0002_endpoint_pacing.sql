-- Shared per-endpoint pacing (rate limit slots and 429 backoff), so limits hold across processes.
CREATE TABLE endpoint_pacing (
    endpoint_id   TEXT PRIMARY KEY,
    current_rate  REAL,
    ceiling       REAL,
    paused_until  INTEGER NOT NULL DEFAULT 0,
    next_slot     INTEGER NOT NULL DEFAULT 0,
    last_change   INTEGER NOT NULL DEFAULT 0
);
