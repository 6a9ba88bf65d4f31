-- Named queries for the PostgreSQL adapter. Each starts with a "-- name: NAME" line.
-- Parameters are written :name and bound positionally by the adapter.

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
WHERE (:after::text IS NULL OR id > :after)
  AND (:q::text IS NULL
       OR strpos(lower(name), :q) > 0
       OR strpos(lower(coalesce(external_id, '')), :q) > 0)
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
WHERE (:account_id::text IS NULL OR account_id = :account_id)
  AND (:after::text IS NULL OR id > :after)
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

-- name: delete_event_types
DELETE FROM endpoint_event_types WHERE endpoint_id = :endpoint_id;

-- name: insert_event_types
-- (Not one statement with the delete above: a data-modifying WITH runs on one snapshot, so
-- re-inserting a kept type would collide with its own not-yet-deleted row.)
INSERT INTO endpoint_event_types (endpoint_id, event_type)
SELECT :endpoint_id, t FROM unnest(:event_types::text[]) AS t;

-- name: insert_secret
INSERT INTO signing_secrets (endpoint_id, secret, created_at, expires_at)
VALUES (:endpoint_id, :secret, :created_at, :expires_at);

-- name: expire_current_secret
UPDATE signing_secrets SET expires_at = :expires_at
WHERE endpoint_id = :endpoint_id AND expires_at IS NULL;

-- name: active_secrets
SELECT secret, created_at, expires_at FROM signing_secrets
WHERE endpoint_id = :endpoint_id AND (expires_at IS NULL OR expires_at > :now)
ORDER BY created_at DESC, id DESC;

-- name: endpoint_columns
SELECT id, account_id, url, description, all_event_types, config, disabled, is_callback_url,
       created_at, updated_at,
       (SELECT coalesce(json_agg(event_type), '[]')::text FROM endpoint_event_types t
        WHERE t.endpoint_id = endpoints.id) AS event_types
FROM endpoints;

-- name: update_endpoint
UPDATE endpoints SET url = :url, description = :description,
       all_event_types = :all_event_types, config = :config, disabled = :disabled,
       updated_at = :updated_at
WHERE id = :id AND account_id = :account_id AND NOT deleted;

-- name: delete_endpoint
UPDATE endpoints SET deleted = true, updated_at = :now
WHERE id = :id AND account_id = :account_id AND NOT deleted;

-- name: kill_endpoint_deliveries
UPDATE deliveries SET state = 'dead', dead_reason = 'endpoint deleted', next_attempt_at = NULL,
       lease_until = NULL, updated_at = :now
WHERE endpoint_id = :endpoint_id AND state IN ('pending', 'delivering');

-- name: callback_endpoint
SELECT id FROM endpoints
WHERE account_id = :account_id AND url = :url AND is_callback_url AND NOT deleted;

-- name: insert_callback_endpoint
INSERT INTO endpoints (id, account_id, url, description, all_event_types, config, disabled,
                       is_callback_url, created_at, updated_at)
VALUES (:id, :account_id, :url, :description, :all_event_types, :config, :disabled,
        :is_callback_url, :created_at, :updated_at)
ON CONFLICT (account_id, url) WHERE is_callback_url AND NOT deleted DO NOTHING
RETURNING id;

-- name: endpoint_owner
SELECT 1 FROM endpoints WHERE id = :id AND account_id = :account_id AND NOT deleted
FOR UPDATE;

-- name: bump_endpoint_version
UPDATE endpoints SET updated_at = greatest(updated_at + 1, :now) WHERE id = :id;

-- name: subscribed_endpoints
-- The endpoints subscribed to each of a batch's event types, in one round trip.
SELECT t.event_type, e.id
FROM unnest(:event_types::text[]) AS t(event_type)
JOIN endpoints e ON e.account_id = :account_id
WHERE NOT e.disabled AND NOT e.deleted AND NOT e.is_callback_url
  AND (e.all_event_types OR EXISTS (
        SELECT 1 FROM endpoint_event_types x
        WHERE x.event_type = t.event_type AND x.endpoint_id = e.id))
ORDER BY t.event_type, e.id;

-- name: claim_idempotency_key
-- Insert the key, or take over one older than the window; no row back means a live duplicate.
-- Concurrent submitters of one key serialize on the primary key, so exactly one wins.
INSERT INTO idempotency_keys (account_id, key, message_id, created_at, fingerprint)
VALUES (:account_id, :key, :message_id, :now, :fingerprint)
ON CONFLICT (account_id, key) DO UPDATE
    SET message_id = excluded.message_id, created_at = excluded.created_at,
        fingerprint = excluded.fingerprint
    WHERE idempotency_keys.created_at <= :expired_before
RETURNING message_id;

-- name: find_idempotency_key
SELECT message_id, fingerprint FROM idempotency_keys WHERE account_id = :account_id AND key = :key;

-- name: insert_messages_and_deliveries
-- A batch's messages, their deliveries and the wake-up of idle dispatchers in one statement:
-- one round trip where there were three, and the endpoints' advisory locks taken by
-- endpoint_loads are held for this one statement and the COMMIT, not for three round trips
-- to an event loop busy sending. A delivery in state 'delivering' with a lease is handed
-- straight to the local dispatcher (the fast path), whose holder id is :holder. The foreign
-- key from a delivery to its message is checked at the end of the statement, when both are in.
WITH new_messages AS (
    INSERT INTO messages (id, account_id, event_type, payload, idempotency_key, created_at)
    SELECT id, :account_id, event_type, payload, key, :now
    FROM unnest(:message_rows::text[], :message_event_types::text[], :payloads::bytea[],
                :keys::text[])
         AS m(id, event_type, payload, key)
), new_deliveries AS (
    INSERT INTO deliveries (id, message_id, account_id, endpoint_id, event_type, state,
                            next_attempt_at, lease_until, created_at, updated_at, ordering_key,
                            lease_holder)
    SELECT id, message_id, :account_id, endpoint_id, event_type, state, :now, lease_until, :now,
           :now, ordering_key, CASE WHEN state = 'delivering' THEN :holder::text END
    FROM unnest(:ids::text[], :message_ids::text[], :endpoint_ids::text[], :event_types::text[],
                :ordering_keys::text[], :states::text[], :lease_untils::bigint[])
         AS d(id, message_id, endpoint_id, event_type, ordering_key, state, lease_until)
    RETURNING state
)
SELECT pg_notify('postback_work', '')
WHERE EXISTS (SELECT 1 FROM new_deliveries WHERE state = 'pending');

-- name: notify_work
SELECT pg_notify('postback_work', '');

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

-- name: claim
-- One call, one round trip, one transaction: the function (migration 0012) takes the ready
-- endpoints' advisory locks, works out each one's room across the fleet, leases their oldest
-- due deliveries and settles the endpoints that gave less than their room.
SELECT * FROM postback_claim(:now, :lease_until, :limit, :endpoints, :holder::text, :share,
                             :exclude::text[], :room_ids::text[], :rooms::int[],
                             :own_ids::text[], :owns::int[], :sendings::int[], :reserve_ids::text[],
                             :reserves::int[], :default_reserve);

-- name: endpoint_loads
-- For the fast path at ingest: in-flight count and pacing of the endpoints a batch targets;
-- an endpoint another transaction is claiming (advisory lock taken) counts as paced. Also how
-- many other holders (not :holder) hold each.
SELECT e.id, e.updated_at,
       (SELECT count(*) FROM deliveries x WHERE x.endpoint_id = e.id AND x.state = 'delivering'),
       EXISTS (SELECT 1 FROM endpoint_pacing p WHERE p.endpoint_id = e.id
               AND (p.current_rate IS NOT NULL OR p.paused_until > :now))
       OR NOT pg_try_advisory_xact_lock(7460, hashtext(e.id)),
       (SELECT count(DISTINCT x.lease_holder) FROM deliveries x
        WHERE x.endpoint_id = e.id AND x.state = 'delivering' AND x.lease_holder <> :holder::text)
FROM endpoints e
WHERE e.id = ANY(:ids::text[]) AND NOT e.disabled AND NOT e.deleted
ORDER BY e.id;

-- name: record_attempts
-- The attempts and their deliveries' new states in one statement: atomic without an explicit
-- transaction, so recording is one round trip instead of four (BEGIN, two statements, COMMIT)
-- and no row stays locked while this process's busy event loop gets round to the next one.
WITH recorded AS (
    INSERT INTO attempts (id, delivery_id, attempt_number, started_at, duration_ms, outcome,
                          status_code, error, response_body)
    SELECT * FROM unnest(:ids::text[], :delivery_ids::text[], :attempt_numbers::int[],
                         :started_ats::bigint[], :durations::float8[], :outcomes::text[],
                         :status_codes::int[], :errors::text[], :bodies::text[])
    -- A batch retried after an ambiguous failure (connection lost at COMMIT) is written once.
    ON CONFLICT (id) DO NOTHING
)
-- Only deliveries still in flight are settled: one deleted or replayed meanwhile keeps its state.
UPDATE deliveries d SET state = s.state, attempt_count = s.attempt_number,
       next_attempt_at = s.next_attempt_at, lease_until = NULL,
       last_status_code = s.status_code, last_error = s.error, dead_reason = s.dead_reason,
       updated_at = s.now
FROM unnest(:delivery_ids::text[], :states::text[], :attempt_numbers::int[],
            :next_attempt_ats::bigint[], :status_codes::int[], :errors::text[],
            :dead_reasons::text[], :nows::bigint[])
     AS s(delivery_id, state, attempt_number, next_attempt_at, status_code, error, dead_reason, now)
WHERE d.id = s.delivery_id AND d.state = 'delivering';

-- name: release
UPDATE deliveries SET state = 'pending', lease_until = NULL, next_attempt_at = :due_at,
       updated_at = :due_at
WHERE id = ANY(:ids::text[]) AND state = 'delivering';

-- name: expire_leases
UPDATE deliveries SET state = 'pending', lease_until = NULL, updated_at = :now
WHERE state = 'delivering' AND lease_until <= :now;

-- name: renew_leases
-- A live worker keeps what it holds; only rows still leased (a settled one stays settled).
UPDATE deliveries SET lease_until = greatest(lease_until, :lease_until)
WHERE id = ANY(:ids::text[]) AND state = 'delivering';

-- name: next_due_at
-- When the next claim could find something, ignoring endpoints the dispatcher excludes.
SELECT min(greatest(w.due_at, coalesce(p.paused_until, 0))) FROM endpoint_work w
JOIN endpoints e ON e.id = w.endpoint_id AND NOT e.disabled AND NOT e.deleted
LEFT JOIN endpoint_pacing p ON p.endpoint_id = w.endpoint_id
WHERE NOT (w.endpoint_id = ANY(:exclude::text[]));

-- name: replay
UPDATE deliveries SET state = 'pending', next_attempt_at = :now, dead_reason = NULL,
       schedule_base = attempt_count, updated_at = :now
WHERE account_id = :account_id AND state = 'dead'
  AND (:delivery_id::text IS NULL OR id = :delivery_id::text)
  AND (:endpoint_id::text IS NULL OR endpoint_id = :endpoint_id::text)
  AND (:since::bigint IS NULL OR created_at >= :since::bigint)
  AND (:until::bigint IS NULL OR created_at < :until::bigint)
  AND endpoint_id IN (SELECT id FROM endpoints WHERE account_id = :account_id AND NOT deleted)
RETURNING id;

-- name: count_by_state
SELECT state, count(*) FROM deliveries
WHERE (:account_id::text IS NULL OR account_id = :account_id::text) GROUP BY state;

-- name: ensure_pacing
INSERT INTO endpoint_pacing (endpoint_id) VALUES (:endpoint_id) ON CONFLICT DO NOTHING;

-- name: get_pacing
SELECT current_rate, ceiling, paused_until, next_slot, last_change FROM endpoint_pacing
WHERE endpoint_id = :endpoint_id FOR UPDATE;

-- name: set_pacing
UPDATE endpoint_pacing SET current_rate = :current_rate, ceiling = :ceiling,
       paused_until = :paused_until, next_slot = :next_slot, last_change = :last_change
WHERE endpoint_id = :endpoint_id;

-- name: purge_messages
-- Messages older than the retention whose deliveries are all finished; ids are time-ordered,
-- so the primary key index finds the old ones. SKIP LOCKED: sweepers on several nodes split
-- the work instead of queueing behind each other.
SELECT m.id FROM messages m
WHERE m.id < :before_id
  AND NOT EXISTS (SELECT 1 FROM deliveries d
                  WHERE d.message_id = m.id AND d.state IN ('pending', 'delivering'))
LIMIT :limit
FOR UPDATE SKIP LOCKED;

-- name: purge_attempts
DELETE FROM attempts WHERE delivery_id IN (
    SELECT id FROM deliveries WHERE message_id = ANY(:ids::text[]));

-- name: purge_deliveries
DELETE FROM deliveries WHERE message_id = ANY(:ids::text[]);

-- name: purge_message_rows
DELETE FROM messages WHERE id = ANY(:ids::text[]);

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
                  count(*) FILTER (WHERE state IN ('pending', 'delivering')) AS backlog,
                  min(created_at) FILTER (WHERE state = 'pending') AS oldest_pending_at,
                  count(*) FILTER (WHERE state = 'dead') AS dead
           FROM deliveries
           WHERE :account_id::text IS NULL OR account_id = :account_id::text
           GROUP BY account_id) AS s ON s.account_id = a.id
LEFT JOIN (SELECT d.account_id,
                  count(*) FILTER (WHERE x.outcome = 'delivered') AS delivered,
                  count(*) FILTER (WHERE x.outcome <> 'delivered') AS failed
           FROM attempts x JOIN deliveries d ON d.id = x.delivery_id
           WHERE x.id >= :since_id
           GROUP BY d.account_id) AS t ON t.account_id = a.id
WHERE :account_id::text IS NULL OR a.id = :account_id::text
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
                  count(*) FILTER (WHERE x.outcome <> 'delivered') AS failures,
                  max(x.id) AS last_id
           FROM attempts x JOIN deliveries d ON d.id = x.delivery_id
           WHERE x.id >= :since_id
           GROUP BY d.endpoint_id) AS t ON t.endpoint_id = e.id
LEFT JOIN (SELECT endpoint_id, count(*) AS backlog FROM deliveries
           WHERE state IN ('pending', 'delivering')
           GROUP BY endpoint_id) AS b ON b.endpoint_id = e.id
LEFT JOIN endpoint_pacing p ON p.endpoint_id = e.id
WHERE NOT e.deleted AND (:account_id::text IS NULL OR e.account_id = :account_id::text)
ORDER BY coalesce(t.failures, 0) DESC, e.disabled DESC, coalesce(b.backlog, 0) DESC, e.id
LIMIT :limit;

-- name: dead_letters
-- Dead deliveries of every account (or one), newest first; :before is the previous page's
-- last id (NULL: the first page).
SELECT id, message_id, account_id, endpoint_id, state, attempt_count, next_attempt_at,
       last_status_code, last_error, dead_reason, created_at, updated_at, event_type
FROM deliveries
WHERE state = 'dead' AND (:before::text IS NULL OR id < :before::text)
  AND (:account_id::text IS NULL OR account_id = :account_id::text)
ORDER BY id DESC
LIMIT :limit;

-- name: endpoint_activity
-- Attempts to one endpoint per time bucket since :since_id, for the plots.
SELECT x.started_at / :bucket_ms::bigint AS bucket, count(*),
       count(*) FILTER (WHERE x.outcome <> 'delivered')
FROM attempts x JOIN deliveries d ON d.id = x.delivery_id
WHERE d.endpoint_id = :endpoint_id AND x.id >= :since_id
GROUP BY bucket
ORDER BY bucket;

-- name: delivery_by_idempotency_key
-- A condition of the delivery listing (rows.delivery_filter adds it): the message an
-- idempotency key named, found through the keys table's primary key while the key is kept.
message_id IN (SELECT message_id FROM idempotency_keys
               WHERE account_id = :account_id AND key = :idempotency_key);

-- name: migration_lock
SELECT pg_advisory_xact_lock(:key);

-- name: create_schema
-- {schema} is checked against a strict identifier pattern before it is formatted in.
CREATE SCHEMA IF NOT EXISTS {schema};

-- name: use_schema
SET LOCAL search_path TO {schema};

-- name: migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations
    (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());

-- name: migrations_table_exists
SELECT to_regclass(:name) IS NOT NULL;

-- name: migrations_applied
SELECT version FROM schema_migrations;

-- name: migration_applied
INSERT INTO schema_migrations (version) VALUES (:version);

-- name: endpoint_by_id
-- Appended to endpoint_columns.
WHERE id = :id AND NOT deleted AND (:account_id::text IS NULL OR account_id = :account_id);

-- name: endpoints_page
-- Appended to endpoint_columns.
WHERE account_id = :account_id AND NOT deleted AND id > :after ORDER BY id LIMIT :limit;

-- name: delivery_by_id
-- Appended to delivery_columns.
WHERE id = :id AND account_id = :account_id;

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
SELECT endpoint_id, state, count(*),
       sum(CASE WHEN next_attempt_at <= :now THEN 1 ELSE 0 END), min(created_at),
       min(next_attempt_at)
FROM deliveries
WHERE endpoint_id = ANY(:ids::text[])
  AND state IN ('pending', 'delivering', 'dead')
GROUP BY endpoint_id, state;

-- name: ensure_health
INSERT INTO endpoint_health (endpoint_id) SELECT unnest(:ids::text[])
ON CONFLICT DO NOTHING;

-- name: health_rows
SELECT endpoint_id, window_start, successes, failures, prev_successes, prev_failures, latency,
       prev_latency, consecutive_failures, consecutive_dead, failing_since, last_success_at,
       last_failure_at, failing_announced, disabled_reason, disabled_at, updated_at
FROM endpoint_health WHERE endpoint_id = ANY(:ids::text[])
ORDER BY endpoint_id;

-- name: lock_health_rows
-- In endpoint id order, so two workers flushing the same endpoints cannot deadlock.
SELECT endpoint_id FROM endpoint_health WHERE endpoint_id = ANY(:ids::text[])
ORDER BY endpoint_id FOR UPDATE;

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
UPDATE endpoints SET disabled = true, updated_at = :now
WHERE id = :endpoint_id AND NOT disabled AND NOT deleted
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
