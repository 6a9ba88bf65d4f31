-- Which endpoints have pending work and from when: the claim path reads this small table and
-- then each such endpoint's own due rows, so its cost never grows with rows it cannot take
-- (a stuck endpoint's backlog, work scheduled for later). Kept by triggers, so every path that
-- makes a delivery pending (ingest, retry, release, lease expiry, replay) marks it.
CREATE TABLE endpoint_work (
    endpoint_id TEXT PRIMARY KEY,
    due_at INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 0   -- as in PostgreSQL; one writer needs no compare-and-set
) WITHOUT ROWID;
CREATE INDEX endpoint_work_due ON endpoint_work(due_at);

CREATE INDEX deliveries_endpoint_due ON deliveries(endpoint_id, next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX deliveries_endpoint_in_flight ON deliveries(endpoint_id)
    WHERE state = 'delivering';
DROP INDEX deliveries_due;

INSERT INTO endpoint_work (endpoint_id, due_at)
SELECT endpoint_id, min(next_attempt_at) FROM deliveries WHERE state = 'pending'
GROUP BY endpoint_id;

CREATE TRIGGER deliveries_mark_due_on_insert AFTER INSERT ON deliveries
WHEN NEW.state = 'pending'
BEGIN
    INSERT INTO endpoint_work (endpoint_id, due_at) VALUES (NEW.endpoint_id, NEW.next_attempt_at)
    ON CONFLICT (endpoint_id) DO UPDATE SET due_at = min(due_at, excluded.due_at),
                                            version = version + 1;
END;

CREATE TRIGGER deliveries_mark_due_on_update AFTER UPDATE OF state, next_attempt_at ON deliveries
WHEN NEW.state = 'pending'
BEGIN
    INSERT INTO endpoint_work (endpoint_id, due_at) VALUES (NEW.endpoint_id, NEW.next_attempt_at)
    ON CONFLICT (endpoint_id) DO UPDATE SET due_at = min(due_at, excluded.due_at),
                                            version = version + 1;
END;
