-- Accounts as a platform's customers, and API keys that can be listed, rotated and revoked.
-- accounts.external_id: the platform's own id for the customer (unique; NULLs are distinct).
-- api_keys: an id to name a key by, its first characters and last four to recognise it, a
-- name, and revoked_at (the key stops working then). account_id NULL: a platform key, which
-- acts on every account. Keys made before this migration keep working; they get an id derived
-- from their hash and no last four characters (those were never stored).
ALTER TABLE accounts ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX accounts_external_id ON accounts(external_id);

-- SQLite cannot drop NOT NULL from account_id: the table is rebuilt.
CREATE TABLE api_keys_v8 (
    id          TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,
    account_id  TEXT REFERENCES accounts(id),
    name        TEXT NOT NULL DEFAULT '',
    prefix      TEXT NOT NULL,
    last4       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
INSERT INTO api_keys_v8 (id, key_hash, account_id, prefix, last4, created_at)
SELECT 'key_' || upper(substr(key_hash, 1, 26)), key_hash, account_id, 'pbk_', '', created_at
FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_v8 RENAME TO api_keys;
CREATE INDEX api_keys_by_account ON api_keys(account_id, id);
