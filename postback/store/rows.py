"""Row <-> record conversion shared by the SQL adapters (same columns in every dialect)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgspec

from postback.core.fanout import lease_counts, worth_counting
from postback.core.health import EMPTY_BUCKETS, Backlog, HealthState
from postback.core.model import (
    Account,
    AccountActivity,
    ActivityPoint,
    ApiKey,
    Attempt,
    Auth,
    BatchRecord,
    ClaimedDelivery,
    ClientTLS,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointHealth,
    EndpointLoad,
    EventTypeDefinition,
    LeaseOffer,
    NewMessage,
    SignatureScheme,
    SigningSecret,
    SNSDestination,
)
from postback.core.policy import RetryPolicy
from postback.core.throttle import Pacing
from postback.store.sealing import Sealer


def account_from_row(row: Any, at: int = 0) -> Account:
    """Columns id, name, created_at, external_id starting at ``at``."""
    return Account(id=row[at], name=row[at + 1], created_at=row[at + 2], external_id=row[at + 3])


def api_key_from_row(row: Any) -> ApiKey:
    """Columns id, account_id, name, prefix, last4, created_at, revoked_at."""
    return ApiKey(
        id=row[0],
        account_id=row[1],
        name=row[2],
        prefix=row[3],
        last4=row[4],
        created_at=row[5],
        revoked_at=row[6],
    )


def api_key_params(key: ApiKey, key_hash: str) -> dict[str, Any]:
    return {**msgspec.structs.asdict(key), "key_hash": key_hash}


class EndpointConfig(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The endpoint settings kept as one JSON column (they are read and written together).

    Every other field of ``Endpoint`` is a column of its own. A new setting added here (same
    name and type as on ``Endpoint``) needs no migration.
    """

    retry_policy: RetryPolicy | None = None
    timeout_ms: int | None = None
    rate_limit_per_s: float | None = None
    headers: dict[str, str] = {}
    auth: Auth | None = None
    tls: ClientTLS | None = None
    destination: SNSDestination | None = None
    signature_scheme: SignatureScheme = "standard-webhooks"


encode_config = msgspec.json.Encoder().encode
decode_config = msgspec.json.Decoder(EndpointConfig).decode


def endpoint_from_row(row: Any, sealer: Sealer) -> Endpoint:
    (
        id_,
        account_id,
        url,
        description,
        all_types,
        config,
        disabled,
        is_cb,
        created,
        updated,
        types,
    ) = row
    cfg = decode_config(sealer.open(config, id_))
    return Endpoint(
        id=id_,
        account_id=account_id,
        url=url,
        description=description,
        event_types=None if all_types else tuple(sorted(json.loads(types))),
        disabled=bool(disabled),
        is_callback_url=bool(is_cb),
        created_at=created,
        updated_at=updated,
        **{name: getattr(cfg, name) for name in EndpointConfig.__struct_fields__},
    )


def delivery_from_row(row: Any) -> Delivery:
    (id_, msg, acct, ep, state, count, nxt, code, err, dead, created, updated, etype) = row
    return Delivery(
        id=id_,
        message_id=msg,
        account_id=acct,
        endpoint_id=ep,
        state=DeliveryState(state),
        attempt_count=count,
        next_attempt_at=nxt,
        last_status_code=code,
        last_error=err,
        dead_reason=dead,
        created_at=created,
        updated_at=updated,
        event_type=etype,
    )


def endpoint_params(endpoint: Endpoint, sealer: Sealer) -> dict[str, Any]:
    config = EndpointConfig(
        **{name: getattr(endpoint, name) for name in EndpointConfig.__struct_fields__}
    )
    return {
        "id": endpoint.id,
        "account_id": endpoint.account_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "all_event_types": endpoint.event_types is None,
        # Credentials, TLS keys and custom headers are sealed as one value, bound to the id.
        "config": sealer.seal(encode_config(config).decode(), endpoint.id),
        "disabled": endpoint.disabled,
        "is_callback_url": endpoint.is_callback_url,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


def attempt_from_row(r: Any) -> Attempt:
    return Attempt(
        id=r[0],
        delivery_id=r[1],
        attempt_number=r[2],
        started_at=r[3],
        duration_ms=r[4],
        outcome=r[5],
        status_code=r[6],
        error=r[7],
        response_body=r[8],
    )


def pacing_from_row(row: Any) -> Pacing:
    return Pacing(
        current_rate=row[0],
        ceiling=row[1],
        paused_until_ms=row[2],
        next_slot_ms=row[3],
        last_change_ms=row[4],
    )


def pacing_params(pacing: Pacing) -> dict[str, Any]:
    return {
        "current_rate": pacing.current_rate,
        "ceiling": pacing.ceiling,
        "paused_until": pacing.paused_until_ms,
        "next_slot": pacing.next_slot_ms,
        "last_change": pacing.last_change_ms,
    }


def secret_params(endpoint_id: str, secret: SigningSecret, sealer: Sealer) -> dict[str, Any]:
    return {
        "endpoint_id": endpoint_id,
        "secret": sealer.seal(secret.secret, endpoint_id),
        "created_at": secret.created_at,
        "expires_at": secret.expires_at,
    }


def secret_from_row(endpoint_id: str, row: Any, sealer: Sealer) -> SigningSecret:
    return SigningSecret(
        secret=sealer.open(row[0], endpoint_id), created_at=row[1], expires_at=row[2]
    )


def event_type_from_row(row: Any) -> EventTypeDefinition:
    return EventTypeDefinition(name=row[0], description=row[1], schema=row[2], created_at=row[3])


def batch_from_row(row: Any) -> BatchRecord:
    return BatchRecord(
        batch_id=row[0],
        mode=row[1],
        kind=row[2],
        client_reference=row[3],
        callback_url=row[4],
        expected_recipients=row[5],
        report_deadline=row[6],
        report_state=row[7],
        created_at=row[8],
    )


def delivery_filter(
    account_id: str,
    *,
    limit: int,
    **filters: Any,
) -> tuple[str, dict[str, Any]]:
    """``WHERE … ORDER BY … LIMIT`` of a delivery listing (newest first): the conditions of
    ``delivery_conditions`` with the same arguments."""
    where, params = delivery_conditions(account_id, **filters)
    params["limit"] = limit
    return " WHERE " + " AND ".join(where) + " ORDER BY id DESC LIMIT :limit", params


def delivery_conditions(
    account_id: str,
    *,
    message_id: str | None = None,
    state: DeliveryState | None = None,
    endpoint_id: str | None = None,
    since: int | None = None,
    until: int | None = None,
    after: str | None = None,
    event_type: str | None = None,
    batch_id: str | None = None,
    recipient: str | None = None,
    idempotency_key: str | None = None,
    idempotency_condition: str = "",
) -> tuple[list[str], dict[str, Any]]:
    """The conditions of a delivery listing on unqualified ``deliveries`` columns, with
    ``:name`` parameters that both dialects bind; only given filters appear.

    ``batch_id`` and ``recipient`` match the ordering key ``<batch_id>/<recipient>`` of batch
    delivery reports: no index covers them, so they scan the account's deliveries (newest
    first, stopping at ``limit`` matches). ``idempotency_key`` is found through the keys table
    (its primary key) for as long as keys are kept (24 h), with the adapter's named
    ``delivery_by_idempotency_key`` condition as ``idempotency_condition``.
    """
    where = ["account_id = :account_id"]
    params: dict[str, Any] = {"account_id": account_id}

    def bind(value: Any) -> str:
        name = f"p{len(params)}"
        params[name] = value
        return ":" + name

    if state is not None:
        # A literal, not a parameter: a partial index (an endpoint's pending, in-flight or dead
        # deliveries) serves only a query that names its state.
        where.append(f"state = '{DeliveryState(state).value}'")
    for column, value, op in (
        ("message_id", message_id, "="),
        ("endpoint_id", endpoint_id, "="),
        ("event_type", event_type, "="),
        ("created_at", since, ">="),
        ("created_at", until, "<"),
        ("id", after, "<"),
    ):
        if value is not None:
            where.append(f"{column} {op} {bind(value)}")
    if batch_id is not None:
        prefix = batch_id + "/"
        where.append(f"substr(ordering_key, 1, {bind(len(prefix))}) = {bind(prefix)}")
    if recipient is not None:
        suffix = "/" + recipient
        length = bind(len(suffix))
        where.append(f"substr(ordering_key, length(ordering_key) - {length} + 1) = {bind(suffix)}")
    if idempotency_key is not None:
        params["idempotency_key"] = idempotency_key
        where.append(idempotency_condition)
    return where, params


class LeasePlan:
    """Which new deliveries an ingest commits already leased (counts from
    ``core.fanout.lease_counts``), and the ClaimedDelivery handed to the dispatcher for each."""

    def __init__(
        self,
        counts: tuple[dict[str, int], dict[str, int]],
        versions: dict[str, int],
        lease_until: int,
        now: int,
        holder: str = "",
    ) -> None:
        self.counts, self.holders = counts
        self.versions = versions
        self.lease_until = lease_until
        self.now = now
        self.holder = holder
        """Stored with each lease this plan makes (``LeaseOffer.holder``)."""

    @classmethod
    def none(cls) -> LeasePlan:
        return cls(({}, {}), {}, 0, 0)

    @staticmethod
    def wanted(fresh: list[tuple[NewMessage, list[Delivery]]], lease: LeaseOffer) -> dict[str, int]:
        """New deliveries per endpoint the fast path could take (ordered ones wait their turn
        in the claim path), of the endpoints ``lease`` may take any of (``worth_counting``)."""
        wanted: dict[str, int] = {}
        for message, deliveries in fresh:
            if message.ordering_key is None:
                for delivery in deliveries:
                    wanted[delivery.endpoint_id] = wanted.get(delivery.endpoint_id, 0) + 1
        return worth_counting(lease, wanted)

    @classmethod
    def of(
        cls, lease: LeaseOffer, wanted: dict[str, int], loads: Iterable[Any], now: int
    ) -> LeasePlan:
        """The plan from ``endpoint_loads`` rows: [id, updated_at, in_flight, paced,
        other_holders]."""
        rows = list(loads)
        found = {
            r[0]: EndpointLoad(in_flight=r[2], paced=bool(r[3]), other_holders=r[4]) for r in rows
        }
        versions = {r[0]: r[1] for r in rows}
        return cls(
            lease_counts(lease, wanted, found), versions, now + lease.lease_ms, now, lease.holder
        )

    def take(self, message: NewMessage, delivery: Delivery) -> ClaimedDelivery | None:
        left = self.counts.get(delivery.endpoint_id, 0)
        if left <= 0 or message.ordering_key is not None:
            return None
        self.counts[delivery.endpoint_id] = left - 1
        return ClaimedDelivery(
            delivery_id=delivery.id,
            message_id=message.id,
            account_id=delivery.account_id,
            endpoint_id=delivery.endpoint_id,
            endpoint_updated_at=self.versions.get(delivery.endpoint_id, 0),
            attempt_count=0,
            schedule_base=0,
            event_type=message.event_type,
            payload=message.payload,
            message_created_at=self.now,
            holders=self.holders.get(delivery.endpoint_id, 1),
        )


def account_activity_from_row(r: Any) -> AccountActivity:
    return AccountActivity(
        account_id=r[0],
        name=r[1],
        backlog=int(r[2]),
        oldest_pending_at=r[3],
        dead=int(r[4]),
        delivered=int(r[5]),
        failed=int(r[6]),
    )


def endpoint_health_from_row(r: Any) -> EndpointHealth:
    return EndpointHealth(
        endpoint_id=r[0],
        account_id=r[1],
        url=r[2],
        disabled=bool(r[3]),
        attempts=int(r[4]),
        failures=int(r[5]),
        last_status_code=r[6],
        backlog=int(r[7]),
        paced_rate=r[8],
        paused_until=r[9],
    )


def activity_point_from_row(r: Any, bucket_ms: int) -> ActivityPoint:
    return ActivityPoint(bucket_start=int(r[0]) * bucket_ms, attempts=int(r[1]), failures=int(r[2]))


def health_from_row(row: Any) -> HealthState:
    """An ``endpoint_health`` row (columns as in the ``health_rows`` query)."""
    return HealthState(
        endpoint_id=row[0],
        window_start=row[1],
        successes=row[2],
        failures=row[3],
        prev_successes=row[4],
        prev_failures=row[5],
        latency=_buckets(row[6]),
        prev_latency=_buckets(row[7]),
        consecutive_failures=row[8],
        consecutive_dead=row[9],
        failing_since=row[10],
        last_success_at=row[11],
        last_failure_at=row[12],
        failing_announced=bool(row[13]),
        disabled_reason=row[14],
        disabled_at=row[15],
        updated_at=row[16],
    )


def _buckets(text: str) -> tuple[int, ...]:
    counts = json.loads(text) if text else []
    if len(counts) != len(EMPTY_BUCKETS):  # a fresh row, or the bounds changed: start over
        return EMPTY_BUCKETS
    return tuple(int(c) for c in counts)


def health_row(health: HealthState) -> tuple[Any, ...]:
    """A health state in the column order of the ``health_rows`` queries, which is the order of
    ``HealthState``'s fields (the storage contract round-trips every one of them)."""
    row = list(msgspec.structs.astuple(health))
    row[6], row[7] = json.dumps(list(health.latency)), json.dumps(list(health.prev_latency))
    return tuple(row)


def health_params(health: HealthState) -> dict[str, Any]:
    params = msgspec.structs.asdict(health)
    params["latency"] = json.dumps(list(health.latency))
    params["prev_latency"] = json.dumps(list(health.prev_latency))
    return params


def backlog_from_rows(rows: Any) -> dict[str, Backlog]:
    """``endpoint_backlog`` rows (endpoint, state, count, due, oldest created, oldest due)."""
    found: dict[str, dict[str, Any]] = {}
    for endpoint_id, state, count, due, oldest, oldest_due in rows:
        entry = found.setdefault(endpoint_id, {})
        entry[state] = count
        if state == "pending":
            entry["due"] = int(due or 0)
            entry["oldest_pending_created_at"] = oldest
            entry["oldest_due_at"] = oldest_due
    return {
        endpoint_id: Backlog(
            pending=e.get("pending", 0),
            due=e.get("due", 0),
            delivering=e.get("delivering", 0),
            dead=e.get("dead", 0),
            oldest_pending_created_at=e.get("oldest_pending_created_at"),
            oldest_due_at=e.get("oldest_due_at"),
        )
        for endpoint_id, e in found.items()
    }


def backlog_from_row(row: Any, now: int) -> Backlog:
    """The ``backlog`` query's one row; ``oldest_due_at`` only when it is due."""
    pending, due, delivering, dead, oldest, next_due = row
    return Backlog(
        pending=pending,
        due=due,
        delivering=delivering,
        dead=dead,
        oldest_pending_created_at=oldest,
        oldest_due_at=next_due if next_due is not None and next_due <= now else None,
    )
