-- Per-recipient ordering, and batches whose recipient statuses produce delivery reports.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
CREATE INDEX deliveries_ordered ON deliveries(endpoint_id, ordering_key, id)
    WHERE ordering_key IS NOT NULL AND state IN ('pending', 'delivering');

CREATE TABLE batches (
    account_id           TEXT NOT NULL,
    batch_id             TEXT NOT NULL,
    mode                 TEXT NOT NULL,       -- none, summary, full, per_recipient, per_recipient_final
    kind                 TEXT NOT NULL,       -- sms or mms
    client_reference     TEXT,
    callback_url         TEXT,
    expected_recipients  INTEGER NOT NULL DEFAULT 0,
    report_deadline      INTEGER NOT NULL,
    report_state         TEXT NOT NULL,       -- waiting, sent, none
    created_at           INTEGER NOT NULL,
    PRIMARY KEY (account_id, batch_id)
) WITHOUT ROWID;
CREATE INDEX batches_report_due ON batches(report_deadline) WHERE report_state = 'waiting';

CREATE TABLE batch_recipients (
    account_id  TEXT NOT NULL,
    batch_id    TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    status      TEXT,                         -- NULL until the first update
    code        INTEGER,
    PRIMARY KEY (account_id, batch_id, recipient)
) WITHOUT ROWID;
