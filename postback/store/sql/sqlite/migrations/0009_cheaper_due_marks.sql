-- The due marks cost a write per pending delivery (an upsert into endpoint_work for every row
-- of a batch). A mark only matters when it moves the endpoint's due time earlier, so the
-- triggers now look first (one primary-key read) and write only then. SQLite has one writer
-- at a time, so the version bump that PostgreSQL's compare-and-set needs is not relied on here.
DROP TRIGGER deliveries_mark_due_on_insert;
DROP TRIGGER deliveries_mark_due_on_update;

CREATE TRIGGER deliveries_mark_due_on_insert AFTER INSERT ON deliveries
WHEN NEW.state = 'pending'
 AND NOT EXISTS (SELECT 1 FROM endpoint_work w
                 WHERE w.endpoint_id = NEW.endpoint_id AND w.due_at <= NEW.next_attempt_at)
BEGIN
    INSERT INTO endpoint_work (endpoint_id, due_at) VALUES (NEW.endpoint_id, NEW.next_attempt_at)
    ON CONFLICT (endpoint_id) DO UPDATE SET due_at = min(due_at, excluded.due_at),
                                            version = version + 1;
END;

CREATE TRIGGER deliveries_mark_due_on_update AFTER UPDATE OF state, next_attempt_at ON deliveries
WHEN NEW.state = 'pending'
 AND NOT EXISTS (SELECT 1 FROM endpoint_work w
                 WHERE w.endpoint_id = NEW.endpoint_id AND w.due_at <= NEW.next_attempt_at)
BEGIN
    INSERT INTO endpoint_work (endpoint_id, due_at) VALUES (NEW.endpoint_id, NEW.next_attempt_at)
    ON CONFLICT (endpoint_id) DO UPDATE SET due_at = min(due_at, excluded.due_at),
                                            version = version + 1;
END;
