"""In-memory storage: the ``Storage`` contract on plain dicts, for tests and tools.

Why: the dispatcher's scheduling (claims, shares, reserves, leases, retries) can be unit-tested
without a database, as procrastinate's in-memory connector allows. It is not reachable from
``open_storage`` and ``serve`` never uses it: nothing survives the process.

Everything runs on one event loop and no method awaits before it is done, so each call is one
atomic step, as a transaction would be: a call that fails changes nothing (it checks before it
writes). The rules come from the same pure helpers as the SQL adapters (``core.fanout``,
``core.idempotency``, ``store.rows``); ``sqlite.py`` and its ``queries.sql`` are the reference
for what each query selects and in which order. Endpoint settings and signing secrets are kept
sealed, as the SQL adapters keep them, so a ``Sealer`` that cannot open them fails here too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from postback.core.fanout import (
    claim_plan,
    delivery_targets,
    fleet_room,
    idempotency_hit,
    new_deliveries,
)
from postback.core.health import Backlog, EndpointBacklog, HealthState
from postback.core.idempotency import check_reuse
from postback.core.ids import MonotonicIds, make_id
from postback.core.model import (
    Account,
    AccountActivity,
    ActivityPoint,
    ApiKey,
    Attempt,
    AttemptRecord,
    BatchRecord,
    ClaimedDelivery,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointHealth,
    EndpointLoad,
    EventTypeDefinition,
    IngestResult,
    LeaseOffer,
    LiveTotals,
    Message,
    NewMessage,
    RecipientStatus,
    SigningSecret,
)
from postback.core.throttle import Pacing
from postback.store.base import StorageError
from postback.store.rows import (
    LeasePlan,
    backlog_from_row,
    backlog_from_rows,
    endpoint_from_row,
    endpoint_params,
    health_from_row,
    health_row,
    secret_from_row,
    secret_params,
)
from postback.store.sealing import Sealer

T = TypeVar("T")

_LIVE = (DeliveryState.PENDING, DeliveryState.DELIVERING)
_Statuses = dict[str, tuple[str | None, int | None]]


@dataclass(slots=True)
class _AccountRow:
    account: Account
    disable_after_s: int | None = None


@dataclass(slots=True)
class _KeyRow:
    key: ApiKey
    key_hash: str


@dataclass(slots=True, kw_only=True)
class _EndpointRow:
    """An endpoint as the SQL adapters store it: its settings sealed in ``config``."""

    id: str
    account_id: str
    url: str
    description: str
    all_event_types: bool
    config: str
    disabled: bool
    is_callback_url: bool
    created_at: int
    updated_at: int
    event_types: tuple[str, ...] = ()
    deleted: bool = False


@dataclass(slots=True)
class _SecretRow:
    sealed: str
    created_at: int
    expires_at: int | None


@dataclass(slots=True)
class _KeyUse:
    """An idempotency key: the message it named, when, and the request's fingerprint."""

    message_id: str
    created_at: int
    fingerprint: str | None


@dataclass(slots=True, kw_only=True)
class _DeliveryRow:
    id: str
    message_id: str
    account_id: str
    endpoint_id: str
    event_type: str
    state: DeliveryState
    next_attempt_at: int | None
    created_at: int
    updated_at: int
    ordering_key: str | None = None
    attempt_count: int = 0
    schedule_base: int = 0
    lease_until: int | None = None
    lease_holder: str | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    dead_reason: str | None = None
    attempt_ids: list[str] = field(default_factory=list)

    def delivery(self) -> Delivery:
        return Delivery(
            id=self.id,
            message_id=self.message_id,
            account_id=self.account_id,
            endpoint_id=self.endpoint_id,
            state=self.state,
            attempt_count=self.attempt_count,
            next_attempt_at=self.next_attempt_at,
            last_status_code=self.last_status_code,
            last_error=self.last_error,
            dead_reason=self.dead_reason,
            created_at=self.created_at,
            updated_at=self.updated_at,
            event_type=self.event_type,
        )


def _attempt_floor(since: int) -> str:
    """The smallest attempt id made at ``since``: windows select attempts by id, as the SQL
    adapters do (attempt ids are time-ordered)."""
    return make_id("att", since, bytes(10))


class MemoryStorage:
    """``Storage`` in this process's memory: for tests and tools only.

    Deliveries are kept in the order their ids were made (one ``MonotonicIds`` per store), so
    every dict of them below iterates oldest first, and newest first when reversed.
    """

    def __init__(self, sealer: Sealer | None = None) -> None:
        self.sealer = sealer or Sealer.ephemeral()
        self._open = False
        self._delivery_ids = MonotonicIds("dlv")
        self._accounts: dict[str, _AccountRow] = {}
        self._keys: dict[str, _KeyRow] = {}
        self._key_ids_by_hash: dict[str, str] = {}
        self._endpoints: dict[str, _EndpointRow] = {}
        self._secrets: dict[str, list[_SecretRow]] = {}
        self._messages: dict[str, Message] = {}
        self._message_deliveries: dict[str, list[str]] = {}
        self._idempotency: dict[tuple[str, str], _KeyUse] = {}
        self._deliveries: dict[str, _DeliveryRow] = {}
        self._account_deliveries: dict[str, dict[str, _DeliveryRow]] = {}
        self._endpoint_deliveries: dict[str, dict[str, _DeliveryRow]] = {}
        self._pending: dict[str, dict[str, _DeliveryRow]] = {}
        self._in_flight: dict[str, dict[str, _DeliveryRow]] = {}
        self._attempts: dict[str, Attempt] = {}
        self._due: dict[str, int] = {}
        """Per endpoint, from when it may have due work (SQL: ``endpoint_work``): moved
        earlier whenever a delivery becomes pending, settled by a claim that exhausts it."""
        self._pacing: dict[str, Pacing] = {}
        self._health: dict[str, HealthState] = {}
        self._event_types: dict[str, dict[str, EventTypeDefinition]] = {}
        self._batches: dict[tuple[str, str], BatchRecord] = {}
        self._recipients: dict[tuple[str, str], _Statuses] = {}
        self._probed_at = 0

    # -- plumbing ---------------------------------------------------------------------------

    async def open(self, *, migrate: bool = True) -> None:
        """Nothing to connect to or migrate; the data lives as long as this object."""
        self._open = True

    async def close(self) -> None:
        self._open = False

    def watch(self, wake: Callable[[], None]) -> None:
        """No other process can store work here: nothing to watch."""

    def _check_open(self) -> None:
        if not self._open:
            raise StorageError("storage is not open")

    # -- accounts -----------------------------------------------------------------------------

    async def create_account(
        self, account: Account, key: ApiKey | None = None, key_hash: str | None = None
    ) -> bool:
        self._check_open()
        if account.id in self._accounts or (
            account.external_id is not None
            and any(r.account.external_id == account.external_id for r in self._accounts.values())
        ):
            return False
        if key is not None and key_hash is not None:
            self._check_new_key(key, key_hash, account_ids={account.id})
        self._accounts[account.id] = _AccountRow(account)
        if key is not None and key_hash is not None:
            self._store_key(key, key_hash)
        return True

    async def account(self, ref: str) -> Account | None:
        self._check_open()
        row = self._accounts.get(ref)
        if row is not None:
            return row.account
        for row in self._accounts.values():
            if row.account.external_id == ref:
                return row.account
        return None

    async def list_accounts(
        self, *, query: str | None, after: str | None, limit: int
    ) -> list[Account]:
        self._check_open()
        found: list[Account] = []
        for account_id in sorted(self._accounts):
            if after is not None and account_id <= after:
                continue
            account = self._accounts[account_id].account
            if (
                query is None
                or query in account.name.lower()
                or query in (account.external_id or "").lower()
            ):
                found.append(account)
                if len(found) >= limit:
                    break
        return found

    def _check_new_key(self, key: ApiKey, key_hash: str, account_ids: Collection[str] = ()) -> None:
        """Refuse a key that breaks a constraint of the ``api_keys`` table."""
        if key.id in self._keys:
            raise StorageError(f"UNIQUE constraint failed: api_keys.id ({key.id})")
        if key_hash in self._key_ids_by_hash:
            raise StorageError("UNIQUE constraint failed: api_keys.key_hash")
        if (
            key.account_id is not None
            and key.account_id not in self._accounts
            and key.account_id not in account_ids
        ):
            raise StorageError(f"FOREIGN KEY constraint failed: no account {key.account_id}")

    def _store_key(self, key: ApiKey, key_hash: str) -> None:
        self._keys[key.id] = _KeyRow(key, key_hash)
        self._key_ids_by_hash[key_hash] = key.id

    async def create_api_key(self, key: ApiKey, key_hash: str) -> None:
        self._check_open()
        self._check_new_key(key, key_hash)
        self._store_key(key, key_hash)

    async def live_key(self, key_hash: str, now: int) -> tuple[ApiKey, Account | None] | None:
        self._check_open()
        key_id = self._key_ids_by_hash.get(key_hash)
        if key_id is None:
            return None
        key = self._keys[key_id].key
        if not key.live(now):
            return None
        owner = None if key.account_id is None else self._accounts.get(key.account_id)
        return key, None if owner is None else owner.account

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        self._check_open()
        row = self._keys.get(key_id)
        return None if row is None else row.key

    async def list_api_keys(
        self, account_id: str | None, *, after: str | None, limit: int
    ) -> list[ApiKey]:
        self._check_open()
        found: list[ApiKey] = []
        for key_id in sorted(self._keys):
            key = self._keys[key_id].key
            if (account_id is None or key.account_id == account_id) and (
                after is None or key_id > after
            ):
                found.append(key)
                if len(found) >= limit:
                    break
        return found

    def _revocable(self, key_id: str, at: int) -> _KeyRow | None:
        """The key, if revoking it at ``at`` changes it: revoking again may bring the time
        forward (end a rotation's grace period), never back."""
        row = self._keys.get(key_id)
        if row is None or (row.key.revoked_at is not None and row.key.revoked_at <= at):
            return None
        return row

    async def revoke_api_key(self, key_id: str, at: int) -> bool:
        self._check_open()
        row = self._revocable(key_id, at)
        if row is None:
            return False
        row.key = msgspec.structs.replace(row.key, revoked_at=at)
        return True

    async def rotate_api_key(
        self, key_id: str, new: ApiKey, new_hash: str, old_revoked_at: int
    ) -> bool:
        self._check_open()
        row = self._revocable(key_id, old_revoked_at)
        if row is None:
            return False
        self._check_new_key(new, new_hash)
        row.key = msgspec.structs.replace(row.key, revoked_at=old_revoked_at)
        self._store_key(new, new_hash)
        return True

    # -- endpoints ----------------------------------------------------------------------------

    def _endpoint_row(self, endpoint: Endpoint) -> _EndpointRow:
        """The endpoint as stored, its settings sealed (``rows.endpoint_params``)."""
        types = endpoint.event_types or ()
        if len(set(types)) != len(types):
            raise StorageError(
                f"UNIQUE constraint failed: endpoint_event_types ({endpoint.id} {types})"
            )
        return _EndpointRow(**endpoint_params(endpoint, self.sealer), event_types=tuple(types))

    def _endpoint(self, row: _EndpointRow) -> Endpoint:
        return endpoint_from_row(
            (
                row.id,
                row.account_id,
                row.url,
                row.description,
                row.all_event_types,
                row.config,
                row.disabled,
                row.is_callback_url,
                row.created_at,
                row.updated_at,
                json.dumps(list(row.event_types)),
            ),
            self.sealer,
        )

    def _live_endpoint(self, endpoint_id: str, account_id: str | None) -> _EndpointRow | None:
        row = self._endpoints.get(endpoint_id)
        if row is None or row.deleted or (account_id is not None and row.account_id != account_id):
            return None
        return row

    def _callback_for(self, account_id: str, url: str) -> _EndpointRow | None:
        for row in self._endpoints.values():
            if (
                row.account_id == account_id
                and row.url == url
                and row.is_callback_url
                and not row.deleted
            ):
                return row
        return None

    def _check_new_endpoint(self, row: _EndpointRow) -> None:
        if row.id in self._endpoints:
            raise StorageError(f"UNIQUE constraint failed: endpoints.id ({row.id})")
        if row.account_id not in self._accounts:
            raise StorageError(f"FOREIGN KEY constraint failed: no account {row.account_id}")
        if row.is_callback_url and self._callback_for(row.account_id, row.url) is not None:
            raise StorageError("UNIQUE constraint failed: endpoints.account_id, endpoints.url")

    def _store_endpoint(self, row: _EndpointRow, secret: SigningSecret) -> None:
        self._endpoints[row.id] = row
        self._secrets[row.id] = [self._secret_row(row.id, secret)]

    def _secret_row(self, endpoint_id: str, secret: SigningSecret) -> _SecretRow:
        params = secret_params(endpoint_id, secret, self.sealer)
        return _SecretRow(params["secret"], secret.created_at, secret.expires_at)

    async def create_endpoint(self, endpoint: Endpoint, secret: SigningSecret) -> None:
        self._check_open()
        row = self._endpoint_row(endpoint)
        self._check_new_endpoint(row)
        self._store_endpoint(row, secret)

    async def get_endpoint(self, account_id: str | None, endpoint_id: str) -> Endpoint | None:
        self._check_open()
        row = self._live_endpoint(endpoint_id, account_id)
        return None if row is None else self._endpoint(row)

    async def list_endpoints(
        self, account_id: str, *, after: str | None, limit: int
    ) -> list[Endpoint]:
        self._check_open()
        rows = sorted(
            (
                r
                for r in self._endpoints.values()
                if r.account_id == account_id and not r.deleted and r.id > (after or "")
            ),
            key=lambda r: r.id,
        )
        return [self._endpoint(r) for r in rows[:limit]]

    async def update_endpoint(self, endpoint: Endpoint) -> bool:
        self._check_open()
        stored = self._live_endpoint(endpoint.id, endpoint.account_id)
        if stored is None:
            return False
        new = self._endpoint_row(endpoint)
        if stored.is_callback_url and new.url != stored.url:
            clash = self._callback_for(stored.account_id, new.url)
            if clash is not None and clash.id != stored.id:
                raise StorageError("UNIQUE constraint failed: endpoints.account_id, endpoints.url")
        # Whether it was made for a callback URL, and when, never change.
        stored.url = new.url
        stored.description = new.description
        stored.all_event_types = new.all_event_types
        stored.config = new.config
        stored.disabled = new.disabled
        stored.updated_at = new.updated_at
        stored.event_types = new.event_types
        return True

    async def delete_endpoint(self, account_id: str, endpoint_id: str, now: int) -> bool:
        self._check_open()
        row = self._live_endpoint(endpoint_id, account_id)
        if row is None:
            return False
        row.deleted = True
        row.updated_at = now
        for live in (self._pending, self._in_flight):
            for delivery in list(live.get(endpoint_id, {}).values()):
                self._move(delivery, DeliveryState.DEAD)
                delivery.dead_reason = "endpoint deleted"
                delivery.next_attempt_at = None
                delivery.lease_until = None
                delivery.updated_at = now
        return True

    async def callback_endpoint(
        self, account_id: str, url: str, template: Endpoint, secret: SigningSecret
    ) -> Endpoint:
        self._check_open()
        found = self._callback_for(account_id, url)
        if found is None:
            # As the SQL adapters: the template's event types are not stored (a callback
            # endpoint receives only the messages that name it).
            if template.event_types is not None:
                template = msgspec.structs.replace(template, event_types=())
            found = self._endpoint_row(template)
            self._check_new_endpoint(found)
            self._store_endpoint(found, secret)
        endpoint = await self.get_endpoint(account_id, found.id)
        if endpoint is None:  # the template was for another account
            raise StorageError(f"callback endpoint for {url} vanished")
        return endpoint

    async def signing_secrets(self, endpoint_id: str, now: int) -> list[SigningSecret]:
        self._check_open()
        rows = self._secrets.get(endpoint_id, [])
        # Newest first; of two made at once, the one stored last.
        ordered = sorted(enumerate(rows), key=lambda ir: (ir[1].created_at, ir[0]), reverse=True)
        return [
            secret_from_row(endpoint_id, (r.sealed, r.created_at, r.expires_at), self.sealer)
            for _, r in ordered
            if r.expires_at is None or r.expires_at > now
        ]

    async def rotate_secret(
        self, account_id: str, endpoint_id: str, new: SigningSecret, old_expires_at: int
    ) -> bool:
        self._check_open()
        row = self._live_endpoint(endpoint_id, account_id)
        if row is None:
            return False
        secrets = self._secrets.setdefault(endpoint_id, [])
        for secret in secrets:
            if secret.expires_at is None:
                secret.expires_at = old_expires_at
        secrets.append(self._secret_row(endpoint_id, new))
        # Caches keyed by the endpoint's version notice the new secret.
        row.updated_at = max(row.updated_at + 1, new.created_at)
        return True

    # -- messages -----------------------------------------------------------------------------

    def _subscribed(self, account_id: str, event_type: str) -> list[str]:
        """The account's endpoints a message of ``event_type`` fans out to, by id."""
        return sorted(
            r.id
            for r in self._endpoints.values()
            if r.account_id == account_id
            and not r.disabled
            and not r.deleted
            and not r.is_callback_url
            and (r.all_event_types or event_type in r.event_types)
        )

    def _deliveries_of(self, message_id: str) -> list[Delivery]:
        return [
            self._deliveries[d].delivery()
            for d in sorted(self._message_deliveries.get(message_id, ()))
        ]

    async def ingest(
        self,
        account_id: str,
        messages: list[NewMessage],
        now: int,
        idempotency_window_ms: int,
        *,
        lease: LeaseOffer | None = None,
    ) -> list[IngestResult]:
        self._check_open()
        # Everything is decided before anything is stored: a refused batch leaves no trace.
        results: list[IngestResult] = []
        keys: dict[tuple[str, str], _KeyUse] = {}
        subscribed: dict[str, list[str]] = {}
        fresh: list[tuple[NewMessage, list[Delivery]]] = []
        new_ids: set[str] = set()
        for index, message in enumerate(messages):
            if message.idempotency_key is not None:
                key = (account_id, message.idempotency_key)
                found = keys[key] if key in keys else self._idempotency.get(key)
                if found is not None and idempotency_hit(
                    found.created_at, now, idempotency_window_ms
                ):
                    check_reuse(
                        message.idempotency_key, found.fingerprint, message.fingerprint, index
                    )
                    # As in SQL, the deliveries stored before this batch: a key repeated within
                    # one batch answers with none (they are not stored yet).
                    results.append(
                        IngestResult(
                            message_id=found.message_id,
                            deliveries=self._deliveries_of(found.message_id),
                            duplicate=True,
                        )
                    )
                    continue
                keys[key] = _KeyUse(message.id, now, message.fingerprint)
            if message.id in self._messages or message.id in new_ids:
                raise StorageError(f"UNIQUE constraint failed: messages.id ({message.id})")
            new_ids.add(message.id)
            targets = subscribed.get(message.event_type)
            if targets is None:
                targets = subscribed[message.event_type] = self._subscribed(
                    account_id, message.event_type
                )
            deliveries = new_deliveries(
                account_id,
                message,
                delivery_targets(message, targets),
                now,
                lambda: self._delivery_ids.next_from(now, os.urandom),
            )
            fresh.append((message, deliveries))
            results.append(IngestResult(message_id=message.id, deliveries=deliveries))

        plan = self._lease_plan(fresh, lease, now)
        self._idempotency.update(keys)
        leased_by_message: dict[str, list[ClaimedDelivery]] = {}
        for message, deliveries in fresh:
            self._messages[message.id] = Message(
                id=message.id,
                account_id=account_id,
                event_type=message.event_type,
                payload=message.payload,
                idempotency_key=message.idempotency_key,
                created_at=now,
            )
            self._message_deliveries[message.id] = [d.id for d in deliveries]
            for delivery in deliveries:
                claimed = plan.take(message, delivery)
                row = _DeliveryRow(
                    id=delivery.id,
                    message_id=message.id,
                    account_id=account_id,
                    endpoint_id=delivery.endpoint_id,
                    event_type=message.event_type,
                    state=DeliveryState.PENDING,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                    ordering_key=message.ordering_key,
                )
                self._insert(row)
                if claimed is None:
                    self._mark_due(row)
                else:
                    self._move(row, DeliveryState.DELIVERING)
                    row.lease_until = plan.lease_until
                    row.lease_holder = plan.holder
                    leased_by_message.setdefault(message.id, []).append(claimed)
        return [self._with_leases(r, leased_by_message) for r in results]

    @staticmethod
    def _with_leases(
        result: IngestResult, leased_by_message: Mapping[str, list[ClaimedDelivery]]
    ) -> IngestResult:
        """The result as the caller sees it: what was leased at once, and in flight."""
        leased = leased_by_message.get(result.message_id)
        if result.duplicate or not leased:
            return result
        ids = {c.delivery_id for c in leased}
        return msgspec.structs.replace(
            result,
            leased=leased,
            deliveries=[
                msgspec.structs.replace(d, state=DeliveryState.DELIVERING) if d.id in ids else d
                for d in result.deliveries
            ],
        )

    def _lease_plan(
        self, fresh: list[tuple[NewMessage, list[Delivery]]], lease: LeaseOffer | None, now: int
    ) -> LeasePlan:
        """Which new deliveries go straight to the local dispatcher (``rows.LeasePlan``), from
        what is in flight for their endpoints before this ingest."""
        if lease is None:
            return LeasePlan.none()
        wanted = LeasePlan.wanted(fresh, lease)
        if not wanted:
            return LeasePlan.none()
        loads: list[tuple[str, int, int, bool, int]] = []
        for endpoint_id in wanted:
            row = self._endpoints.get(endpoint_id)
            if row is None or row.disabled or row.deleted:
                continue
            load = self._load(endpoint_id, now, lease.holder)
            loads.append(
                (endpoint_id, row.updated_at, load.in_flight, load.paced, load.other_holders)
            )
        return LeasePlan.of(lease, wanted, loads, now)

    def _load(self, endpoint_id: str, now: int, holder: str) -> EndpointLoad:
        """In flight for the endpoint across the fleet, its pacing, and how many holders other
        than ``holder`` hold some of it."""
        in_flight = self._in_flight.get(endpoint_id, {})
        others = {
            r.lease_holder
            for r in in_flight.values()
            if r.lease_holder is not None and r.lease_holder != holder
        }
        return EndpointLoad(
            in_flight=len(in_flight), paced=self._paced(endpoint_id, now), other_holders=len(others)
        )

    async def get_message(self, account_id: str, message_id: str) -> Message | None:
        self._check_open()
        message = self._messages.get(message_id)
        return message if message is not None and message.account_id == account_id else None

    async def get_delivery(self, account_id: str, delivery_id: str) -> Delivery | None:
        self._check_open()
        row = self._deliveries.get(delivery_id)
        return row.delivery() if row is not None and row.account_id == account_id else None

    async def list_deliveries(
        self,
        account_id: str,
        *,
        message_id: str | None = None,
        state: DeliveryState | None = None,
        endpoint_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        after: str | None = None,
        limit: int = 100,
        event_type: str | None = None,
        batch_id: str | None = None,
        recipient: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Delivery]:
        self._check_open()
        wanted_state = None if state is None else DeliveryState(state)
        keyed: str | None = None
        if idempotency_key is not None:
            use = self._idempotency.get((account_id, idempotency_key))
            if use is None:
                return []
            keyed = use.message_id
        # The ordering key of batch delivery reports is "<batch_id>/<recipient>".
        prefix = None if batch_id is None else batch_id + "/"
        suffix = None if recipient is None else "/" + recipient
        if message_id is not None:
            candidates: Iterable[_DeliveryRow] = (
                self._deliveries[d]
                for d in sorted(self._message_deliveries.get(message_id, ()), reverse=True)
            )
        elif endpoint_id is not None:
            candidates = reversed(self._endpoint_deliveries.get(endpoint_id, {}).values())
        else:
            candidates = reversed(self._account_deliveries.get(account_id, {}).values())
        found: list[Delivery] = []
        for row in candidates:
            if len(found) >= limit:
                break
            if (
                row.account_id != account_id
                or (message_id is not None and row.message_id != message_id)
                or (endpoint_id is not None and row.endpoint_id != endpoint_id)
                or (wanted_state is not None and row.state is not wanted_state)
                or (event_type is not None and row.event_type != event_type)
                or (since is not None and row.created_at < since)
                or (until is not None and row.created_at >= until)
                or (after is not None and row.id >= after)
                or (keyed is not None and row.message_id != keyed)
                or (prefix is not None and not (row.ordering_key or "").startswith(prefix))
                or (suffix is not None and not (row.ordering_key or "").endswith(suffix))
            ):
                continue
            found.append(row.delivery())
        return found

    async def list_attempts(
        self, account_id: str, delivery_id: str, *, after: str | None, limit: int
    ) -> list[Attempt]:
        self._check_open()
        row = self._deliveries.get(delivery_id)
        if row is None or row.account_id != account_id:
            return []
        ids = sorted(a for a in row.attempt_ids if a > (after or ""))
        return [self._attempts[a] for a in ids[:limit]]

    # -- deliveries: the indexes every state change keeps -----------------------------------

    def _insert(self, row: _DeliveryRow) -> None:
        self._deliveries[row.id] = row
        self._account_deliveries.setdefault(row.account_id, {})[row.id] = row
        self._endpoint_deliveries.setdefault(row.endpoint_id, {})[row.id] = row
        self._index(row)

    def _index(self, row: _DeliveryRow) -> None:
        if row.state is DeliveryState.PENDING:
            self._pending.setdefault(row.endpoint_id, {})[row.id] = row
        elif row.state is DeliveryState.DELIVERING:
            self._in_flight.setdefault(row.endpoint_id, {})[row.id] = row

    def _unindex(self, row: _DeliveryRow) -> None:
        for live in (self._pending, self._in_flight):
            held = live.get(row.endpoint_id)
            if held is not None and held.pop(row.id, None) is not None and not held:
                del live[row.endpoint_id]

    def _move(self, row: _DeliveryRow, state: DeliveryState) -> None:
        if row.state is not state:
            self._unindex(row)
            row.state = state
            self._index(row)

    def _mark_due(self, row: _DeliveryRow) -> None:
        """A delivery became pending: its endpoint is due no later than it (the SQL
        adapters' ``endpoint_work`` triggers)."""
        if row.state is DeliveryState.PENDING and row.next_attempt_at is not None:
            due = self._due.get(row.endpoint_id)
            if due is None or row.next_attempt_at < due:
                self._due[row.endpoint_id] = row.next_attempt_at

    def _to_pending(self, row: _DeliveryRow, due_at: int) -> None:
        self._move(row, DeliveryState.PENDING)
        row.next_attempt_at = due_at
        self._mark_due(row)

    def _paced(self, endpoint_id: str, now: int) -> bool:
        """Shared pacing in force beyond the endpoint's own configuration (a 429 backoff)."""
        pacing = self._pacing.get(endpoint_id)
        return pacing is not None and (
            pacing.current_rate is not None or pacing.paused_until_ms > now
        )

    def _paused(self, endpoint_id: str, now: int) -> bool:
        pacing = self._pacing.get(endpoint_id)
        return pacing is not None and pacing.paused_until_ms > now

    # -- dispatch -----------------------------------------------------------------------------

    async def claim(
        self,
        now: int,
        limit: int,
        lease_ms: int,
        *,
        exclude_endpoints: Collection[str] = (),
        allowance: Mapping[str, int] | None = None,
        per_endpoint: int = 1_000_000,
        own_in_flight: Mapping[str, int] | None = None,
        prefetch: int = 0,
        reserves: Mapping[str, int] | None = None,
        holder: str = "",
        own_sending: Mapping[str, int] | None = None,
    ) -> list[ClaimedDelivery]:
        self._check_open()
        rooms = allowance or {}
        own = own_in_flight or {}
        sending = own_sending or {}
        ahead = reserves or {}
        holders: dict[str, int] = {}
        fleet_rooms: list[tuple[str, int]] = []
        for endpoint_id in self._ready_endpoints(now, set(exclude_endpoints), max(limit, 64)):
            load = self._load(endpoint_id, now, holder)
            mine = own.get(endpoint_id, 0)
            reserve = ahead.get(endpoint_id, prefetch)
            allowed = min(rooms.get(endpoint_id, per_endpoint + reserve), per_endpoint + reserve)
            fleet = fleet_room(
                allowed,
                reserve,
                mine,
                max(0, load.in_flight - mine),
                load.other_holders,
                per_endpoint,
                sending.get(endpoint_id),
            )
            holders[endpoint_id] = fleet.holders
            fleet_rooms.append((endpoint_id, fleet.room))
        picked = self._pick_due(fleet_rooms, limit, now)
        rows, exhausted = claim_plan(fleet_rooms, picked, limit)
        for row in rows:
            self._move(row, DeliveryState.DELIVERING)
            row.lease_until = now + lease_ms
            row.lease_holder = holder
            row.updated_at = now
        for endpoint_id in exhausted:
            # Due again at its next pending delivery; with none, only once one is made.
            left = self._pending.get(endpoint_id, {})
            next_due = min(
                (r.next_attempt_at for r in left.values() if r.next_attempt_at is not None),
                default=None,
            )
            if next_due is None:
                self._due.pop(endpoint_id, None)
            else:
                self._due[endpoint_id] = next_due
        claimed: list[ClaimedDelivery] = []
        for row in rows:
            message = self._messages[row.message_id]
            endpoint = self._endpoints.get(row.endpoint_id)
            claimed.append(
                ClaimedDelivery(
                    delivery_id=row.id,
                    message_id=row.message_id,
                    account_id=row.account_id,
                    endpoint_id=row.endpoint_id,
                    endpoint_updated_at=0 if endpoint is None else endpoint.updated_at,
                    attempt_count=row.attempt_count,
                    schedule_base=row.schedule_base,
                    event_type=message.event_type,
                    payload=message.payload,
                    message_created_at=message.created_at,
                    paced=self._paced(row.endpoint_id, now),
                    holders=holders[row.endpoint_id],
                )
            )
        return claimed

    def _ready_endpoints(self, now: int, exclude: set[str], most: int) -> list[str]:
        """Endpoints marked due by ``now`` that may be sent to (not excluded, disabled,
        deleted or paused by a 429), oldest due first, at most ``most``."""
        ready: list[str] = []
        for endpoint_id, due_at in sorted(self._due.items(), key=lambda e: (e[1], e[0])):
            if due_at > now or len(ready) >= most:
                break
            row = self._endpoints.get(endpoint_id)
            if (
                row is None
                or row.disabled
                or row.deleted
                or endpoint_id in exclude
                or self._paused(endpoint_id, now)
            ):
                continue
            ready.append(endpoint_id)
        return ready

    def _pick_due(
        self, fleet_rooms: list[tuple[str, int]], limit: int, now: int
    ) -> dict[str, list[_DeliveryRow]]:
        """Each endpoint's oldest due deliveries, oldest first, as many as ``claim_plan`` can
        take from it, for the endpoints in due order until the claim is full."""
        picked: dict[str, list[_DeliveryRow]] = {}
        taken = 0
        for endpoint_id, room in fleet_rooms:
            if taken >= limit:
                break
            room = min(room, limit - taken)
            if room <= 0:
                continue
            rows = self._due_rows(endpoint_id, now, room)
            picked[endpoint_id] = rows
            taken += len(rows)
        return picked

    def _due_rows(self, endpoint_id: str, now: int, most: int) -> list[_DeliveryRow]:
        """The endpoint's pending deliveries due by ``now``, oldest due first, at most
        ``most``. Ordered deliveries (one recipient's status reports) wait for the ones
        before them to the same endpoint (pending or in flight) to finish."""
        pending = self._pending.get(endpoint_id, {})
        first_of_key: dict[str, str] = {}
        for row in (*pending.values(), *self._in_flight.get(endpoint_id, {}).values()):
            if row.ordering_key is not None:
                first = first_of_key.get(row.ordering_key)
                if first is None or row.id < first:
                    first_of_key[row.ordering_key] = row.id
        due = [
            r
            for r in pending.values()
            if r.next_attempt_at is not None
            and r.next_attempt_at <= now
            and (r.ordering_key is None or first_of_key[r.ordering_key] == r.id)
        ]
        due.sort(key=lambda r: (r.next_attempt_at or 0, r.id))
        return due[:most]

    async def record(self, records: list[AttemptRecord]) -> None:
        self._check_open()
        settled: dict[str, AttemptRecord] = {}
        for rec in records:  # a delivery settled twice in one call: the first wins
            settled.setdefault(rec.delivery_id, rec)
        for rec in settled.values():
            row = self._deliveries.get(rec.delivery_id)
            if (
                row is not None
                and row.state is DeliveryState.DELIVERING
                and rec.state is DeliveryState.PENDING
                and rec.next_attempt_at is None
            ):
                # SQL: the due mark's NOT NULL constraint refuses the whole call.
                raise StorageError(
                    f"NOT NULL constraint failed: a pending delivery ({rec.delivery_id}) "
                    "needs next_attempt_at"
                )
        for rec in records:
            attempt = rec.attempt
            if attempt.id in self._attempts:  # a retried call must not fail on its own write
                continue
            self._attempts[attempt.id] = attempt
            owner = self._deliveries.get(attempt.delivery_id)
            if owner is not None:
                owner.attempt_ids.append(attempt.id)
        for rec in settled.values():
            row = self._deliveries.get(rec.delivery_id)
            # Only a delivery still in flight: one deleted or replayed meanwhile keeps its state.
            if row is None or row.state is not DeliveryState.DELIVERING:
                continue
            self._move(row, DeliveryState(rec.state))
            row.attempt_count = rec.attempt.attempt_number
            row.next_attempt_at = rec.next_attempt_at
            row.lease_until = None
            row.last_status_code = rec.attempt.status_code
            row.last_error = rec.attempt.error
            row.dead_reason = rec.dead_reason
            row.updated_at = rec.now
            self._mark_due(row)

    async def release(self, delivery_ids: Collection[str], due_at: int) -> None:
        self._check_open()
        for delivery_id in delivery_ids:
            row = self._deliveries.get(delivery_id)
            if row is not None and row.state is DeliveryState.DELIVERING:
                row.lease_until = None
                row.updated_at = due_at
                self._to_pending(row, due_at)

    async def pace(self, endpoint_id: str, update: Callable[[Pacing], tuple[Pacing, T]]) -> T:
        self._check_open()
        after, result = update(self._pacing.get(endpoint_id, Pacing()))
        self._pacing[endpoint_id] = after  # stored only once ``update`` has returned
        return result

    async def expire_leases(self, now: int) -> int:
        self._check_open()
        expired = [
            row
            for held in self._in_flight.values()
            for row in held.values()
            if row.lease_until is not None and row.lease_until <= now
        ]
        for row in expired:
            # Due again when it was due before it was claimed.
            row.lease_until = None
            row.updated_at = now
            self._move(row, DeliveryState.PENDING)
            self._mark_due(row)
        return len(expired)

    async def renew_leases(self, delivery_ids: Collection[str], lease_until: int) -> None:
        self._check_open()
        for delivery_id in delivery_ids:
            row = self._deliveries.get(delivery_id)
            if row is not None and row.state is DeliveryState.DELIVERING:
                row.lease_until = max(row.lease_until or 0, lease_until)

    async def next_due_at(self, exclude_endpoints: Collection[str] = ()) -> int | None:
        self._check_open()
        exclude = set(exclude_endpoints)
        soonest: int | None = None
        for endpoint_id, due_at in self._due.items():
            row = self._endpoints.get(endpoint_id)
            if row is None or row.disabled or row.deleted or endpoint_id in exclude:
                continue
            pacing = self._pacing.get(endpoint_id)
            at = max(due_at, 0 if pacing is None else pacing.paused_until_ms)
            if soonest is None or at < soonest:
                soonest = at
        return soonest

    def _replay(self, rows: Iterable[_DeliveryRow], now: int) -> list[str]:
        """Dead deliveries pending again, due now; the retry schedule restarts here."""
        replayed: list[str] = []
        for row in list(rows):
            row.dead_reason = None
            row.schedule_base = row.attempt_count
            row.updated_at = now
            self._to_pending(row, now)
            replayed.append(row.id)
        return replayed

    async def replay(
        self,
        account_id: str,
        now: int,
        *,
        delivery_id: str | None = None,
        endpoint_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> list[str]:
        self._check_open()
        if delivery_id is not None:
            one = self._deliveries.get(delivery_id)
            candidates: Iterable[_DeliveryRow] = () if one is None else (one,)
        elif endpoint_id is not None:
            candidates = self._endpoint_deliveries.get(endpoint_id, {}).values()
        else:
            candidates = self._account_deliveries.get(account_id, {}).values()
        return self._replay(
            (
                r
                for r in candidates
                if r.account_id == account_id
                and r.state is DeliveryState.DEAD
                and (endpoint_id is None or r.endpoint_id == endpoint_id)
                and (since is None or r.created_at >= since)
                and (until is None or r.created_at < until)
                and self._live_endpoint(r.endpoint_id, account_id) is not None
            ),
            now,
        )

    async def purge(self, before: int, limit: int) -> int:
        self._check_open()
        before_id = make_id("msg", before, bytes(10))
        gone: list[str] = []
        for message_id in sorted(self._messages):
            if len(gone) >= limit or message_id >= before_id:
                break
            if not any(
                self._deliveries[d].state in _LIVE
                for d in self._message_deliveries.get(message_id, ())
            ):
                gone.append(message_id)
        for message_id in gone:
            for delivery_id in self._message_deliveries.pop(message_id, ()):
                row = self._deliveries.pop(delivery_id)
                self._unindex(row)
                del self._account_deliveries[row.account_id][delivery_id]
                del self._endpoint_deliveries[row.endpoint_id][delivery_id]
                for attempt_id in row.attempt_ids:
                    self._attempts.pop(attempt_id, None)
            del self._messages[message_id]
        for key in [k for k, use in self._idempotency.items() if use.created_at < before]:
            del self._idempotency[key]
        for key in [
            k
            for k, batch in self._batches.items()
            if batch.created_at < before and batch.report_state != "waiting"
        ]:
            del self._batches[key]
            self._recipients.pop(key, None)
        return len(gone)

    async def create_event_type(self, account_id: str, definition: EventTypeDefinition) -> bool:
        self._check_open()
        defined = self._event_types.setdefault(account_id, {})
        if definition.name in defined:
            return False
        defined[definition.name] = definition
        return True

    async def event_types(self, account_id: str) -> list[EventTypeDefinition]:
        self._check_open()
        defined = self._event_types.get(account_id, {})
        return [defined[name] for name in sorted(defined)]

    async def event_type(self, account_id: str, name: str) -> EventTypeDefinition | None:
        self._check_open()
        return self._event_types.get(account_id, {}).get(name)

    def _statuses(self, key: tuple[str, str]) -> _Statuses:
        recipients = self._recipients.get(key, {})
        return {r: recipients[r] for r in sorted(recipients)}

    async def update_batch(
        self,
        account_id: str,
        batch: BatchRecord,
        recipients: list[str],
        updates: list[RecipientStatus],
    ) -> tuple[BatchRecord, _Statuses]:
        self._check_open()
        key = (account_id, batch.batch_id)
        stored = self._batches.setdefault(key, batch)
        known = self._recipients.setdefault(key, {})
        for recipient in recipients:
            known.setdefault(recipient, (None, None))
        for update in updates:
            known[update.recipient] = (update.status, update.code)
        return stored, self._statuses(key)

    async def batch_statuses(
        self, account_id: str, batch_id: str
    ) -> tuple[BatchRecord, _Statuses] | None:
        self._check_open()
        key = (account_id, batch_id)
        stored = self._batches.get(key)
        return None if stored is None else (stored, self._statuses(key))

    async def mark_batch_reported(self, account_id: str, batch_id: str) -> bool:
        self._check_open()
        key = (account_id, batch_id)
        stored = self._batches.get(key)
        if stored is None or stored.report_state != "waiting":
            return False
        self._batches[key] = msgspec.structs.replace(stored, report_state="sent")
        return True

    async def due_batch_reports(self, now: int, limit: int) -> list[tuple[str, str]]:
        self._check_open()
        due = sorted(
            (b.report_deadline, key)
            for key, b in self._batches.items()
            if b.report_state == "waiting" and b.report_deadline <= now
        )
        return [key for _, key in due[:limit]]

    async def count_by_state(self, account_id: str | None) -> dict[str, int]:
        self._check_open()
        rows = (
            self._deliveries.values()
            if account_id is None
            else self._account_deliveries.get(account_id, {}).values()
        )
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.state.value] = counts.get(row.state.value, 0) + 1
        return counts

    # -- the operator dashboard and the customer portal ------------------------------------------

    def _recent_attempts(self, since: int) -> Iterable[tuple[Attempt, _DeliveryRow]]:
        """Attempts since ``since`` (by id), each with its delivery (those without one are
        not counted, as the SQL joins drop them)."""
        floor = _attempt_floor(since)
        for attempt in self._attempts.values():
            if attempt.id >= floor:
                row = self._deliveries.get(attempt.delivery_id)
                if row is not None:
                    yield attempt, row

    async def account_activity(
        self, since: int, limit: int, account_id: str | None = None
    ) -> list[AccountActivity]:
        self._check_open()
        accounts = [
            r.account
            for r in self._accounts.values()
            if account_id is None or r.account.id == account_id
        ]
        attempts: dict[str, tuple[int, int]] = {}
        for attempt, row in self._recent_attempts(since):
            delivered, failed = attempts.get(row.account_id, (0, 0))
            ok = attempt.outcome == "delivered"
            attempts[row.account_id] = (delivered + ok, failed + (not ok))
        activity: list[AccountActivity] = []
        for account in accounts:
            backlog = dead = 0
            oldest: int | None = None
            for row in self._account_deliveries.get(account.id, {}).values():
                if row.state in _LIVE:
                    backlog += 1
                if row.state is DeliveryState.DEAD:
                    dead += 1
                if row.state is DeliveryState.PENDING and (
                    oldest is None or row.created_at < oldest
                ):
                    oldest = row.created_at
            delivered, failed = attempts.get(account.id, (0, 0))
            activity.append(
                AccountActivity(
                    account_id=account.id,
                    name=account.name,
                    backlog=backlog,
                    oldest_pending_at=oldest,
                    dead=dead,
                    delivered=delivered,
                    failed=failed,
                )
            )
        # The most work waiting or dead first.
        activity.sort(key=lambda a: (-(a.backlog + a.dead), a.account_id))
        return activity[:limit]

    async def endpoint_health(
        self, since: int, now: int, limit: int, account_id: str | None = None
    ) -> list[EndpointHealth]:
        self._check_open()
        tried: dict[str, tuple[int, int, Attempt]] = {}
        for attempt, row in self._recent_attempts(since):
            count, failures, last = tried.get(row.endpoint_id, (0, 0, attempt))
            tried[row.endpoint_id] = (
                count + 1,
                failures + (attempt.outcome != "delivered"),
                attempt if attempt.id > last.id else last,
            )
        health: list[EndpointHealth] = []
        for ep in self._endpoints.values():
            if ep.deleted or (account_id is not None and ep.account_id != account_id):
                continue
            count, failures, last_attempt = tried.get(ep.id, (0, 0, None))
            pacing = self._pacing.get(ep.id)
            health.append(
                EndpointHealth(
                    endpoint_id=ep.id,
                    account_id=ep.account_id,
                    url=ep.url,
                    disabled=ep.disabled,
                    attempts=count,
                    failures=failures,
                    last_status_code=None if last_attempt is None else last_attempt.status_code,
                    backlog=len(self._pending.get(ep.id, {})) + len(self._in_flight.get(ep.id, {})),
                    paced_rate=None if pacing is None else pacing.current_rate,
                    paused_until=(
                        pacing.paused_until_ms
                        if pacing is not None and pacing.paused_until_ms > now
                        else None
                    ),
                )
            )
        # The most failing first.
        health.sort(key=lambda h: (-h.failures, -h.disabled, -h.backlog, h.endpoint_id))
        return health[:limit]

    async def live_totals(self, since: int) -> LiveTotals:
        self._check_open()
        floor = _attempt_floor(since)
        delivered = failed = 0
        for attempt in self._attempts.values():
            if attempt.id >= floor:
                if attempt.outcome == "delivered":
                    delivered += 1
                else:
                    failed += 1
        return LiveTotals(
            pending=sum(len(p) for p in self._pending.values()),
            delivering=sum(len(f) for f in self._in_flight.values()),
            delivered=delivered,
            failed=failed,
        )

    async def dead_letters(
        self, *, before: str | None, limit: int, account_id: str | None = None
    ) -> list[Delivery]:
        self._check_open()
        rows = (
            self._deliveries.values()
            if account_id is None
            else self._account_deliveries.get(account_id, {}).values()
        )
        found: list[Delivery] = []
        for row in reversed(rows):
            if len(found) >= limit:
                break
            if row.state is DeliveryState.DEAD and (before is None or row.id < before):
                found.append(row.delivery())
        return found

    async def endpoint_activity(
        self, endpoint_id: str, since: int, bucket_ms: int
    ) -> list[ActivityPoint]:
        self._check_open()
        floor = _attempt_floor(since)
        buckets: dict[int, tuple[int, int]] = {}
        for row in self._endpoint_deliveries.get(endpoint_id, {}).values():
            for attempt_id in row.attempt_ids:
                if attempt_id < floor:
                    continue
                attempt = self._attempts[attempt_id]
                bucket = attempt.started_at // bucket_ms
                count, failures = buckets.get(bucket, (0, 0))
                buckets[bucket] = (count + 1, failures + (attempt.outcome != "delivered"))
        return [
            ActivityPoint(bucket_start=b * bucket_ms, attempts=c, failures=f)
            for b, (c, f) in sorted(buckets.items())
        ]

    # -- operations (endpoint health, auto-disable, backlog, readiness) ------------------------

    async def backlog(self, now: int) -> Backlog:
        self._check_open()
        pending = [r for p in self._pending.values() for r in p.values()]
        due_times = [r.next_attempt_at for r in pending if r.next_attempt_at is not None]
        dead = sum(1 for r in self._deliveries.values() if r.state is DeliveryState.DEAD)
        return backlog_from_row(
            (
                len(pending),
                sum(1 for t in due_times if t <= now),
                sum(len(f) for f in self._in_flight.values()),
                dead,
                min((r.created_at for r in pending), default=None),
                min(due_times, default=None),
            ),
            now,
        )

    async def busiest_endpoints(self, now: int, limit: int) -> list[EndpointBacklog]:
        self._check_open()
        busiest = sorted(
            (
                EndpointBacklog(
                    endpoint_id=endpoint_id,
                    pending=len(rows),
                    due=sum(
                        1
                        for r in rows.values()
                        if r.next_attempt_at is not None and r.next_attempt_at <= now
                    ),
                    oldest_pending_created_at=min(r.created_at for r in rows.values()),
                )
                for endpoint_id, rows in self._pending.items()
                if rows
            ),
            key=lambda b: (-b.pending, b.endpoint_id),
        )
        return busiest[:limit]

    async def failing_endpoints(self, limit: int) -> list[tuple[str, int]]:
        self._check_open()
        failing = sorted(
            ((h.endpoint_id, h.consecutive_failures) for h in self._health.values()),
            key=lambda f: (-f[1], f[0]),
        )
        return [f for f in failing if f[1] > 0][:limit]

    async def endpoint_backlog(self, endpoint_ids: Collection[str], now: int) -> dict[str, Backlog]:
        self._check_open()
        # Rows as the SQL adapters' endpoint_backlog query returns them, for the same helper.
        rows: list[tuple[str, str, int, int, int | None, int | None]] = []
        for endpoint_id in dict.fromkeys(endpoint_ids):
            by_state: dict[DeliveryState, list[_DeliveryRow]] = {
                DeliveryState.PENDING: list(self._pending.get(endpoint_id, {}).values()),
                DeliveryState.DELIVERING: list(self._in_flight.get(endpoint_id, {}).values()),
                DeliveryState.DEAD: [
                    r
                    for r in self._endpoint_deliveries.get(endpoint_id, {}).values()
                    if r.state is DeliveryState.DEAD
                ],
            }
            for state, found in by_state.items():
                if not found:
                    continue
                times = [r.next_attempt_at for r in found if r.next_attempt_at is not None]
                rows.append(
                    (
                        endpoint_id,
                        state.value,
                        len(found),
                        sum(1 for t in times if t <= now),
                        min(r.created_at for r in found),
                        min(times, default=None),
                    )
                )
        return backlog_from_rows(rows)

    async def health_states(self, endpoint_ids: Collection[str]) -> dict[str, HealthState]:
        self._check_open()
        return {e: self._health[e] for e in sorted(set(endpoint_ids)) if e in self._health}

    async def update_health(
        self,
        endpoint_ids: Collection[str],
        update: Callable[[HealthState], tuple[HealthState, T]],
    ) -> dict[str, T]:
        self._check_open()
        rows = {
            e: self._health.get(e, HealthState(endpoint_id=e)) for e in sorted(set(endpoint_ids))
        }
        results: dict[str, T] = {}
        changed: list[HealthState] = []
        for endpoint_id, before in rows.items():
            after, results[endpoint_id] = update(before)
            if after != before:
                changed.append(after)
        # Stored only once every update has returned: one that raises changes nothing.
        for endpoint_id, before in rows.items():
            self._health.setdefault(endpoint_id, before)
        for after in changed:
            if after.endpoint_id in self._health:
                # Through the SQL adapters' row form, so what is kept reads back as there.
                self._health[after.endpoint_id] = health_from_row(health_row(after))
        return results

    async def disable_endpoint(self, endpoint_id: str, reason: str, now: int) -> str | None:
        self._check_open()
        row = self._endpoints.get(endpoint_id)
        if row is None or row.disabled or row.deleted:
            return None
        row.disabled = True
        row.updated_at = now
        # Its waiting deliveries are held as dead (kept until retention, replayable).
        for delivery in list(self._pending.get(endpoint_id, {}).values()):
            self._move(delivery, DeliveryState.DEAD)
            delivery.dead_reason = f"endpoint disabled: {reason}"
            delivery.next_attempt_at = None
            delivery.updated_at = now
        return row.account_id

    async def account_disable_after(self, account_id: str) -> int | None:
        self._check_open()
        row = self._accounts.get(account_id)
        return None if row is None else row.disable_after_s

    async def set_account_disable_after(self, account_id: str, seconds: int | None) -> bool:
        self._check_open()
        row = self._accounts.get(account_id)
        if row is None:
            return False
        row.disable_after_s = seconds
        return True

    async def replay_dead_since(self, endpoint_id: str, dead_since: int, now: int) -> list[str]:
        self._check_open()
        return self._replay(
            (
                r
                for r in self._endpoint_deliveries.get(endpoint_id, {}).values()
                if r.state is DeliveryState.DEAD and r.updated_at >= dead_since
            ),
            now,
        )

    async def probe(self, now: int) -> None:
        self._check_open()
        self._probed_at = now
