-- Named queries for the SQLite adapter. Each starts with a "-- name: NAME" line.

-- name: insert_account
-- Nothing is inserted when the external_id is taken (the adapter reports it).
INSERT INTO accounts (id, name, external_id, created_at)
VALUES (:id, :name, :external_id, :created_at)
ON CONFLICT DO NOTHING;

-- name: account_by_ref
-- An account by its id or its external_id (external ids never look like account ids).
SELECT id, name, created_at, external_id FROM accounts
WHERE id = :ref OR external_id = :ref
ORDER BY id = :ref DESC
LIMIT 1;

-- name: list_accounts
-- :q is lowercased by the adapter; it matches part of the name or of the external_id.
SELECT id, name, created_at, external_id FROM accounts
WHERE (:after IS NULL OR id > :after)
  AND (:q IS NULL
       OR instr(lower(name), :q) > 0
       OR instr(lower(coalesce(external_id, '')), :q) > 0)
ORDER BY id
LIMIT :limit;

-- name: insert_api_key
INSERT INTO api_keys (id, key_hash, account_id, name, prefix, last4, created_at, revoked_at)
VALUES (:id, :key_hash, :account_id, :name, :prefix, :last4, :created_at, :revoked_at);

-- name: live_key_for_hash
-- The key and its account (none for a platform key), if it works at :now.
SELECT k.id, k.account_id, k.name, k.prefix, k.last4, k.created_at, k.revoked_at,
       a.id, a.name, a.created_at, a.external_id
FROM api_keys k LEFT JOIN accounts a ON a.id = k.account_id
WHERE k.key_hash = :key_hash AND (k.revoked_at IS NULL OR k.revoked_at > :now);

-- name: get_api_key
SELECT id, account_id, name, prefix, last4, created_at, revoked_at FROM api_keys
WHERE id = :id;

-- name: list_api_keys
-- Every key (:account_id NULL), or one account's.
SELECT id, account_id, name, prefix, last4, created_at, revoked_at FROM api_keys
WHERE (:account_id IS NULL OR account_id = :account_id)
  AND (:after IS NULL OR id > :after)
ORDER BY id
LIMIT :limit;

-- name: revoke_api_key
-- Revoking again may bring the time forward (end a rotation's grace period), never back.
UPDATE api_keys SET revoked_at = :at
WHERE id = :id AND (revoked_at IS NULL OR revoked_at > :at);

-- name: insert_endpoint
INSERT INTO endpoints (id, account_id, url, description, all_event_types, config, disabled,
                       is_callback_url, created_at, updated_at)
VALUES (:id, :account_id, :url, :description, :all_event_types, :config, :disabled,
        :is_callback_url, :created_at, :updated_at);

-- name: insert_event_type
INSERT INTO endpoint_event_types (endpoint_id, event_type) VALUES (:endpoint_id, :event_type);

-- name: delete_event_types
DELETE FROM endpoint_event_types WHERE endpoint_id = :endpoint_id;

-- name: insert_secret
INSERT INTO signing_secrets (endpoint_id, secret, created_at, expires_at)
VALUES (:endpoint_id, :secret, :created_at, :expires_at);

-- name: expire_current_secret
UPDATE signing_secrets SET expires_at = :expires_at
WHERE endpoint_id = :endpoint_id AND expires_at IS NULL;

-- name: active_secrets
SELECT secret, created_at, expires_at FROM signing_secrets
WHERE endpoint_id = :endpoint_id AND (expires_at IS NULL OR expires_at > :now)
ORDER BY created_at DESC, rowid DESC;

-- name: endpoint_columns
SELECT id, account_id, url, description, all_event_types, config, disabled, is_callback_url,
       created_at, updated_at,
       (SELECT json_group_array(event_type) FROM endpoint_event_types t
        WHERE t.endpoint_id = endpoints.id) AS event_types
FROM endpoints;

-- name: update_endpoint
UPDATE endpoints SET url = :url, description = :description,
       all_event_types = :all_event_types, config = :config, disabled = :disabled,
       updated_at = :updated_at
WHERE id = :id AND account_id = :account_id AND deleted = 0;

-- name: delete_endpoint
UPDATE endpoints SET deleted = 1, updated_at = :now
WHERE id = :id AND account_id = :account_id AND deleted = 0;

-- name: kill_endpoint_deliveries
-- Each live state through its own partial index (no index has (endpoint_id, state): 0011).
UPDATE deliveries SET state = 'dead', dead_reason = 'endpoint deleted', next_attempt_at = NULL,
       lease_until = NULL, updated_at = :now
WHERE rowid IN (SELECT rowid FROM deliveries WHERE endpoint_id = :endpoint_id AND state = 'pending'
                UNION ALL
                SELECT rowid FROM deliveries
                WHERE endpoint_id = :endpoint_id AND state = 'delivering');

-- name: callback_endpoint
SELECT id FROM endpoints
WHERE account_id = :account_id AND url = :url AND is_callback_url = 1 AND deleted = 0;

-- name: subscribed_endpoints
SELECT e.id FROM endpoints e
WHERE e.account_id = :account_id AND e.disabled = 0 AND e.deleted = 0 AND e.is_callback_url = 0
  AND (e.all_event_types = 1 OR EXISTS (
        SELECT 1 FROM endpoint_event_types t
        WHERE t.event_type = :event_type AND t.endpoint_id = e.id));

-- name: find_idempotency_key
SELECT message_id, created_at, fingerprint FROM idempotency_keys
WHERE account_id = :account_id AND key = :key;

-- name: upsert_idempotency_key
INSERT INTO idempotency_keys (account_id, key, message_id, created_at, fingerprint)
VALUES (:account_id, :key, :message_id, :created_at, :fingerprint)
ON CONFLICT (account_id, key) DO UPDATE SET message_id = excluded.message_id,
                                            created_at = excluded.created_at,
                                            fingerprint = excluded.fingerprint;

-- name: insert_message
INSERT INTO messages (id, account_id, event_type, payload, idempotency_key, created_at)
VALUES (:id, :account_id, :event_type, :payload, :idempotency_key, :created_at);

-- name: insert_messages
-- Every message of an ingest in one statement: :rows is a JSON array of
-- [id, event_type, payload as text, idempotency_key]. One statement is one step, so the writer
-- thread gives up and takes back Python's lock once, not once a row (see _SetRows).
INSERT INTO messages (id, account_id, event_type, payload, idempotency_key, created_at)
SELECT value->>0, :account_id, value->>1, CAST(value->>2 AS BLOB), value->>3, :created_at
FROM json_each(:rows);

-- name: insert_deliveries
-- As insert_messages: [id, message_id, endpoint_id, event_type, ordering_key, state, lease_until].
-- A leased one (the fast path) is :holder's.
INSERT INTO deliveries (id, message_id, account_id, endpoint_id, event_type, state,
                        next_attempt_at, lease_until, created_at, updated_at, ordering_key,
                        lease_holder)
SELECT value->>0, value->>1, :account_id, value->>2, value->>3, value->>5,
       :created_at, value->>6, :created_at, :created_at, value->>4,
       CASE WHEN value->>5 = 'delivering' THEN :holder END
FROM json_each(:rows);

-- name: insert_delivery
-- state 'delivering' with a lease: handed straight to the local dispatcher (the fast path).
INSERT INTO deliveries (id, message_id, account_id, endpoint_id, event_type, state,
                        next_attempt_at, lease_until, created_at, updated_at, ordering_key,
                        lease_holder)
VALUES (:id, :message_id, :account_id, :endpoint_id, :event_type, :state,
        :created_at, :lease_until, :created_at, :created_at, :ordering_key,
        CASE WHEN :state = 'delivering' THEN :holder END);

-- name: get_message
SELECT id, account_id, event_type, payload, idempotency_key, created_at FROM messages
WHERE id = :id AND account_id = :account_id;

-- name: delivery_columns
SELECT id, message_id, account_id, endpoint_id, state, attempt_count, next_attempt_at,
       last_status_code, last_error, dead_reason, created_at, updated_at, event_type
FROM deliveries;

-- name: deliveries_of_message
SELECT id, message_id, account_id, endpoint_id, state, attempt_count, next_attempt_at,
       last_status_code, last_error, dead_reason, created_at, updated_at, event_type
FROM deliveries WHERE message_id = :id ORDER BY id;

-- name: attempts_for_delivery
SELECT a.id, a.delivery_id, a.attempt_number, a.started_at, a.duration_ms, a.outcome,
       a.status_code, a.error, a.response_body
FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
WHERE a.delivery_id = :delivery_id AND d.account_id = :account_id AND a.id > :after
ORDER BY a.id LIMIT :limit;

-- name: claim_ready_endpoints
-- Endpoints with due work that may be sent to now (not disabled, deleted, paused by a 429 or
-- excluded by the dispatcher), oldest due first, with what is in flight for each across the
-- fleet and how many other holders (not :holder) hold it. Reads one row per endpoint, never the
-- deliveries of endpoints it skips. Returned as one JSON row of
-- [endpoint_id, in_flight, other_holders] (one step: see pick_endpoints_due).
SELECT json_group_array(json_array(endpoint_id, in_flight, other_holders))
FROM (
    SELECT w.endpoint_id,
           (SELECT count(*) FROM deliveries x INDEXED BY deliveries_endpoint_in_flight
            WHERE x.endpoint_id = w.endpoint_id AND x.state = 'delivering') AS in_flight,
           (SELECT count(DISTINCT x.lease_holder)
            FROM deliveries x INDEXED BY deliveries_endpoint_in_flight
            WHERE x.endpoint_id = w.endpoint_id AND x.state = 'delivering'
              AND x.lease_holder <> :holder) AS other_holders
    FROM endpoint_work w
    JOIN endpoints e ON e.id = w.endpoint_id AND e.disabled = 0 AND e.deleted = 0
    WHERE w.due_at <= :now
      AND w.endpoint_id NOT IN (SELECT value FROM json_each(:exclude))
      AND NOT EXISTS (SELECT 1 FROM endpoint_pacing p
                      WHERE p.endpoint_id = w.endpoint_id AND p.paused_until > :now)
    ORDER BY w.due_at
    LIMIT :endpoints);

-- name: pick_endpoints_due
-- The oldest due deliveries of each endpoint in :endpoints (a JSON array of ids), at most :room
-- of each, each endpoint's from its own index range (never the rows past its :room), as one
-- JSON array of [id, message_id, account_id, endpoint_id, attempt_count, schedule_base]: one
-- statement for every endpoint of a claim that gets the same room, one step (each step gives
-- up and retakes the GIL: see _set_rows). With 1,000 customers, two statements per endpoint
-- were ~100 µs of the writer per claimed delivery. lease_deliveries then takes the ids the
-- claim keeps; nothing can come between, the writer thread being the only writer.
SELECT json_group_array(json_array(id, message_id, account_id, endpoint_id, attempt_count,
                                   schedule_base))
FROM (
  SELECT d.id, d.message_id, d.account_id, d.endpoint_id, d.attempt_count, d.schedule_base
  FROM json_each(:endpoints) AS r
  JOIN deliveries AS d ON d.rowid IN (
    SELECT x.rowid FROM deliveries AS x
    WHERE x.endpoint_id = r.value AND x.state = 'pending' AND x.next_attempt_at <= :now
      -- Ordered deliveries (one recipient's status reports) wait for the ones before them
      -- to the same endpoint to finish.
      AND (x.ordering_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM deliveries AS earlier
              WHERE earlier.endpoint_id = x.endpoint_id
                AND earlier.ordering_key = x.ordering_key
                AND earlier.id < x.id
                AND earlier.state IN ('pending', 'delivering')))
    ORDER BY x.next_attempt_at
    LIMIT :room)
-- Each endpoint's rows oldest first (the aggregate keeps this order), as the claim takes them.
ORDER BY d.endpoint_id, d.next_attempt_at, d.rowid);

-- name: lease_deliveries
-- :ids, a JSON array of the delivery ids a claim keeps.
UPDATE deliveries SET state = 'delivering', lease_until = :lease_until, updated_at = :now,
                      lease_holder = :holder
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'pending';

-- name: settle_endpoints_work
-- The endpoints in :ids (a JSON array) a claim took less from than it asked for: each is due
-- again at its next pending delivery (or never, until a trigger marks it).
UPDATE endpoint_work SET due_at = coalesce(
    (SELECT min(next_attempt_at) FROM deliveries
     WHERE endpoint_id = endpoint_work.endpoint_id AND state = 'pending'), 9223372036854775807)
WHERE endpoint_id IN (SELECT value FROM json_each(:ids));

-- name: endpoint_loads
-- For the fast path at ingest: version, in-flight count and pacing of the endpoints a batch
-- targets, and how many other holders (not :holder) hold each, as one JSON row of
-- [id, updated_at, in_flight, paced, other_holders] (one step: see _set_rows).
-- INDEXED BY here and in claim_ready_endpoints: left to itself (no statistics) the planner
-- counted through deliveries_by_endpoint, reading every in-flight row of the table for its
-- holder and sorting the holders in a temporary B-tree: ~15 µs per endpoint with 14 in flight
-- against ~5 through the in-flight index, which holds both columns (docs/deployment.md).
SELECT json_group_array(json_array(
       e.id, e.updated_at,
       (SELECT count(*) FROM deliveries x INDEXED BY deliveries_endpoint_in_flight
        WHERE x.endpoint_id = e.id AND x.state = 'delivering'),
       EXISTS (SELECT 1 FROM endpoint_pacing p WHERE p.endpoint_id = e.id
               AND (p.current_rate IS NOT NULL OR p.paused_until > :now)),
       (SELECT count(DISTINCT x.lease_holder)
        FROM deliveries x INDEXED BY deliveries_endpoint_in_flight
        WHERE x.endpoint_id = e.id AND x.state = 'delivering' AND x.lease_holder <> :holder)))
FROM endpoints e
WHERE e.id IN (SELECT value FROM json_each(:ids)) AND e.disabled = 0 AND e.deleted = 0;

-- name: claimed_payloads
-- One row, a JSON array of [id, event_type, payload in hex, created_at]: one step, not one a
-- message (see pick_endpoints_due).
SELECT json_group_array(json_array(m.id, m.event_type, hex(m.payload), m.created_at))
FROM messages m
WHERE m.id IN (SELECT value FROM json_each(:ids));

-- name: claimed_endpoints
-- Version and pacing (in force beyond the endpoint's own configuration) of the endpoints a
-- claim took from, as one JSON row of [id, updated_at, paced].
SELECT json_group_array(json_array(
       e.id, e.updated_at,
       EXISTS (SELECT 1 FROM endpoint_pacing p WHERE p.endpoint_id = e.id
               AND (p.current_rate IS NOT NULL OR p.paused_until > :now))))
FROM endpoints e
WHERE e.id IN (SELECT value FROM json_each(:ids));

-- name: insert_attempt
-- OR IGNORE: a batch retried after an ambiguous failure must not fail on its own earlier write.
INSERT OR IGNORE INTO attempts (id, delivery_id, attempt_number, started_at, duration_ms, outcome,
                      status_code, error, response_body)
VALUES (:id, :delivery_id, :attempt_number, :started_at, :duration_ms, :outcome,
        :status_code, :error, :response_body);

-- name: insert_attempts
-- As insert_attempt, every attempt of a record in one statement: :rows is a JSON array of
-- [id, delivery_id, attempt_number, started_at, duration_ms, outcome, status_code, error,
-- response_body].
INSERT OR IGNORE INTO attempts (id, delivery_id, attempt_number, started_at, duration_ms, outcome,
                      status_code, error, response_body)
SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7,
       value->>8
FROM json_each(:rows);

-- name: settle_deliveries
-- As settle_delivery, in one statement: :rows is a JSON array of [delivery_id, state,
-- attempt_number, next_attempt_at, status_code, error, dead_reason, now], one per delivery.
UPDATE deliveries SET state = r.value->>1, attempt_count = r.value->>2,
       next_attempt_at = r.value->>3, lease_until = NULL,
       last_status_code = r.value->>4, last_error = r.value->>5, dead_reason = r.value->>6,
       updated_at = r.value->>7
FROM json_each(:rows) AS r
WHERE deliveries.id = r.value->>0 AND deliveries.state = 'delivering';

-- name: settle_delivery
-- Only a delivery still in flight is settled: one deleted or replayed meanwhile keeps its state.
UPDATE deliveries SET state = :state, attempt_count = :attempt_number,
       next_attempt_at = :next_attempt_at, lease_until = NULL,
       last_status_code = :status_code, last_error = :error, dead_reason = :dead_reason,
       updated_at = :now
WHERE id = :delivery_id AND state = 'delivering';

-- name: release
UPDATE deliveries SET state = 'pending', lease_until = NULL, next_attempt_at = :due_at,
       updated_at = :due_at
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'delivering';

-- name: expire_leases
UPDATE deliveries SET state = 'pending', lease_until = NULL, updated_at = :now
WHERE state = 'delivering' AND lease_until <= :now;

-- name: renew_leases
-- A live worker keeps what it holds; only rows still leased (a settled one stays settled).
UPDATE deliveries SET lease_until = max(lease_until, :lease_until)
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'delivering';

-- name: next_due_at
-- When the next claim could find something, ignoring endpoints the dispatcher excludes.
SELECT min(max(w.due_at, coalesce(p.paused_until, 0))) FROM endpoint_work w
JOIN endpoints e ON e.id = w.endpoint_id AND e.disabled = 0 AND e.deleted = 0
LEFT JOIN endpoint_pacing p ON p.endpoint_id = w.endpoint_id
WHERE w.endpoint_id NOT IN (SELECT value FROM json_each(:exclude));

-- name: replay
UPDATE deliveries SET state = 'pending', next_attempt_at = :now, dead_reason = NULL,
       schedule_base = attempt_count, updated_at = :now
WHERE account_id = :account_id AND state = 'dead'
  AND (:delivery_id IS NULL OR id = :delivery_id)
  AND (:endpoint_id IS NULL OR endpoint_id = :endpoint_id)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND endpoint_id IN (SELECT id FROM endpoints WHERE account_id = :account_id AND deleted = 0)
RETURNING id;

-- name: count_by_state
SELECT state, count(*) FROM deliveries
WHERE (:account_id IS NULL OR account_id = :account_id) GROUP BY state;

-- name: ensure_pacing
INSERT INTO endpoint_pacing (endpoint_id) VALUES (:endpoint_id) ON CONFLICT DO NOTHING;

-- name: get_pacing
SELECT current_rate, ceiling, paused_until, next_slot, last_change FROM endpoint_pacing
WHERE endpoint_id = :endpoint_id;

-- name: set_pacing
UPDATE endpoint_pacing SET current_rate = :current_rate, ceiling = :ceiling,
       paused_until = :paused_until, next_slot = :next_slot, last_change = :last_change
WHERE endpoint_id = :endpoint_id;

-- name: purge_messages
-- Messages older than the retention whose deliveries are all finished; ids are time-ordered,
-- so the primary key index finds the old ones without a scan.
-- The newest delivery's message is kept: if the newest rows went, SQLite would give the next
-- insert a rowid already below endpoint_deliveries_upto (0011), and it would be listed late.
SELECT m.id FROM messages m
WHERE m.id < :before_id
  AND NOT EXISTS (SELECT 1 FROM deliveries d
                  WHERE d.message_id = m.id AND d.state IN ('pending', 'delivering'))
  AND m.id <> coalesce((SELECT message_id FROM deliveries ORDER BY rowid DESC LIMIT 1), '')
LIMIT :limit;

-- name: purge_attempts
DELETE FROM attempts WHERE delivery_id IN (
    SELECT id FROM deliveries WHERE message_id IN (SELECT value FROM json_each(:ids)));

-- name: purge_endpoint_deliveries
DELETE FROM endpoint_deliveries WHERE (endpoint_id, delivery_id) IN (
    SELECT endpoint_id, id FROM deliveries
    WHERE message_id IN (SELECT value FROM json_each(:ids)));

-- name: purge_deliveries
DELETE FROM deliveries WHERE message_id IN (SELECT value FROM json_each(:ids));

-- name: purge_message_rows
DELETE FROM messages WHERE id IN (SELECT value FROM json_each(:ids));

-- name: purge_idempotency_keys
DELETE FROM idempotency_keys WHERE created_at < :before;

-- name: insert_event_type_definition
INSERT INTO event_types (account_id, name, description, schema, created_at)
VALUES (:account_id, :name, :description, :schema, :created_at)
ON CONFLICT (account_id, name) DO NOTHING;

-- name: event_type_definitions
SELECT name, description, schema, created_at FROM event_types
WHERE account_id = :account_id ORDER BY name;

-- name: event_type_definition
SELECT name, description, schema, created_at FROM event_types
WHERE account_id = :account_id AND name = :name;

-- name: insert_batch
INSERT INTO batches (account_id, batch_id, mode, kind, client_reference, callback_url,
                     expected_recipients, report_deadline, report_state, created_at)
VALUES (:account_id, :batch_id, :mode, :kind, :client_reference, :callback_url,
        :expected_recipients, :report_deadline, :report_state, :created_at)
ON CONFLICT (account_id, batch_id) DO NOTHING;

-- name: get_batch
SELECT batch_id, mode, kind, client_reference, callback_url, expected_recipients,
       report_deadline, report_state, created_at
FROM batches WHERE account_id = :account_id AND batch_id = :batch_id;

-- name: add_batch_recipient
INSERT INTO batch_recipients (account_id, batch_id, recipient)
VALUES (:account_id, :batch_id, :recipient)
ON CONFLICT (account_id, batch_id, recipient) DO NOTHING;

-- name: set_recipient_status
INSERT INTO batch_recipients (account_id, batch_id, recipient, status, code)
VALUES (:account_id, :batch_id, :recipient, :status, :code)
ON CONFLICT (account_id, batch_id, recipient) DO UPDATE
    SET status = excluded.status, code = excluded.code;

-- name: batch_recipient_statuses
SELECT recipient, status, code FROM batch_recipients
WHERE account_id = :account_id AND batch_id = :batch_id;

-- name: mark_batch_reported
UPDATE batches SET report_state = 'sent'
WHERE account_id = :account_id AND batch_id = :batch_id AND report_state = 'waiting';

-- name: due_batch_reports
SELECT account_id, batch_id FROM batches
WHERE report_state = 'waiting' AND report_deadline <= :now
ORDER BY report_deadline LIMIT :limit;

-- name: purge_batch_recipients
DELETE FROM batch_recipients
WHERE (account_id, batch_id) IN (SELECT account_id, batch_id FROM batches
                                 WHERE created_at < :before AND report_state <> 'waiting');

-- name: purge_batches
DELETE FROM batches WHERE created_at < :before AND report_state <> 'waiting';

-- The operator dashboard and the customer portal (postback/ui) ----------------------------

-- name: account_activity
-- Accounts with the most work waiting or dead first: backlog, oldest pending delivery, dead
-- letters, and attempts since :since_id (attempt ids are time-ordered, so the primary key
-- finds the window without scanning older attempts).
SELECT a.id, a.name, coalesce(s.backlog, 0), s.oldest_pending_at, coalesce(s.dead, 0),
       coalesce(t.delivered, 0), coalesce(t.failed, 0)
FROM accounts a
LEFT JOIN (SELECT account_id,
                  sum(state IN ('pending', 'delivering')) AS backlog,
                  min(CASE WHEN state = 'pending' THEN created_at END) AS oldest_pending_at,
                  sum(state = 'dead') AS dead
           FROM deliveries
           WHERE :account_id IS NULL OR account_id = :account_id
           GROUP BY account_id) AS s ON s.account_id = a.id
LEFT JOIN (SELECT d.account_id,
                  sum(x.outcome = 'delivered') AS delivered,
                  sum(x.outcome <> 'delivered') AS failed
           FROM attempts x JOIN deliveries d ON d.id = x.delivery_id
           WHERE x.id >= :since_id
           GROUP BY d.account_id) AS t ON t.account_id = a.id
WHERE :account_id IS NULL OR a.id = :account_id
ORDER BY coalesce(s.backlog, 0) + coalesce(s.dead, 0) DESC, a.id
LIMIT :limit;

-- name: endpoint_health
-- Live endpoints, the most failing first: attempts and failures since :since_id, the last
-- attempt's status, backlog, and 429 pacing (a lowered rate or a Retry-After pause).
SELECT e.id, e.account_id, e.url, e.disabled, coalesce(t.attempts, 0), coalesce(t.failures, 0),
       (SELECT status_code FROM attempts WHERE id = t.last_id), coalesce(b.backlog, 0),
       p.current_rate, CASE WHEN p.paused_until > :now THEN p.paused_until END
FROM endpoints e
LEFT JOIN (SELECT d.endpoint_id, count(*) AS attempts,
                  sum(x.outcome <> 'delivered') AS failures, max(x.id) AS last_id
           FROM attempts x JOIN deliveries d ON d.id = x.delivery_id
           WHERE x.id >= :since_id
           GROUP BY d.endpoint_id) AS t ON t.endpoint_id = e.id
LEFT JOIN (SELECT endpoint_id, count(*) AS backlog
           FROM (SELECT endpoint_id FROM deliveries WHERE state = 'pending'
                 UNION ALL
                 SELECT endpoint_id FROM deliveries WHERE state = 'delivering')
           GROUP BY endpoint_id) AS b ON b.endpoint_id = e.id
LEFT JOIN endpoint_pacing p ON p.endpoint_id = e.id
WHERE e.deleted = 0 AND (:account_id IS NULL OR e.account_id = :account_id)
ORDER BY coalesce(t.failures, 0) DESC, e.disabled DESC, coalesce(b.backlog, 0) DESC, e.id
LIMIT :limit;

-- name: dead_letters
-- Dead deliveries of every account (or one), newest first; :before is the previous page's
-- last id (NULL: the first page).
SELECT id, message_id, account_id, endpoint_id, state, attempt_count, next_attempt_at,
       last_status_code, last_error, dead_reason, created_at, updated_at, event_type
FROM deliveries
WHERE state = 'dead' AND (:before IS NULL OR id < :before) AND (:account_id IS NULL OR account_id = :account_id)
ORDER BY id DESC
LIMIT :limit;

-- name: endpoint_activity
-- Attempts to one endpoint per time bucket since :since_id, for the plots.
-- The endpoint's deliveries from endpoint_deliveries, and the newest from the table itself.
SELECT x.started_at / :bucket_ms AS bucket, count(*), sum(x.outcome <> 'delivered')
FROM (SELECT delivery_id AS id FROM endpoint_deliveries WHERE endpoint_id = :endpoint_id
      UNION ALL
      SELECT id FROM deliveries NOT INDEXED
      WHERE rowid > (SELECT upto FROM endpoint_deliveries_upto) AND endpoint_id = :endpoint_id) d
CROSS JOIN attempts x ON x.delivery_id = d.id AND x.id >= :since_id
GROUP BY bucket
ORDER BY bucket;

-- name: delivery_by_idempotency_key
-- A condition of the delivery listing (rows.delivery_filter adds it): the message an
-- idempotency key named, found through the keys table's primary key while the key is kept.
message_id IN (SELECT message_id FROM idempotency_keys
               WHERE account_id = :account_id AND key = :idempotency_key);

-- name: migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations
    (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);

-- name: migrations_table_exists
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations';

-- name: migrations_applied
SELECT version FROM schema_migrations;

-- name: migration_applied
INSERT INTO schema_migrations (version, applied_at) VALUES (:version, :applied_at);

-- name: endpoint_by_id
-- Appended to endpoint_columns.
WHERE id = :id AND deleted = 0 AND (:account_id IS NULL OR account_id = :account_id);

-- name: endpoints_page
-- Appended to endpoint_columns.
WHERE account_id = :account_id AND deleted = 0 AND id > :after ORDER BY id LIMIT :limit;

-- name: delivery_by_id
-- Appended to delivery_columns.
WHERE id = :id AND account_id = :account_id;

-- name: endpoint_owner
SELECT 1 FROM endpoints WHERE id = :id AND account_id = :account_id AND deleted = 0;

-- name: bump_endpoint_version
UPDATE endpoints SET updated_at = max(updated_at + 1, :now) WHERE id = :id;

-- name: live_totals
-- The operator's live counters, cheap enough to poll: work waiting and in flight (the partial
-- indexes of pending and delivering rows), and attempts since :since_id (the primary key range).
SELECT (SELECT count(*) FROM deliveries WHERE state = 'pending'),
       (SELECT count(*) FROM deliveries WHERE state = 'delivering'),
       (SELECT count(*) FROM attempts WHERE id >= :since_id AND outcome = 'delivered'),
       (SELECT count(*) FROM attempts WHERE id >= :since_id AND outcome <> 'delivered');

-- Operations: backlog gauges, endpoint health, auto-disable, readiness (0006_endpoint_health).

-- name: backlog
-- Each count walks a partial index (pending, delivering, dead), never the delivered rows.
SELECT (SELECT count(*) FROM deliveries WHERE state = 'pending'),
       (SELECT count(*) FROM deliveries WHERE state = 'pending' AND next_attempt_at <= :now),
       (SELECT count(*) FROM deliveries WHERE state = 'delivering'),
       (SELECT count(*) FROM deliveries WHERE state = 'dead'),
       (SELECT min(created_at) FROM deliveries WHERE state = 'pending'),
       (SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending');

-- name: busiest_endpoints
SELECT endpoint_id, count(*), sum(CASE WHEN next_attempt_at <= :now THEN 1 ELSE 0 END),
       min(created_at)
FROM deliveries WHERE state = 'pending'
GROUP BY endpoint_id ORDER BY count(*) DESC, endpoint_id LIMIT :limit;

-- name: failing_endpoints
SELECT endpoint_id, consecutive_failures FROM endpoint_health
WHERE consecutive_failures > 0
ORDER BY consecutive_failures DESC, endpoint_id LIMIT :limit;

-- name: endpoint_backlog
-- Each state through its own partial index, as kill_endpoint_deliveries.
SELECT endpoint_id, state, count(*),
       sum(CASE WHEN next_attempt_at <= :now THEN 1 ELSE 0 END), min(created_at),
       min(next_attempt_at)
FROM (SELECT endpoint_id, state, next_attempt_at, created_at FROM deliveries
      WHERE endpoint_id IN (SELECT value FROM json_each(:ids)) AND state = 'pending'
      UNION ALL
      SELECT endpoint_id, state, next_attempt_at, created_at FROM deliveries
      WHERE endpoint_id IN (SELECT value FROM json_each(:ids)) AND state = 'delivering'
      UNION ALL
      SELECT endpoint_id, state, next_attempt_at, created_at FROM deliveries
      WHERE endpoint_id IN (SELECT value FROM json_each(:ids)) AND state = 'dead')
GROUP BY endpoint_id, state;

-- name: ensure_health
INSERT OR IGNORE INTO endpoint_health (endpoint_id) SELECT value FROM json_each(:ids);

-- name: health_rows
SELECT endpoint_id, window_start, successes, failures, prev_successes, prev_failures, latency,
       prev_latency, consecutive_failures, consecutive_dead, failing_since, last_success_at,
       last_failure_at, failing_announced, disabled_reason, disabled_at, updated_at
FROM endpoint_health WHERE endpoint_id IN (SELECT value FROM json_each(:ids))
ORDER BY endpoint_id;

-- name: health_rows_json
-- As health_rows, as one JSON row: one step for any number of endpoints (the writer thread
-- waits for Python's lock once, not once a row; see _set_rows in sqlite.py).
SELECT json_group_array(json_array(
       endpoint_id, window_start, successes, failures, prev_successes, prev_failures, latency,
       prev_latency, consecutive_failures, consecutive_dead, failing_since, last_success_at,
       last_failure_at, failing_announced, disabled_reason, disabled_at, updated_at))
FROM (SELECT * FROM endpoint_health WHERE endpoint_id IN (SELECT value FROM json_each(:ids))
      ORDER BY endpoint_id);

-- name: set_health_rows
-- As set_health, every changed endpoint in one statement: :rows is a JSON array of rows in
-- the column order of health_rows (latency and prev_latency as their JSON text).
UPDATE endpoint_health SET window_start = r.value->>1, successes = r.value->>2,
       failures = r.value->>3, prev_successes = r.value->>4, prev_failures = r.value->>5,
       latency = r.value->>6, prev_latency = r.value->>7,
       consecutive_failures = r.value->>8, consecutive_dead = r.value->>9,
       failing_since = r.value->>10, last_success_at = r.value->>11,
       last_failure_at = r.value->>12, failing_announced = r.value->>13,
       disabled_reason = r.value->>14, disabled_at = r.value->>15, updated_at = r.value->>16
FROM json_each(:rows) AS r
WHERE endpoint_health.endpoint_id = r.value->>0;

-- name: set_health
UPDATE endpoint_health SET window_start = :window_start, successes = :successes,
       failures = :failures, prev_successes = :prev_successes, prev_failures = :prev_failures,
       latency = :latency, prev_latency = :prev_latency,
       consecutive_failures = :consecutive_failures, consecutive_dead = :consecutive_dead,
       failing_since = :failing_since, last_success_at = :last_success_at,
       last_failure_at = :last_failure_at, failing_announced = :failing_announced,
       disabled_reason = :disabled_reason, disabled_at = :disabled_at, updated_at = :updated_at
WHERE endpoint_id = :endpoint_id;

-- name: disable_endpoint
-- Only the call that flips it reports it (so one process announces a disable).
UPDATE endpoints SET disabled = 1, updated_at = :now
WHERE id = :endpoint_id AND disabled = 0 AND deleted = 0
RETURNING account_id;

-- name: hold_endpoint_deliveries
-- A disabled endpoint's waiting deliveries become dead (kept until retention, replayable).
UPDATE deliveries SET state = 'dead', dead_reason = :reason, next_attempt_at = NULL,
       updated_at = :now
WHERE endpoint_id = :endpoint_id AND state = 'pending';

-- name: account_disable_after
SELECT disable_after_s FROM accounts WHERE id = :account_id;

-- name: set_account_disable_after
UPDATE accounts SET disable_after_s = :disable_after_s WHERE id = :account_id;

-- name: probe_readiness
UPDATE readiness_probe SET probed_at = :now WHERE id = 1;

-- name: replay_dead_since
-- Re-enabling with replay: what died (or was held) since the failure streak began.
UPDATE deliveries SET state = 'pending', next_attempt_at = :now, dead_reason = NULL,
       schedule_base = attempt_count, updated_at = :now
WHERE endpoint_id = :endpoint_id AND state = 'dead' AND updated_at >= :dead_since
RETURNING id;

-- name: endpoint_deliveries_upto
-- Up to which rowid endpoint_deliveries lists, whether that rowid still holds the delivery it
-- held then, and the newest rowid and delivery now.
SELECT u.upto, u.upto_id IS (SELECT id FROM deliveries WHERE rowid = u.upto), n.rowid, n.id
FROM endpoint_deliveries_upto u
LEFT JOIN (SELECT rowid, id FROM deliveries ORDER BY rowid DESC LIMIT 1) n;

-- name: list_new_deliveries
-- Sorted as the primary key, so the inserts walk each endpoint's pages once, in order.
INSERT OR IGNORE INTO endpoint_deliveries (endpoint_id, delivery_id)
SELECT endpoint_id, id FROM deliveries WHERE rowid > :after AND rowid <= :upto
ORDER BY endpoint_id, id;

-- name: set_endpoint_deliveries_upto
UPDATE endpoint_deliveries_upto SET upto = :upto, upto_id = :upto_id;

-- name: endpoint_delivery_columns
-- The delivery listing by endpoint (sqlite.py adds the filters): what endpoint_deliveries
-- lists, newest first from its primary key, and what came since from the table itself (NOT
-- INDEXED: a range of rowids, never the account's index, which the planner would pick).
SELECT * FROM (
    SELECT d.id, d.message_id, d.account_id, d.endpoint_id, d.state, d.attempt_count,
           d.next_attempt_at, d.last_status_code, d.last_error, d.dead_reason, d.created_at,
           d.updated_at, d.event_type
    FROM endpoint_deliveries h CROSS JOIN deliveries d ON d.id = h.delivery_id
    WHERE h.endpoint_id = :endpoint_id AND {listed}
    ORDER BY h.delivery_id DESC LIMIT :limit)
UNION ALL
SELECT * FROM (
    SELECT id, message_id, account_id, endpoint_id, state, attempt_count, next_attempt_at,
           last_status_code, last_error, dead_reason, created_at, updated_at, event_type
    FROM deliveries d NOT INDEXED
    WHERE rowid > (SELECT upto FROM endpoint_deliveries_upto) AND endpoint_id = :endpoint_id
      AND {since})
ORDER BY 1 DESC LIMIT :limit;
