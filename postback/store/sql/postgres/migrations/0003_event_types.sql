-- Custom event types registered by an account, each with the JSON Schema its payloads must meet.
CREATE TABLE event_types (
    account_id   text NOT NULL,
    name         text NOT NULL,
    description  text NOT NULL DEFAULT '',
    schema       text NOT NULL,
    created_at   bigint NOT NULL,
    PRIMARY KEY (account_id, name)
);
