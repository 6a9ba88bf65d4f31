-- A claim in one call: the ready endpoints (each one's advisory lock taken without waiting),
-- each one's room across the fleet (core.fanout.fleet_room), their oldest due deliveries
-- leased, and the endpoints that gave less than they had room for settled (compare-and-set on
-- endpoint_work.version, see 0005). These were three statements sent one after the other
-- from the dispatcher, five round trips with BEGIN and COMMIT, and between them the
-- transaction held the endpoints' locks while the event loop, busy sending, got round to the
-- next one: other claimers and the ingest's fast path skipped those endpoints meanwhile (57 %
-- of claims came back empty on one endpoint). Inside a function each statement still reads
-- a snapshot of its own, taken after the locks: the counts are never older than the locks.
CREATE FUNCTION postback_claim(
    p_now bigint, p_lease_until bigint, p_limit integer, p_endpoints integer, p_holder text,
    p_share integer, p_exclude text[], p_room_ids text[], p_rooms integer[],
    p_own_ids text[], p_owns integer[], p_sendings integer[], p_reserve_ids text[],
    p_reserves integer[],
    p_default_reserve integer)
RETURNS TABLE (delivery_id text, message_id text, account_id text, endpoint_id text,
               attempt_count integer, schedule_base integer, event_type text, payload bytea,
               message_created_at bigint, endpoint_updated_at bigint, paced boolean,
               holders integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    ready_ids text[];
    ready_versions bigint[];
    ask_ids text[];
    ask_rooms integer[];
    ask_holders integer[];
    c_ids text[];
    c_messages text[];
    c_accounts text[];
    c_endpoints text[];
    c_attempts integer[];
    c_bases integer[];
    c_types text[];
    c_payloads bytea[];
    c_created bigint[];
    c_updated bigint[];
    c_paced boolean[];
    c_holders integer[];
BEGIN
    -- Endpoints with due work that may be sent to now (not disabled, deleted, paused by a 429
    -- or excluded by the caller), oldest due first; one row per endpoint, never the
    -- deliveries of endpoints it skips. Another claimer holds an endpoint's lock: skip it.
    SELECT array_agg(r.endpoint_id ORDER BY r.due_at), array_agg(r.version ORDER BY r.due_at)
    INTO ready_ids, ready_versions
    FROM (
        SELECT w.endpoint_id, w.version, w.due_at
        FROM endpoint_work w
        JOIN endpoints e ON e.id = w.endpoint_id AND NOT e.disabled AND NOT e.deleted
        WHERE w.due_at <= p_now AND NOT (w.endpoint_id = ANY(p_exclude))
          AND NOT EXISTS (SELECT 1 FROM endpoint_pacing p
                          WHERE p.endpoint_id = w.endpoint_id AND p.paused_until > p_now)
          AND pg_try_advisory_xact_lock(7460, hashtext(w.endpoint_id))
        ORDER BY w.due_at
        LIMIT p_endpoints
    ) AS r;
    IF ready_ids IS NULL THEN
        RETURN;
    END IF;

    -- Each one's room: what the caller asks (its allowance, else the share plus its reserve),
    -- and, when others hold some of it too, no more than its part of the share plus its own
    -- reserve, minus what it still sends or holds ready (core.fanout.fleet_room): of its own
    -- leases (p_owns), finished attempts not yet recorded hold no slot at the endpoint.
    SELECT array_agg(a.endpoint_id ORDER BY a.n),
           array_agg(CASE WHEN f.others = 0 THEN a.asked
                          ELSE least(a.asked,
                                     (p_share + f.holders - 1) / f.holders + a.reserve
                                     - a.sending)
                     END ORDER BY a.n),
           array_agg(CASE WHEN f.others = 0 THEN 1 ELSE f.holders END ORDER BY a.n)
    INTO ask_ids, ask_rooms, ask_holders
    FROM (
        SELECT r.endpoint_id, r.n, coalesce(o.own, 0) AS own,
               coalesce(o.sending, 0) AS sending,
               coalesce(v.reserve, p_default_reserve) AS reserve,
               least(coalesce(m.room, p_share + coalesce(v.reserve, p_default_reserve)),
                     p_share + coalesce(v.reserve, p_default_reserve)) AS asked
        FROM unnest(ready_ids) WITH ORDINALITY AS r(endpoint_id, n)
        LEFT JOIN unnest(p_room_ids, p_rooms) AS m(endpoint_id, room)
               ON m.endpoint_id = r.endpoint_id
        LEFT JOIN unnest(p_own_ids, p_owns, p_sendings) AS o(endpoint_id, own, sending)
               ON o.endpoint_id = r.endpoint_id
        LEFT JOIN unnest(p_reserve_ids, p_reserves) AS v(endpoint_id, reserve)
               ON v.endpoint_id = r.endpoint_id
    ) AS a
    CROSS JOIN LATERAL (
        SELECT greatest(0, count(*) - a.own) AS others,
               greatest(1, count(DISTINCT x.lease_holder)
                               FILTER (WHERE x.lease_holder <> p_holder)) + 1 AS holders
        FROM deliveries x WHERE x.endpoint_id = a.endpoint_id AND x.state = 'delivering'
    ) AS f;

    -- Each ready endpoint's oldest due deliveries from its own index range, at most its room;
    -- SKIP LOCKED never waits on another transaction.
    WITH ask AS (
        SELECT * FROM unnest(ask_ids, ask_rooms, ask_holders) AS a(endpoint_id, room, holders)
    ), picked AS (
        SELECT d.id, d.next_attempt_at, ask.holders FROM ask
        CROSS JOIN LATERAL (
            SELECT q.id, q.next_attempt_at FROM deliveries q
            WHERE q.endpoint_id = ask.endpoint_id AND q.state = 'pending'
              AND q.next_attempt_at <= p_now
              -- Ordered deliveries (one recipient's status reports) wait for the ones before
              -- them to the same endpoint to finish.
              AND (q.ordering_key IS NULL OR NOT EXISTS (
                      SELECT 1 FROM deliveries AS earlier
                      WHERE earlier.endpoint_id = q.endpoint_id
                        AND earlier.ordering_key = q.ordering_key
                        AND earlier.id < q.id
                        AND earlier.state IN ('pending', 'delivering')))
            ORDER BY q.next_attempt_at
            LIMIT greatest(ask.room, 0)
            FOR UPDATE SKIP LOCKED
        ) AS d
        ORDER BY d.next_attempt_at
        LIMIT p_limit
    ), claimed AS (
        UPDATE deliveries d SET state = 'delivering', lease_until = p_lease_until,
                               updated_at = p_now, lease_holder = p_holder
        FROM picked, messages m, endpoints e
        WHERE d.id = picked.id AND m.id = d.message_id AND e.id = d.endpoint_id
        RETURNING d.id, d.message_id, d.account_id, d.endpoint_id, d.attempt_count,
                  d.schedule_base, m.event_type, m.payload, m.created_at,
                  e.updated_at AS endpoint_updated_at,
                  coalesce((SELECT p.current_rate IS NOT NULL OR p.paused_until > p_now
                            FROM endpoint_pacing p WHERE p.endpoint_id = d.endpoint_id),
                           false) AS paced,
                  picked.holders
    )
    SELECT array_agg(c.id), array_agg(c.message_id), array_agg(c.account_id),
           array_agg(c.endpoint_id), array_agg(c.attempt_count), array_agg(c.schedule_base),
           array_agg(c.event_type), array_agg(c.payload), array_agg(c.created_at),
           array_agg(c.endpoint_updated_at), array_agg(c.paced), array_agg(c.holders)
    INTO c_ids, c_messages, c_accounts, c_endpoints, c_attempts, c_bases, c_types, c_payloads,
         c_created, c_updated, c_paced, c_holders
    FROM claimed c;

    -- An endpoint that gave less than its room has nothing more due now: it is due again at
    -- its next pending delivery (or never, until a trigger marks it), if nobody marked it
    -- since it was read (compare-and-set on version).
    IF coalesce(cardinality(c_ids), 0) < p_limit THEN
        UPDATE endpoint_work w SET due_at = coalesce(
            (SELECT min(d.next_attempt_at) FROM deliveries d
             WHERE d.endpoint_id = w.endpoint_id AND d.state = 'pending'),
            9223372036854775807)
        FROM unnest(ready_ids, ready_versions) AS s(endpoint_id, version)
        JOIN unnest(ask_ids, ask_rooms) AS a(endpoint_id, room) ON a.endpoint_id = s.endpoint_id
        WHERE w.endpoint_id = s.endpoint_id AND w.version = s.version
          AND (SELECT count(*) FROM unnest(c_endpoints) AS t(endpoint_id)
               WHERE t.endpoint_id = s.endpoint_id) < a.room;
    END IF;

    RETURN QUERY
    SELECT * FROM unnest(c_ids, c_messages, c_accounts, c_endpoints, c_attempts, c_bases,
                         c_types, c_payloads, c_created, c_updated, c_paced, c_holders);
END
$$;
