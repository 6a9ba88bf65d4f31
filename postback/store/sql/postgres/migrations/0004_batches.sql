-- Per-recipient ordering, and batches whose recipient statuses produce delivery reports.
ALTER TABLE deliveries ADD COLUMN ordering_key text;
CREATE INDEX deliveries_ordered ON deliveries(endpoint_id, ordering_key, id)
    WHERE ordering_key IS NOT NULL AND state IN ('pending', 'delivering');

CREATE TABLE batches (
    account_id           text NOT NULL,
    batch_id             text NOT NULL,
    mode                 text NOT NULL,
    kind                 text NOT NULL,
    client_reference     text,
    callback_url         text,
    expected_recipients  integer NOT NULL DEFAULT 0,
    report_deadline      bigint NOT NULL,
    report_state         text NOT NULL,
    created_at           bigint NOT NULL,
    PRIMARY KEY (account_id, batch_id)
);
CREATE INDEX batches_report_due ON batches(report_deadline) WHERE report_state = 'waiting';

CREATE TABLE batch_recipients (
    account_id  text NOT NULL,
    batch_id    text NOT NULL,
    recipient   text NOT NULL,
    status      text,
    code        integer,
    PRIMARY KEY (account_id, batch_id, recipient)
);
