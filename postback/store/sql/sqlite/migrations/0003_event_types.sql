-- Custom event types registered by an account, each with the JSON Schema its payloads must meet.
CREATE TABLE event_types (
    account_id   TEXT NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    schema       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
