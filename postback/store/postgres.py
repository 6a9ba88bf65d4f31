"""PostgreSQL adapter (asyncpg): many API nodes and workers on many machines share one database.

Work is claimed with ``FOR UPDATE SKIP LOCKED`` under a lease, so concurrent workers take
disjoint batches without blocking each other, and a worker that dies loses its lease. New
work is announced with ``NOTIFY postback_work`` inside the storing transaction, so idle
workers wake as soon as it commits. Connection failures surface as StorageUnavailable, which
callers treat as "wait and retry" (the API answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec

from postback.core.fanout import (
    delivery_targets,
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
from postback.store.base import StorageError, StorageFull, StorageUnavailable
from postback.store.migrations import pending_migrations
from postback.store.queries import load_queries, migration_files, to_positional
from postback.store.rows import (
    LeasePlan,
    account_activity_from_row,
    account_from_row,
    activity_point_from_row,
    api_key_from_row,
    api_key_params,
    attempt_from_row,
    backlog_from_row,
    backlog_from_rows,
    batch_from_row,
    delivery_filter,
    delivery_from_row,
    endpoint_from_row,
    endpoint_health_from_row,
    endpoint_params,
    event_type_from_row,
    health_from_row,
    health_params,
    pacing_from_row,
    pacing_params,
    secret_from_row,
    secret_params,
)
from postback.store.sealing import Sealer

log = logging.getLogger("postback.store.postgres")
T = TypeVar("T")
_DELIVERY_IDS = MonotonicIds("dlv")  # ordered deliveries rely on id order

_Q = load_queries("postgres")
NOTIFY_CHANNEL = "postback_work"
_MIGRATION_LOCK = 0x706F73746261636B  # "postback": one migrator at a time across the fleet
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a protocol left mid-operation by a dropped connection
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
    TimeoutError,
)


@contextlib.contextmanager
def _translated() -> Any:
    """Driver exceptions become the project's own at this seam."""
    try:
        yield
    except asyncpg.DiskFullError as exc:  # 53100: "could not extend file ..."
        raise StorageFull(f"PostgreSQL disk is full: {exc}") from exc
    except _UNAVAILABLE as exc:
        raise StorageUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise StorageError(f"PostgreSQL error: {exc}") from exc


def _bind(name: str, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    sql, names = to_positional(_Q[name])
    return sql, [params[n] for n in names]


def _bind_sql(sql: str, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    positional, names = to_positional(sql)
    return positional, [params[n] for n in names]


async def _close_quietly(conn: asyncpg.Connection) -> None:
    """Close a connection that may already be broken: its error is no news."""
    try:
        await conn.close()
    except Exception:
        log.debug("closing a LISTEN connection failed", exc_info=True)


class PostgresStorage:
    """``Storage`` on PostgreSQL. ``schema`` isolates one Postback (or one test) per schema."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        pool_size: int = 10,
        sealer: Sealer | None = None,
    ) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise StorageError(f"schema name must match {_SCHEMA_NAME.pattern}, got {schema!r}")
        self.dsn = dsn
        self.sealer = sealer or Sealer.ephemeral()
        self.schema = schema
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._listen_task: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, sealer: Sealer | None = None) -> PostgresStorage:
        """``postgresql://user@host:5432/db?schema=name&pool_size=10`` (other params to libpq)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", "public")
        pool_raw = query.pop("pool_size", "10")
        if not pool_raw.isdigit() or not 1 <= int(pool_raw) <= 1000:
            raise StorageError(f"pool_size must be from 1 to 1000, got {pool_raw!r}")
        scheme = "postgresql" if parts.scheme in ("postgres", "postgresql") else parts.scheme
        dsn = urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), ""))
        return cls(dsn, schema=schema, pool_size=int(pool_raw), sealer=sealer)

    # -- plumbing ---------------------------------------------------------------------------

    async def open(self, *, migrate: bool = True) -> None:
        with _translated():
            conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                await self._migrate(conn, migrate)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,  # no floor to restore (and log about) while the server is down
                max_size=self.pool_size,
                # A startup setting, not SET: the pool's RESET ALL on release keeps it.
                server_settings={"search_path": self.schema},
                timeout=10,
                command_timeout=60,
            )

    async def _migrate(self, conn: asyncpg.Connection, migrate: bool) -> None:
        async with conn.transaction():
            sql, args = _bind("migration_lock", {"key": _MIGRATION_LOCK})
            await conn.execute(sql, *args)
            if migrate:  # only `migrate` changes anything; a check leaves no trace
                # The schema name matched _SCHEMA_NAME when the storage was made.
                await conn.execute(_Q["create_schema"].format(schema=self.schema))
            await conn.execute(_Q["use_schema"].format(schema=self.schema))
            if migrate:
                await conn.execute(_Q["migrations_table"])
            sql, args = _bind(
                "migrations_table_exists", {"name": f"{self.schema}.schema_migrations"}
            )
            exists = await conn.fetchval(sql, *args)
            applied = (
                {r[0] for r in await conn.fetch(_Q["migrations_applied"])} if exists else set()
            )
            known = migration_files("postgres")
            pending = pending_migrations(
                applied, known, migrate=migrate, database=f"database schema {self.schema}"
            )
            for version in pending:
                await conn.execute(known[version])
                sql, args = _bind("migration_applied", {"version": version})
                await conn.execute(sql, *args)

    async def close(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            # Its end (cancelled) is no error at close; gathered, not awaited inside an
            # exception handler (see postback/native.py).
            await asyncio.gather(self._listen_task, return_exceptions=True)
            self._listen_task = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StorageError("storage is not open")
        with _translated():
            async with self._pool.acquire(timeout=10) as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._conn() as conn, conn.transaction():
            yield conn

    async def _fetch(self, name: str, params: Mapping[str, Any]) -> list[asyncpg.Record]:
        sql, args = _bind(name, params)
        async with self._conn() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

    async def _execute(self, name: str, params: Mapping[str, Any]) -> str:
        sql, args = _bind(name, params)
        async with self._conn() as conn:
            status: str = await conn.execute(sql, *args)
            return status

    def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever another process commits new due work (LISTEN/NOTIFY)."""
        if self._listen_task is None:
            self._listen_task = asyncio.create_task(self._listen(wake), name="postback-listen")

    async def _listen(self, wake: Callable[[], None]) -> None:
        backoff = 0.2
        while True:
            closed = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=10)
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1f s", exc, backoff)
            if conn is None:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            try:
                conn.add_termination_listener(lambda _c, done=closed: done.set())
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: wake())
                wake()  # anything committed while we were not listening
                await closed.wait()
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                log.warning("LISTEN connection lost (%s)", exc)
            finally:
                await _close_quietly(conn)

    # -- accounts -----------------------------------------------------------------------------

    async def create_account(
        self, account: Account, key: ApiKey | None = None, key_hash: str | None = None
    ) -> bool:
        async with self._tx() as conn:
            sql, args = _bind("insert_account", msgspec.structs.asdict(account))
            if await conn.execute(sql, *args) == "INSERT 0 0":
                return False
            if key is not None and key_hash is not None:
                sql, args = _bind("insert_api_key", api_key_params(key, key_hash))
                await conn.execute(sql, *args)
            return True

    async def account(self, ref: str) -> Account | None:
        rows = await self._fetch("account_by_ref", {"ref": ref})
        return account_from_row(rows[0]) if rows else None

    async def list_accounts(
        self, *, query: str | None, after: str | None, limit: int
    ) -> list[Account]:
        rows = await self._fetch("list_accounts", {"q": query, "after": after, "limit": limit})
        return [account_from_row(r) for r in rows]

    async def create_api_key(self, key: ApiKey, key_hash: str) -> None:
        await self._execute("insert_api_key", api_key_params(key, key_hash))

    async def live_key(self, key_hash: str, now: int) -> tuple[ApiKey, Account | None] | None:
        rows = await self._fetch("live_key_for_hash", {"key_hash": key_hash, "now": now})
        if not rows:
            return None
        row = rows[0]
        return api_key_from_row(row), None if row[7] is None else account_from_row(row, 7)

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        rows = await self._fetch("get_api_key", {"id": key_id})
        return api_key_from_row(rows[0]) if rows else None

    async def list_api_keys(
        self, account_id: str | None, *, after: str | None, limit: int
    ) -> list[ApiKey]:
        rows = await self._fetch(
            "list_api_keys", {"account_id": account_id, "after": after, "limit": limit}
        )
        return [api_key_from_row(r) for r in rows]

    async def revoke_api_key(self, key_id: str, at: int) -> bool:
        return await self._execute("revoke_api_key", {"id": key_id, "at": at}) != "UPDATE 0"

    async def rotate_api_key(
        self, key_id: str, new: ApiKey, new_hash: str, old_revoked_at: int
    ) -> bool:
        async with self._tx() as conn:
            sql, args = _bind("revoke_api_key", {"id": key_id, "at": old_revoked_at})
            if await conn.execute(sql, *args) == "UPDATE 0":
                return False
            sql, args = _bind("insert_api_key", api_key_params(new, new_hash))
            await conn.execute(sql, *args)
            return True

    # -- endpoints ----------------------------------------------------------------------------

    @staticmethod
    async def _replace_event_types(conn: asyncpg.Connection, endpoint: Endpoint) -> None:
        params = {"endpoint_id": endpoint.id, "event_types": list(endpoint.event_types or ())}
        for name in ("delete_event_types", "insert_event_types"):
            sql, args = _bind(name, params)
            await conn.execute(sql, *args)

    async def _insert_secret(
        self, conn: asyncpg.Connection, endpoint_id: str, secret: SigningSecret
    ) -> None:
        sql, args = _bind("insert_secret", secret_params(endpoint_id, secret, self.sealer))
        await conn.execute(sql, *args)

    async def create_endpoint(self, endpoint: Endpoint, secret: SigningSecret) -> None:
        async with self._tx() as conn:
            sql, args = _bind("insert_endpoint", endpoint_params(endpoint, self.sealer))
            await conn.execute(sql, *args)
            await self._replace_event_types(conn, endpoint)
            await self._insert_secret(conn, endpoint.id, secret)

    async def get_endpoint(self, account_id: str | None, endpoint_id: str) -> Endpoint | None:
        sql = _Q["endpoint_columns"] + "\n" + _Q["endpoint_by_id"]
        params: dict[str, Any] = {"id": endpoint_id, "account_id": account_id}
        positional, args = _bind_sql(sql, params)
        async with self._conn() as conn:
            row = await conn.fetchrow(positional, *args)
        return None if row is None else endpoint_from_row(row, self.sealer)

    async def list_endpoints(
        self, account_id: str, *, after: str | None, limit: int
    ) -> list[Endpoint]:
        sql = _Q["endpoint_columns"] + "\n" + _Q["endpoints_page"]
        positional, args = _bind_sql(
            sql, {"account_id": account_id, "after": after or "", "limit": limit}
        )
        async with self._conn() as conn:
            return [endpoint_from_row(r, self.sealer) for r in await conn.fetch(positional, *args)]

    async def update_endpoint(self, endpoint: Endpoint) -> bool:
        params = endpoint_params(endpoint, self.sealer)
        async with self._tx() as conn:
            sql, args = _bind("update_endpoint", params)
            changed: bool = await conn.execute(sql, *args) == "UPDATE 1"
            if changed:
                await self._replace_event_types(conn, endpoint)
            return changed

    async def delete_endpoint(self, account_id: str, endpoint_id: str, now: int) -> bool:
        async with self._tx() as conn:
            sql, args = _bind(
                "delete_endpoint", {"id": endpoint_id, "account_id": account_id, "now": now}
            )
            if await conn.execute(sql, *args) != "UPDATE 1":
                return False
            sql, args = _bind("kill_endpoint_deliveries", {"endpoint_id": endpoint_id, "now": now})
            await conn.execute(sql, *args)
            return True

    async def callback_endpoint(
        self, account_id: str, url: str, template: Endpoint, secret: SigningSecret
    ) -> Endpoint:
        async with self._tx() as conn:
            sql, args = _bind("insert_callback_endpoint", endpoint_params(template, self.sealer))
            created = await conn.fetchval(sql, *args)
            if created is not None:
                await self._insert_secret(conn, template.id, secret)
        endpoint_id = created
        if endpoint_id is None:
            rows = await self._fetch("callback_endpoint", {"account_id": account_id, "url": url})
            if not rows:
                raise StorageError(f"callback endpoint for {url} vanished")
            endpoint_id = rows[0][0]
        endpoint = await self.get_endpoint(account_id, endpoint_id)
        if endpoint is None:
            raise StorageError(f"callback endpoint for {url} vanished")
        return endpoint

    async def signing_secrets(self, endpoint_id: str, now: int) -> list[SigningSecret]:
        rows = await self._fetch("active_secrets", {"endpoint_id": endpoint_id, "now": now})
        return [secret_from_row(endpoint_id, r, self.sealer) for r in rows]

    async def rotate_secret(
        self, account_id: str, endpoint_id: str, new: SigningSecret, old_expires_at: int
    ) -> bool:
        async with self._tx() as conn:
            sql, args = _bind("endpoint_owner", {"id": endpoint_id, "account_id": account_id})
            if await conn.fetchrow(sql, *args) is None:
                return False
            sql, args = _bind(
                "expire_current_secret", {"endpoint_id": endpoint_id, "expires_at": old_expires_at}
            )
            await conn.execute(sql, *args)
            await self._insert_secret(conn, endpoint_id, new)
            sql, args = _bind("bump_endpoint_version", {"id": endpoint_id, "now": new.created_at})
            await conn.execute(sql, *args)
            return True

    # -- messages -----------------------------------------------------------------------------

    async def ingest(
        self,
        account_id: str,
        messages: list[NewMessage],
        now: int,
        idempotency_window_ms: int,
        *,
        lease: LeaseOffer | None = None,
    ) -> list[IngestResult]:
        # Read before the transaction (each statement reads its own snapshot either way), so
        # the transaction holds no lock while it waits for this answer.
        event_types = sorted({m.event_type for m in messages})
        subscribed: dict[str, list[str]] = {t: [] for t in event_types}
        for event_type, endpoint_id in await self._fetch(
            "subscribed_endpoints", {"account_id": account_id, "event_types": event_types}
        ):
            subscribed[event_type].append(endpoint_id)
        if lease is None and all(m.idempotency_key is None for m in messages):
            # Nothing to check first and no advisory locks to hold: one statement is atomic.
            async with self._conn() as conn:
                return await self._insert_fresh(conn, account_id, messages, now, None, subscribed)
        async with self._tx() as conn:
            results: list[IngestResult | None] = []
            fresh: list[NewMessage] = []
            for index, message in enumerate(messages):
                if message.idempotency_key is None:
                    fresh.append(message)
                    results.append(None)
                    continue
                # The window rule (core.fanout.idempotency_hit) is applied by the statement,
                # so that concurrent submitters of one key serialize on its row.
                sql, args = _bind(
                    "claim_idempotency_key",
                    {
                        "account_id": account_id,
                        "key": message.idempotency_key,
                        "message_id": message.id,
                        "now": now,
                        "expired_before": now - idempotency_window_ms,
                        "fingerprint": message.fingerprint,
                    },
                )
                if await conn.fetchval(sql, *args) is not None:
                    fresh.append(message)
                    results.append(None)
                    continue
                sql, args = _bind(
                    "find_idempotency_key",
                    {"account_id": account_id, "key": message.idempotency_key},
                )
                original, stored = await conn.fetchrow(sql, *args)
                # Raising rolls the whole transaction back: the batch is all or nothing.
                check_reuse(message.idempotency_key, stored, message.fingerprint, index)
                sql, args = _bind("deliveries_of_message", {"id": original})
                deliveries = [delivery_from_row(r) for r in await conn.fetch(sql, *args)]
                results.append(
                    IngestResult(message_id=original, deliveries=deliveries, duplicate=True)
                )
            created = await self._insert_fresh(conn, account_id, fresh, now, lease, subscribed)
        created_iter = iter(created)
        return [r if r is not None else next(created_iter) for r in results]

    async def _insert_fresh(
        self,
        conn: asyncpg.Connection,
        account_id: str,
        messages: list[NewMessage],
        now: int,
        lease: LeaseOffer | None,
        subscribed: Mapping[str, list[str]],
    ) -> list[IngestResult]:
        """Insert new messages and their deliveries (and wake idle dispatchers) in one
        statement, leasing what ``lease`` has room for to the local dispatcher."""
        if not messages:
            return []

        def next_id() -> str:
            return _DELIVERY_IDS.next_from(now, os.urandom)

        fresh = [
            (
                message,
                new_deliveries(
                    account_id,
                    message,
                    delivery_targets(message, subscribed[message.event_type]),
                    now,
                    next_id,
                ),
            )
            for message in messages
        ]
        plan = await self._lease_plan(conn, fresh, lease, now)
        columns: dict[str, list[Any]] = {
            "ids": [],
            "message_ids": [],
            "endpoint_ids": [],
            "event_types": [],
            "ordering_keys": [],
            "states": [],
            "lease_untils": [],
        }
        results = []
        for message, deliveries in fresh:
            leased = []
            shown = []
            for delivery in deliveries:
                claimed = plan.take(message, delivery)
                columns["ids"].append(delivery.id)
                columns["message_ids"].append(message.id)
                columns["endpoint_ids"].append(delivery.endpoint_id)
                columns["event_types"].append(message.event_type)
                columns["ordering_keys"].append(message.ordering_key)
                columns["states"].append("pending" if claimed is None else "delivering")
                columns["lease_untils"].append(None if claimed is None else plan.lease_until)
                if claimed is not None:
                    leased.append(claimed)
                    delivery = msgspec.structs.replace(delivery, state=DeliveryState.DELIVERING)
                shown.append(delivery)
            results.append(IngestResult(message_id=message.id, deliveries=shown, leased=leased))
        sql, args = _bind(
            "insert_messages_and_deliveries",
            {
                "account_id": account_id,
                "now": now,
                "holder": plan.holder,
                "message_rows": [m.id for m in messages],
                "message_event_types": [m.event_type for m in messages],
                "payloads": [m.payload for m in messages],
                "keys": [m.idempotency_key for m in messages],
                **columns,
            },
        )
        await conn.execute(sql, *args)
        return results

    @staticmethod
    async def _lease_plan(
        conn: asyncpg.Connection,
        fresh: list[tuple[NewMessage, list[Delivery]]],
        lease: LeaseOffer | None,
        now: int,
    ) -> LeasePlan:
        if lease is None:
            return LeasePlan.none()
        wanted = LeasePlan.wanted(fresh, lease)
        if not wanted:
            return LeasePlan.none()
        sql, args = _bind(
            "endpoint_loads", {"ids": sorted(wanted), "now": now, "holder": lease.holder}
        )
        return LeasePlan.of(lease, wanted, await conn.fetch(sql, *args), now)

    async def get_message(self, account_id: str, message_id: str) -> Message | None:
        rows = await self._fetch("get_message", {"id": message_id, "account_id": account_id})
        if not rows:
            return None
        row = rows[0]
        return Message(
            id=row[0],
            account_id=row[1],
            event_type=row[2],
            payload=bytes(row[3]),
            idempotency_key=row[4],
            created_at=row[5],
        )

    async def get_delivery(self, account_id: str, delivery_id: str) -> Delivery | None:
        sql, args = _bind_sql(
            _Q["delivery_columns"] + "\n" + _Q["delivery_by_id"],
            {"id": delivery_id, "account_id": account_id},
        )
        async with self._conn() as conn:
            row = await conn.fetchrow(sql, *args)
        return None if row is None else delivery_from_row(row)

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
        clause, params = delivery_filter(
            account_id,
            message_id=message_id,
            state=state,
            endpoint_id=endpoint_id,
            since=since,
            until=until,
            after=after,
            limit=limit,
            event_type=event_type,
            batch_id=batch_id,
            recipient=recipient,
            idempotency_key=idempotency_key,
            idempotency_condition=_Q["delivery_by_idempotency_key"],
        )
        sql = _Q["delivery_columns"] + clause
        positional, args = _bind_sql(sql, params)
        async with self._conn() as conn:
            return [delivery_from_row(r) for r in await conn.fetch(positional, *args)]

    async def list_attempts(
        self, account_id: str, delivery_id: str, *, after: str | None, limit: int
    ) -> list[Attempt]:
        rows = await self._fetch(
            "attempts_for_delivery",
            {
                "account_id": account_id,
                "delivery_id": delivery_id,
                "after": after or "",
                "limit": limit,
            },
        )
        return [attempt_from_row(r) for r in rows]

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
        rooms = dict(allowance or {})
        own = dict(own_in_flight or {})
        sending = dict(own_sending or {})
        ahead = dict(reserves or {})
        rows = await self._fetch(
            "claim",
            {
                "now": now,
                "lease_until": now + lease_ms,
                "limit": limit,
                "endpoints": max(limit, 64),
                "holder": holder,
                "share": per_endpoint,
                "exclude": list(exclude_endpoints),
                "room_ids": list(rooms),
                "rooms": list(rooms.values()),
                "own_ids": list(own),
                "owns": list(own.values()),
                # Of each own count, what is still sent or ready (fleet_room's ``sending``).
                "sendings": [min(sending.get(e, n), n) for e, n in own.items()],
                "reserve_ids": list(ahead),
                "reserves": list(ahead.values()),
                "default_reserve": prefetch,
            },
        )
        return [
            ClaimedDelivery(
                delivery_id=r[0],
                message_id=r[1],
                account_id=r[2],
                endpoint_id=r[3],
                attempt_count=r[4],
                schedule_base=r[5],
                event_type=r[6],
                payload=bytes(r[7]),
                message_created_at=r[8],
                endpoint_updated_at=r[9],
                paced=r[10],
                holders=r[11],
            )
            for r in rows
        ]

    async def record(self, records: list[AttemptRecord]) -> None:
        if not records:
            return
        attempts = [r.attempt for r in records]
        await self._execute(
            "record_attempts",
            {
                "ids": [a.id for a in attempts],
                "delivery_ids": [r.delivery_id for r in records],
                "attempt_numbers": [a.attempt_number for a in attempts],
                "started_ats": [a.started_at for a in attempts],
                "durations": [a.duration_ms for a in attempts],
                "outcomes": [a.outcome for a in attempts],
                "status_codes": [a.status_code for a in attempts],
                "errors": [a.error for a in attempts],
                "bodies": [a.response_body for a in attempts],
                "states": [r.state.value for r in records],
                "next_attempt_ats": [r.next_attempt_at for r in records],
                "dead_reasons": [r.dead_reason for r in records],
                "nows": [r.now for r in records],
            },
        )

    async def release(self, delivery_ids: Collection[str], due_at: int) -> None:
        async with self._tx() as conn:
            sql, args = _bind("release", {"ids": list(delivery_ids), "due_at": due_at})
            await conn.execute(sql, *args)
            await conn.execute(_Q["notify_work"])

    async def pace(self, endpoint_id: str, update: Callable[[Pacing], tuple[Pacing, T]]) -> T:
        key = {"endpoint_id": endpoint_id}
        async with self._tx() as conn:
            sql, args = _bind("ensure_pacing", key)
            await conn.execute(sql, *args)
            sql, args = _bind("get_pacing", key)  # FOR UPDATE: workers take turns
            before = pacing_from_row(await conn.fetchrow(sql, *args))
            after, result = update(before)
            if after != before:
                sql, args = _bind("set_pacing", {**key, **pacing_params(after)})
                await conn.execute(sql, *args)
            return result

    async def expire_leases(self, now: int) -> int:
        status = await self._execute("expire_leases", {"now": now})
        return int(status.split()[-1])

    async def renew_leases(self, delivery_ids: Collection[str], lease_until: int) -> None:
        await self._execute("renew_leases", {"ids": list(delivery_ids), "lease_until": lease_until})

    async def next_due_at(self, exclude_endpoints: Collection[str] = ()) -> int | None:
        rows = await self._fetch("next_due_at", {"exclude": list(exclude_endpoints)})
        return None if not rows else rows[0][0]

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
        params = {
            "account_id": account_id,
            "now": now,
            "delivery_id": delivery_id,
            "endpoint_id": endpoint_id,
            "since": since,
            "until": until,
        }
        async with self._tx() as conn:
            sql, args = _bind("replay", params)
            ids = [r[0] for r in await conn.fetch(sql, *args)]
            if ids:
                await conn.execute(_Q["notify_work"])
        return ids

    async def purge(self, before: int, limit: int) -> int:
        before_id = make_id("msg", before, bytes(10))
        async with self._tx() as conn:
            sql, args = _bind("purge_messages", {"before_id": before_id, "limit": limit})
            ids = [r[0] for r in await conn.fetch(sql, *args)]
            deleted = 0
            if ids:
                for name in ("purge_attempts", "purge_deliveries"):
                    sql, args = _bind(name, {"ids": ids})
                    await conn.execute(sql, *args)
                sql, args = _bind("purge_message_rows", {"ids": ids})
                status: str = await conn.execute(sql, *args)
                deleted = int(status.split()[-1])
            for name in ("purge_idempotency_keys", "purge_batch_recipients", "purge_batches"):
                sql, args = _bind(name, {"before": before})
                await conn.execute(sql, *args)
            return deleted

    async def create_event_type(self, account_id: str, definition: EventTypeDefinition) -> bool:
        status = await self._execute(
            "insert_event_type_definition",
            {"account_id": account_id, **msgspec.structs.asdict(definition)},
        )
        return status == "INSERT 0 1"

    async def event_types(self, account_id: str) -> list[EventTypeDefinition]:
        rows = await self._fetch("event_type_definitions", {"account_id": account_id})
        return [event_type_from_row(r) for r in rows]

    async def event_type(self, account_id: str, name: str) -> EventTypeDefinition | None:
        rows = await self._fetch("event_type_definition", {"account_id": account_id, "name": name})
        return event_type_from_row(rows[0]) if rows else None

    async def update_batch(
        self,
        account_id: str,
        batch: BatchRecord,
        recipients: list[str],
        updates: list[RecipientStatus],
    ) -> tuple[BatchRecord, dict[str, tuple[str | None, int | None]]]:
        key = {"account_id": account_id, "batch_id": batch.batch_id}
        async with self._tx() as conn:
            sql, args = _bind(
                "insert_batch", {"account_id": account_id, **msgspec.structs.asdict(batch)}
            )
            await conn.execute(sql, *args)
            sql, args = _bind("get_batch", key)
            # Lock the batch: concurrent updates of one batch apply one after the other.
            stored = batch_from_row(await conn.fetchrow(sql + " FOR UPDATE", *args))
            if recipients:
                sql, _names = to_positional(_Q["add_batch_recipient"])
                await conn.executemany(sql, [(account_id, batch.batch_id, r) for r in recipients])
            for update in updates:
                sql, args = _bind("set_recipient_status", {**key, **msgspec.structs.asdict(update)})
                await conn.execute(sql, *args)
            sql, args = _bind("batch_recipient_statuses", key)
            rows = await conn.fetch(sql, *args)
        return stored, {r[0]: (r[1], r[2]) for r in rows}

    async def batch_statuses(
        self, account_id: str, batch_id: str
    ) -> tuple[BatchRecord, dict[str, tuple[str | None, int | None]]] | None:
        key = {"account_id": account_id, "batch_id": batch_id}
        rows = await self._fetch("get_batch", key)
        if not rows:
            return None
        statuses = await self._fetch("batch_recipient_statuses", key)
        return batch_from_row(rows[0]), {r[0]: (r[1], r[2]) for r in statuses}

    async def mark_batch_reported(self, account_id: str, batch_id: str) -> bool:
        status = await self._execute(
            "mark_batch_reported", {"account_id": account_id, "batch_id": batch_id}
        )
        return status == "UPDATE 1"

    async def due_batch_reports(self, now: int, limit: int) -> list[tuple[str, str]]:
        rows = await self._fetch("due_batch_reports", {"now": now, "limit": limit})
        return [(r[0], r[1]) for r in rows]

    async def count_by_state(self, account_id: str | None) -> dict[str, int]:
        rows = await self._fetch("count_by_state", {"account_id": account_id})
        return {r[0]: r[1] for r in rows}

    # -- the operator dashboard and the customer portal ------------------------------------------

    async def account_activity(
        self, since: int, limit: int, account_id: str | None = None
    ) -> list[AccountActivity]:
        rows = await self._fetch(
            "account_activity",
            {
                "since_id": make_id("att", since, bytes(10)),
                "limit": limit,
                "account_id": account_id,
            },
        )
        return [account_activity_from_row(r) for r in rows]

    async def endpoint_health(
        self, since: int, now: int, limit: int, account_id: str | None = None
    ) -> list[EndpointHealth]:
        rows = await self._fetch(
            "endpoint_health",
            {
                "since_id": make_id("att", since, bytes(10)),
                "now": now,
                "limit": limit,
                "account_id": account_id,
            },
        )
        return [endpoint_health_from_row(r) for r in rows]

    async def live_totals(self, since: int) -> LiveTotals:
        [row] = await self._fetch("live_totals", {"since_id": make_id("att", since, bytes(10))})
        return LiveTotals(pending=row[0], delivering=row[1], delivered=row[2], failed=row[3])

    async def dead_letters(
        self, *, before: str | None, limit: int, account_id: str | None = None
    ) -> list[Delivery]:
        rows = await self._fetch(
            "dead_letters", {"before": before, "limit": limit, "account_id": account_id}
        )
        return [delivery_from_row(r) for r in rows]

    async def endpoint_activity(
        self, endpoint_id: str, since: int, bucket_ms: int
    ) -> list[ActivityPoint]:
        rows = await self._fetch(
            "endpoint_activity",
            {
                "endpoint_id": endpoint_id,
                "since_id": make_id("att", since, bytes(10)),
                "bucket_ms": bucket_ms,
            },
        )
        return [activity_point_from_row(r, bucket_ms) for r in rows]

    # -- operations (endpoint health, auto-disable, backlog, readiness) ------------------------

    async def backlog(self, now: int) -> Backlog:
        rows = await self._fetch("backlog", {"now": now})
        return backlog_from_row(tuple(rows[0]), now)

    async def busiest_endpoints(self, now: int, limit: int) -> list[EndpointBacklog]:
        rows = await self._fetch("busiest_endpoints", {"now": now, "limit": limit})
        return [
            EndpointBacklog(
                endpoint_id=r[0], pending=r[1], due=int(r[2] or 0), oldest_pending_created_at=r[3]
            )
            for r in rows
        ]

    async def failing_endpoints(self, limit: int) -> list[tuple[str, int]]:
        rows = await self._fetch("failing_endpoints", {"limit": limit})
        return [(r[0], r[1]) for r in rows]

    async def endpoint_backlog(self, endpoint_ids: Collection[str], now: int) -> dict[str, Backlog]:
        rows = await self._fetch("endpoint_backlog", {"ids": list(endpoint_ids), "now": now})
        return backlog_from_rows(tuple(r) for r in rows)

    async def health_states(self, endpoint_ids: Collection[str]) -> dict[str, HealthState]:
        rows = await self._fetch("health_rows", {"ids": list(endpoint_ids)})
        return {r[0]: health_from_row(r) for r in rows}

    async def update_health(
        self,
        endpoint_ids: Collection[str],
        update: Callable[[HealthState], tuple[HealthState, T]],
    ) -> dict[str, T]:
        key = {"ids": sorted(endpoint_ids)}
        results: dict[str, T] = {}
        async with self._tx() as conn:
            sql, args = _bind("ensure_health", key)
            await conn.execute(sql, *args)
            sql, args = _bind("lock_health_rows", key)
            await conn.fetch(sql, *args)
            sql, args = _bind("health_rows", key)
            changed = []
            for row in await conn.fetch(sql, *args):
                before = health_from_row(row)
                after, results[before.endpoint_id] = update(before)
                if after != before:
                    changed.append(after)
            if changed:
                sql, names = to_positional(_Q["set_health"])
                await conn.executemany(sql, [[health_params(h)[n] for n in names] for h in changed])
        return results

    async def disable_endpoint(self, endpoint_id: str, reason: str, now: int) -> str | None:
        key = {"endpoint_id": endpoint_id, "now": now}
        async with self._tx() as conn:
            sql, args = _bind("disable_endpoint", key)
            account_id = await conn.fetchval(sql, *args)
            if account_id is None:
                return None
            sql, args = _bind(
                "hold_endpoint_deliveries", {**key, "reason": f"endpoint disabled: {reason}"}
            )
            await conn.execute(sql, *args)
            return str(account_id)

    async def account_disable_after(self, account_id: str) -> int | None:
        rows = await self._fetch("account_disable_after", {"account_id": account_id})
        return None if not rows else rows[0][0]

    async def set_account_disable_after(self, account_id: str, seconds: int | None) -> bool:
        status = await self._execute(
            "set_account_disable_after", {"account_id": account_id, "disable_after_s": seconds}
        )
        return status == "UPDATE 1"

    async def replay_dead_since(self, endpoint_id: str, dead_since: int, now: int) -> list[str]:
        params = {"endpoint_id": endpoint_id, "dead_since": dead_since, "now": now}
        async with self._tx() as conn:
            sql, args = _bind("replay_dead_since", params)
            ids = [r[0] for r in await conn.fetch(sql, *args)]
            if ids:
                await conn.execute(_Q["notify_work"])
            return ids

    async def probe(self, now: int) -> None:
        await self._execute("probe_readiness", {"now": now})
