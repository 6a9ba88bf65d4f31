-- Which endpoints have pending work and from when: the claim path reads this small table and
-- then each such endpoint's own due rows, so its cost never grows with rows it cannot take
-- (a stuck endpoint's backlog, work scheduled for later). Kept by statement triggers, so every
-- path that makes a delivery pending (ingest, retry, release, lease expiry, replay) marks it.
-- `version` grows with every mark: a claimer moves due_at forward only if nobody marked the
-- endpoint since it looked (compare-and-set; a mark in flight holds the row lock until its
-- commit, and the claimer's UPDATE re-checks the version after waiting), so no mark is lost.
-- Claimers serialize per endpoint on a transaction advisory lock, not on this row, so a
-- stream of ingests never starves the claim of a busy endpoint.
CREATE TABLE endpoint_work (
    endpoint_id text PRIMARY KEY,
    due_at bigint NOT NULL,
    version bigint NOT NULL DEFAULT 0
);
CREATE INDEX endpoint_work_due ON endpoint_work(due_at);

CREATE INDEX deliveries_endpoint_due ON deliveries(endpoint_id, next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX deliveries_endpoint_in_flight ON deliveries(endpoint_id)
    WHERE state = 'delivering';
DROP INDEX deliveries_due;

INSERT INTO endpoint_work (endpoint_id, due_at)
SELECT endpoint_id, min(next_attempt_at) FROM deliveries WHERE state = 'pending'
GROUP BY endpoint_id;

CREATE FUNCTION postback_mark_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Sorted by endpoint, so two statements marking the same endpoints never deadlock.
    INSERT INTO endpoint_work AS w (endpoint_id, due_at)
    SELECT endpoint_id, min(next_attempt_at) FROM marked_rows
    WHERE state = 'pending' GROUP BY endpoint_id ORDER BY endpoint_id
    ON CONFLICT (endpoint_id) DO UPDATE SET due_at = least(w.due_at, excluded.due_at),
                                            version = w.version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_mark_due_on_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS marked_rows FOR EACH STATEMENT EXECUTE FUNCTION postback_mark_due();
CREATE TRIGGER deliveries_mark_due_on_update AFTER UPDATE ON deliveries
    REFERENCING NEW TABLE AS marked_rows FOR EACH STATEMENT EXECUTE FUNCTION postback_mark_due();
