-- Which deliveries each endpoint has, for the listings by endpoint (the API's endpoint_id
-- filter, the portal) and an endpoint's activity plot: a table filled from `deliveries` about
-- once a second by the writer (sqlite.py, _list_new_deliveries), not an index kept at every
-- insert. With a thousand customers, the entries of deliveries_by_endpoint (endpoint_id,
-- state) landed on another page for each customer and moved at every change of state: the
-- many-customers bench ran 1.24x as fast without it (docs/deployment.md, session 16).
--
-- endpoint_deliveries holds every delivery whose rowid is at most endpoint_deliveries_upto's
-- `upto`; listings read the newer ones from `deliveries` itself (a rowid range: the last
-- second or so). A rowid is given at insert under the write lock, so rowid order is commit
-- order and nothing committed below `upto` can be missed. The live states keep their partial
-- indexes (deliveries_endpoint_due, _in_flight, deliveries_dead).
CREATE TABLE endpoint_deliveries (
    endpoint_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, delivery_id)
) WITHOUT ROWID;

-- upto_id: the delivery that had rowid `upto` when it was listed; if another row has that
-- rowid now, rowids were handed out again (rows deleted by hand) and everything is relisted.
CREATE TABLE endpoint_deliveries_upto (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    upto    INTEGER NOT NULL,
    upto_id TEXT
);

INSERT INTO endpoint_deliveries (endpoint_id, delivery_id)
SELECT endpoint_id, id FROM deliveries ORDER BY endpoint_id, id;
INSERT INTO endpoint_deliveries_upto (id, upto, upto_id)
SELECT 1, coalesce(max(rowid), 0), (SELECT id FROM deliveries ORDER BY rowid DESC LIMIT 1)
FROM deliveries;

DROP INDEX deliveries_by_endpoint;
