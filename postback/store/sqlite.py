"""SQLite adapter: the embedded default, one file, no server.

All writes run on one dedicated writer thread that groups whatever is queued into a single
transaction (group commit): one fsync covers many API requests and dispatcher batches, and
no two transactions ever interleave. Each queued write runs inside its own SAVEPOINT, so a
failing one is rolled back alone. Reads run on a small pool of reader connections, which WAL
mode lets proceed while the writer writes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

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
from postback.store.migrations import pending_migrations, split_statements
from postback.store.queries import load_queries, migration_files
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
    delivery_conditions,
    delivery_filter,
    delivery_from_row,
    endpoint_from_row,
    endpoint_health_from_row,
    endpoint_params,
    event_type_from_row,
    health_from_row,
    health_params,
    health_row,
    pacing_from_row,
    pacing_params,
    secret_from_row,
    secret_params,
)
from postback.store.sealing import Sealer

T = TypeVar("T")
log = logging.getLogger("postback.store.sqlite")
_DELIVERY_IDS = MonotonicIds("dlv")  # ordered deliveries rely on id order
Write = Callable[[sqlite3.Connection], Any]

MAX_WRITES_PER_COMMIT = 512

# How often the writer lists new deliveries in endpoint_deliveries (migration 0011): each
# endpoint's page is then written about once a second, not at every commit.
LIST_NEW_DELIVERIES_EVERY_S = 1.0


def _translate(exc: sqlite3.Error) -> Exception:
    text = str(exc)
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in text:
        return StorageFull(f"SQLite database or disk is full: {text}")
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StorageUnavailable(f"SQLite database is busy: {text}")
    return StorageError(f"SQLite error: {text}")


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a transaction is on disk when COMMIT returns, so a 202 means "stored".
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


@dataclass(slots=True)
class _PendingWrite:
    fn: Write
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    ingested: int = 0
    """Messages this write stores (an ingest), 0 for any other write: see INGESTED_PER_COMMIT."""


# Messages one commit stores at most (an ingest larger than this goes alone). Every other write
# (recording attempts, claims, the API's) joins the next commit whatever is queued, and ingests
# wait for a later one. At saturation the ingest runs ahead of the sends: commits of several
# batches of 500 took so long that the attempts waiting to be recorded passed the dispatcher's
# bound, and it stopped sending while the writer stored messages (docs/deployment.md, session
# 17). Bounding ingest per commit bounds how long a record waits; the ingest feels the
# backpressure instead, as its 202 comes later.
INGESTED_PER_COMMIT = 1000


class _Writer:
    """Runs queued writes in group-committed transactions, on a thread of its own.

    It has a thread, not is one: mypyc compiles this module (postback/native.py), and a
    compiled subclass of threading.Thread crashed the interpreter at fork."""

    def __init__(self, path: str) -> None:
        self.thread = threading.Thread(target=self.run, name="postback-sqlite-writer", daemon=True)
        self.path = path
        self.jobs: queue.SimpleQueue[_PendingWrite | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.open_error: BaseException | None = None
        self.lock_fd = -1
        self.list_every_s = LIST_NEW_DELIVERIES_EVERY_S
        self._listed_at = 0.0
        self._others: list[_PendingWrite] = []  # queued writes other than ingests
        self._ingests: collections.deque[_PendingWrite] = collections.deque()

    def run(self) -> None:
        try:
            conn = _connect(self.path)
            self.lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except (sqlite3.Error, OSError) as exc:
            self.open_error = (
                _translate(exc)
                if isinstance(exc, sqlite3.Error)
                else StorageError(f"cannot open the SQLite database's lock file: {exc}")
            )
            self.ready.set()
            return
        self.ready.set()
        try:
            stop = False
            while not stop or self._others or self._ingests:
                if not stop and not self._others and not self._ingests:
                    first = self.jobs.get()
                    if first is None:
                        return
                    self._sort(first)
                if not stop:
                    stop = self._gather()
                stop = self._commit(conn, stop)
        finally:
            conn.close()
            os.close(self.lock_fd)

    def _sort(self, job: _PendingWrite) -> None:
        (self._ingests if job.ingested else self._others).append(job)

    def _gather(self) -> bool:
        """Take the writes already queued; True if the stop sentinel was among them."""
        while len(self._others) + len(self._ingests) < MAX_WRITES_PER_COMMIT:
            try:
                nxt = self.jobs.get_nowait()
            except queue.Empty:
                return False
            if nxt is None:
                return True
            self._sort(nxt)
        return False

    def _next_batch(self) -> list[_PendingWrite]:
        """Every write but ingests, and ingests in order up to INGESTED_PER_COMMIT messages
        (at least one, so that they never wait for good)."""
        batch, self._others = self._others, []
        ingested = 0
        while self._ingests and len(batch) < MAX_WRITES_PER_COMMIT:
            job = self._ingests[0]
            if ingested and ingested + job.ingested > INGESTED_PER_COMMIT:
                break
            ingested += job.ingested
            batch.append(self._ingests.popleft())
        return batch

    def _commit(self, conn: sqlite3.Connection, stop: bool) -> bool:
        """Commit the next batch under the file lock; True if the stop sentinel was taken."""
        # Processes sharing the file (serve --processes, workers) queue for it here: a blocked
        # flock wakes the moment the holder is done, where SQLite's own busy handler would
        # poll with sleeps of 1 to 100 ms. The GIL is released while waiting.
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            # What was queued while another process held the file joins this commit rather
            # than waiting for the lock a second time: under contention, fewer and larger
            # commits (each pays BEGIN, COMMIT's fsync and two lock hand-overs once).
            if not stop:
                stop = self._gather()
            self._commit_locked(conn, self._next_batch())
        finally:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
        return stop

    def _commit_locked(self, conn: sqlite3.Connection, batch: list[_PendingWrite]) -> None:
        outcomes: list[tuple[_PendingWrite, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = job.fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    err = _translate(exc) if isinstance(exc, sqlite3.Error) else exc
                    outcomes.append((job, None, err))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, value, None))
            if time.monotonic() - self._listed_at >= self.list_every_s:
                self._list_new_deliveries(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as failed:
            if conn.in_transaction:
                # On a full disk the rollback may fail too; the writer thread must live on.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            err = _translate(failed)
            outcomes = [(job, None, err) for job in batch]
        for job, value, error in outcomes:
            job.loop.call_soon_threadsafe(_settle_future, job.future, value, error)

    def _list_new_deliveries(self, conn: sqlite3.Connection) -> None:
        """Add the deliveries committed since the last time to endpoint_deliveries, in this
        transaction, so the rowid up to which it lists moves with it."""
        self._listed_at = time.monotonic()
        conn.execute("SAVEPOINT listing")
        try:
            upto, same, newest, newest_id = conn.execute(_Q["endpoint_deliveries_upto"]).fetchone()
            if not same:
                # Rowids were handed out again (the newest rows were deleted by hand): list
                # every row again, or the ones given those rowids would never be listed.
                upto = 0
            newest = newest or 0
            if newest != upto or not same:
                conn.execute(_Q["list_new_deliveries"], {"after": upto, "upto": newest})
                conn.execute(
                    _Q["set_endpoint_deliveries_upto"], {"upto": newest, "upto_id": newest_id}
                )
        except sqlite3.Error as exc:
            # The batch's own writes still commit; listings read the newer rows from
            # `deliveries` until a later try succeeds.
            conn.execute("ROLLBACK TO listing")
            log.warning("could not list new deliveries by endpoint: %s", _translate(exc))
        conn.execute("RELEASE listing")


def _settle_future(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


_Q = load_queries("sqlite")

# The partial index by endpoint of each live state: an endpoint's deliveries in one of them are
# found through it (named: the planner would walk the account's index), not endpoint_deliveries.
_STATE_INDEXED = {
    DeliveryState.PENDING: "deliveries_endpoint_due",
    DeliveryState.DELIVERING: "deliveries_endpoint_in_flight",
    DeliveryState.DEAD: "deliveries_dead",
}


def delivery_listing(
    account_id: str,
    *,
    endpoint_id: str | None = None,
    message_id: str | None = None,
    state: DeliveryState | None = None,
    after: str | None = None,
    limit: int = 100,
    **filters: Any,
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of a delivery listing (``Storage.list_deliveries``' filters).

    One endpoint's deliveries come from endpoint_deliveries (migration 0011), walked newest
    first from its primary key, and the rows committed since it was filled, read from
    ``deliveries`` by rowid; in a live state, from that state's partial index.
    """
    filters.update(
        message_id=message_id,
        state=state,
        idempotency_condition=_Q["delivery_by_idempotency_key"],
    )
    by_endpoint = endpoint_id is not None and message_id is None
    if not by_endpoint or state in _STATE_INDEXED:
        clause, params = delivery_filter(
            account_id, endpoint_id=endpoint_id, after=after, limit=limit, **filters
        )
        index = f" INDEXED BY {_STATE_INDEXED[state]}" if by_endpoint and state else ""
        return _Q["delivery_columns"] + index + clause, params
    where, params = delivery_conditions(account_id, endpoint_id=None, after=None, **filters)
    listed = newer = " AND ".join(where)
    if after is not None:
        params["after"] = after
        listed += " AND h.delivery_id < :after"
        newer += " AND id < :after"
    params.update(endpoint_id=endpoint_id, limit=limit)
    return _Q["endpoint_delivery_columns"].format(listed=listed, since=newer), params


def _insert_event_types(conn: sqlite3.Connection, endpoint: Endpoint) -> None:
    conn.execute(_Q["delete_event_types"], {"endpoint_id": endpoint.id})
    for event_type in endpoint.event_types or ():
        conn.execute(
            _Q["insert_event_type"], {"endpoint_id": endpoint.id, "event_type": event_type}
        )


# Past this, a set is written row by row: SQLite refuses a value over 1 GB (SQLITE_MAX_LENGTH),
# and 1,000 payloads of 1 MB (MAX_BATCH, MAX_PAYLOAD_BYTES) could reach it. Per-row steps cost
# nothing next to payloads that large.
SET_ROWS_MOST_BYTES = 64 * 1024 * 1024


def _set_rows(rows: list[tuple[Any, ...]]) -> bytes | None:
    """Rows as one JSON array for a set-based statement over ``json_each``, or None if unsafe.

    Why: each step of a statement releases and retakes the GIL; ``executemany`` steps once a
    row, and under load the writer thread then waits for the event loop at every row (measured:
    ~5x slower ingest with a busy main thread). One statement over a JSON array is one step.
    None when JSON would change a value (SQLite's JSON functions end a text at NUL, and a lone
    surrogate cannot be encoded) or the array is too large: the caller then writes row by row.
    """
    try:
        encoded = msgspec.json.encode(rows)
    except UnicodeEncodeError:
        return None
    if len(encoded) > SET_ROWS_MOST_BYTES or b"\\u0000" in encoded:
        return None
    return encoded


def _insert_set(
    conn: sqlite3.Connection,
    names: tuple[str, str],
    encoded: bytes | None,
    common: dict[str, Any],
    each: Iterable[dict[str, Any]],
) -> None:
    """Rows through ``names[0]``, one statement over their JSON array, or through ``names[1]``
    one by one when ``_set_rows`` could not make the array (``encoded`` is None)."""
    if encoded is not None:
        conn.execute(_Q[names[0]], {"rows": encoded, **common})
    else:
        conn.executemany(_Q[names[1]], ({**common, **row} for row in each))


def _insert_messages(
    conn: sqlite3.Connection, account_id: str, now: int, messages: list[NewMessage]
) -> None:
    try:
        rows = [(m.id, m.event_type, m.payload.decode(), m.idempotency_key) for m in messages]
    except UnicodeDecodeError:  # stored as the exact bytes, which JSON text cannot carry
        encoded = None
    else:
        encoded = _set_rows(rows)
    _insert_set(
        conn,
        ("insert_messages", "insert_message"),
        encoded,
        {"account_id": account_id, "created_at": now},
        (
            {
                "id": m.id,
                "event_type": m.event_type,
                "payload": m.payload,
                "idempotency_key": m.idempotency_key,
            }
            for m in messages
        ),
    )


def _pick_due(
    conn: sqlite3.Connection, fleet_rooms: list[tuple[str, int]], limit: int, now: int
) -> dict[str, list[list[Any]]]:
    """Each endpoint's oldest due deliveries, oldest first: at least what ``claim_plan`` will
    take from it (or all it has), for the endpoints in due order until the claim is full.

    Why not a statement per endpoint: with 1,000 customers, picking and leasing endpoint by
    endpoint was two statements per claimed delivery (~100 µs of the writer each). Endpoints
    go in chunks of 1, 2, 4, … in due order, so a claim over many sparse endpoints is a few
    statements and one over a deep endpoint stops after the first; within a chunk, endpoints
    share a statement per power of two of their room (SQLite's LIMIT cannot come from the row)
    and ``claim_plan`` drops what a bound picked beyond an endpoint's room.
    """
    picked: dict[str, list[list[Any]]] = {}
    taken = 0  # what claim_plan takes from the endpoints picked so far
    start, size = 0, 1
    while start < len(fleet_rooms) and taken < limit:
        chunk = fleet_rooms[start : start + size]
        by_bound: dict[int, list[str]] = {}
        for endpoint_id, room in chunk:
            room = min(room, limit - taken)
            if room > 0:
                by_bound.setdefault(1 << (room - 1).bit_length(), []).append(endpoint_id)
        for bound, endpoint_ids in by_bound.items():
            found = conn.execute(
                _Q["pick_endpoints_due"],
                {"endpoints": json.dumps(endpoint_ids), "room": bound, "now": now},
            ).fetchone()[0]
            for row in msgspec.json.decode(found):
                picked.setdefault(row[3], []).append(row)
        start, size = start + size, size * 2
        taken = len(claim_plan(fleet_rooms[:start], picked, limit)[0])
    return picked


_DeliveryRow = tuple[str, str, str, str, str | None, str, int | None]
"""id, message_id, endpoint_id, event_type, ordering_key, state, lease_until."""


def _insert_deliveries(
    conn: sqlite3.Connection, account_id: str, now: int, rows: list[_DeliveryRow], holder: str
) -> None:
    _insert_set(
        conn,
        ("insert_deliveries", "insert_delivery"),
        _set_rows(rows),
        {"account_id": account_id, "created_at": now, "holder": holder},
        (
            {
                "id": r[0],
                "message_id": r[1],
                "endpoint_id": r[2],
                "event_type": r[3],
                "ordering_key": r[4],
                "state": r[5],
                "lease_until": r[6],
            }
            for r in rows
        ),
    )


def _attempt_row(a: Attempt) -> tuple[Any, ...]:
    return (
        a.id,
        a.delivery_id,
        a.attempt_number,
        a.started_at,
        a.duration_ms,
        a.outcome,
        a.status_code,
        a.error,
        a.response_body,
    )


def _settle_row(rec: AttemptRecord) -> tuple[Any, ...]:
    a = rec.attempt
    return (
        rec.delivery_id,
        rec.state.value,
        a.attempt_number,
        rec.next_attempt_at,
        a.status_code,
        a.error,
        rec.dead_reason,
        rec.now,
    )


def _settle_params(rec: AttemptRecord) -> dict[str, Any]:
    a = rec.attempt
    return {
        "state": rec.state.value,
        "attempt_number": a.attempt_number,
        "next_attempt_at": rec.next_attempt_at,
        "status_code": a.status_code,
        "error": a.error,
        "dead_reason": rec.dead_reason,
        "now": rec.now,
        "delivery_id": rec.delivery_id,
    }


class SQLiteStorage:
    """``Storage`` on one SQLite file."""

    def __init__(self, path: str, sealer: Sealer | None = None) -> None:
        self.path = path
        self.sealer = sealer or Sealer.ephemeral()
        self._writer: _Writer | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, sealer: Sealer | None = None) -> SQLiteStorage:
        path = url.removeprefix("sqlite://")
        # sqlite:///relative.db -> "relative.db"; sqlite:////abs/x.db -> "/abs/x.db"
        path = path[1:] if path.startswith("/") else path
        if not path or path == ":memory:":
            raise StorageError("SQLite needs a file path: sqlite:///path/to/postback.db")
        return cls(path, sealer)

    # -- plumbing ---------------------------------------------------------------------------

    async def open(self, *, migrate: bool = True) -> None:
        await asyncio.to_thread(self._migrate, migrate)
        self._writer = _Writer(self.path)
        self._writer.thread.start()
        await asyncio.to_thread(self._writer.ready.wait)
        if self._writer.open_error is not None:
            raise self._writer.open_error
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="postback-sqlite-r")

    def _migrate(self, migrate: bool) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StorageError(f"directory for the SQLite database does not exist: {directory}")
        try:
            conn = _connect(self.path)
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        try:
            if migrate:
                conn.execute(_Q["migrations_table"])
            exists = conn.execute(_Q["migrations_table_exists"]).fetchone()
            applied = {v for (v,) in conn.execute(_Q["migrations_applied"])} if exists else set()
            known = migration_files("sqlite")
            pending = pending_migrations(
                applied, known, migrate=migrate, database=f"database {self.path}"
            )
            for version in pending:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in split_statements(known[version]):
                        conn.execute(statement)
                    conn.execute(
                        _Q["migration_applied"],
                        {"version": version, "applied_at": int(time.time() * 1000)},
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        finally:
            conn.close()

    def watch(self, wake: Callable[[], None]) -> None:
        """Other processes on this file are noticed by polling; nothing to subscribe to."""

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.jobs.put(None)
            await asyncio.to_thread(self._writer.thread.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, ingested: int = 0) -> T:
        if self._writer is None:
            raise StorageError("storage is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writer.jobs.put(_PendingWrite(fn, future, loop, ingested))
        return await future

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise StorageError("storage is not open")

        def run() -> T:
            try:
                return fn(self._reader())
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    # -- accounts -----------------------------------------------------------------------------

    async def create_account(
        self, account: Account, key: ApiKey | None = None, key_hash: str | None = None
    ) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            if conn.execute(_Q["insert_account"], msgspec.structs.asdict(account)).rowcount == 0:
                return False
            if key is not None and key_hash is not None:
                conn.execute(_Q["insert_api_key"], api_key_params(key, key_hash))
            return True

        return await self._write(write)

    async def account(self, ref: str) -> Account | None:
        def read(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(_Q["account_by_ref"], {"ref": ref}).fetchone()
            return None if row is None else account_from_row(row)

        return await self._read(read)

    async def list_accounts(
        self, *, query: str | None, after: str | None, limit: int
    ) -> list[Account]:
        params = {"q": query, "after": after, "limit": limit}

        def read(conn: sqlite3.Connection) -> list[Account]:
            return [account_from_row(r) for r in conn.execute(_Q["list_accounts"], params)]

        return await self._read(read)

    async def create_api_key(self, key: ApiKey, key_hash: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_Q["insert_api_key"], api_key_params(key, key_hash))

        await self._write(write)

    async def live_key(self, key_hash: str, now: int) -> tuple[ApiKey, Account | None] | None:
        def read(conn: sqlite3.Connection) -> tuple[ApiKey, Account | None] | None:
            row = conn.execute(
                _Q["live_key_for_hash"], {"key_hash": key_hash, "now": now}
            ).fetchone()
            if row is None:
                return None
            return api_key_from_row(row), None if row[7] is None else account_from_row(row, 7)

        return await self._read(read)

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        def read(conn: sqlite3.Connection) -> ApiKey | None:
            row = conn.execute(_Q["get_api_key"], {"id": key_id}).fetchone()
            return None if row is None else api_key_from_row(row)

        return await self._read(read)

    async def list_api_keys(
        self, account_id: str | None, *, after: str | None, limit: int
    ) -> list[ApiKey]:
        params = {"account_id": account_id, "after": after, "limit": limit}

        def read(conn: sqlite3.Connection) -> list[ApiKey]:
            return [api_key_from_row(r) for r in conn.execute(_Q["list_api_keys"], params)]

        return await self._read(read)

    async def revoke_api_key(self, key_id: str, at: int) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            return conn.execute(_Q["revoke_api_key"], {"id": key_id, "at": at}).rowcount > 0

        return await self._write(write)

    async def rotate_api_key(
        self, key_id: str, new: ApiKey, new_hash: str, old_revoked_at: int
    ) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            revoked = conn.execute(_Q["revoke_api_key"], {"id": key_id, "at": old_revoked_at})
            if revoked.rowcount == 0:
                return False
            conn.execute(_Q["insert_api_key"], api_key_params(new, new_hash))
            return True

        return await self._write(write)

    # -- endpoints ----------------------------------------------------------------------------

    async def create_endpoint(self, endpoint: Endpoint, secret: SigningSecret) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_Q["insert_endpoint"], endpoint_params(endpoint, self.sealer))
            _insert_event_types(conn, endpoint)
            conn.execute(_Q["insert_secret"], secret_params(endpoint.id, secret, self.sealer))

        await self._write(write)

    async def get_endpoint(self, account_id: str | None, endpoint_id: str) -> Endpoint | None:
        sql = _Q["endpoint_columns"] + "\n" + _Q["endpoint_by_id"]
        params: dict[str, Any] = {"id": endpoint_id, "account_id": account_id}

        def read(conn: sqlite3.Connection) -> Endpoint | None:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else endpoint_from_row(row, self.sealer)

        return await self._read(read)

    async def list_endpoints(
        self, account_id: str, *, after: str | None, limit: int
    ) -> list[Endpoint]:
        sql = _Q["endpoint_columns"] + "\n" + _Q["endpoints_page"]
        params = {"account_id": account_id, "after": after or "", "limit": limit}

        def read(conn: sqlite3.Connection) -> list[Endpoint]:
            return [endpoint_from_row(r, self.sealer) for r in conn.execute(sql, params)]

        return await self._read(read)

    async def update_endpoint(self, endpoint: Endpoint) -> bool:
        params = endpoint_params(endpoint, self.sealer)
        for key in ("is_callback_url", "created_at"):
            del params[key]

        def write(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(_Q["update_endpoint"], params).rowcount == 1
            if changed:
                _insert_event_types(conn, endpoint)
            return changed

        return await self._write(write)

    async def delete_endpoint(self, account_id: str, endpoint_id: str, now: int) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            params = {"id": endpoint_id, "account_id": account_id, "now": now}
            if conn.execute(_Q["delete_endpoint"], params).rowcount != 1:
                return False
            conn.execute(_Q["kill_endpoint_deliveries"], {"endpoint_id": endpoint_id, "now": now})
            return True

        return await self._write(write)

    async def callback_endpoint(
        self, account_id: str, url: str, template: Endpoint, secret: SigningSecret
    ) -> Endpoint:
        def write(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                _Q["callback_endpoint"], {"account_id": account_id, "url": url}
            ).fetchone()
            if row is not None:
                return str(row[0])
            conn.execute(_Q["insert_endpoint"], endpoint_params(template, self.sealer))
            conn.execute(_Q["insert_secret"], secret_params(template.id, secret, self.sealer))
            return template.id

        endpoint_id = await self._write(write)
        endpoint = await self.get_endpoint(account_id, endpoint_id)
        if endpoint is None:  # deleted between the two statements
            raise StorageError(f"callback endpoint for {url} vanished")
        return endpoint

    async def signing_secrets(self, endpoint_id: str, now: int) -> list[SigningSecret]:
        def read(conn: sqlite3.Connection) -> list[SigningSecret]:
            rows = conn.execute(_Q["active_secrets"], {"endpoint_id": endpoint_id, "now": now})
            return [secret_from_row(endpoint_id, r, self.sealer) for r in rows]

        return await self._read(read)

    async def rotate_secret(
        self, account_id: str, endpoint_id: str, new: SigningSecret, old_expires_at: int
    ) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            owner = conn.execute(
                _Q["endpoint_owner"], {"id": endpoint_id, "account_id": account_id}
            ).fetchone()
            if owner is None:
                return False
            conn.execute(
                _Q["expire_current_secret"],
                {"endpoint_id": endpoint_id, "expires_at": old_expires_at},
            )
            conn.execute(_Q["insert_secret"], secret_params(endpoint_id, new, self.sealer))
            conn.execute(_Q["bump_endpoint_version"], {"id": endpoint_id, "now": new.created_at})
            return True

        return await self._write(write)

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
        def next_id() -> str:
            # Made here, on the one writer thread, so their order is the commit order.
            return _DELIVERY_IDS.next_from(now, os.urandom)

        def write(conn: sqlite3.Connection) -> list[IngestResult]:
            results: list[IngestResult] = []
            subscribed: dict[str, list[str]] = {}
            fresh: list[tuple[NewMessage, list[Delivery]]] = []
            message_rows: list[NewMessage] = []
            for index, message in enumerate(messages):
                if message.idempotency_key is not None:
                    key = {"account_id": account_id, "key": message.idempotency_key}
                    found = conn.execute(_Q["find_idempotency_key"], key).fetchone()
                    if found is not None and idempotency_hit(found[1], now, idempotency_window_ms):
                        # Raising rolls the savepoint back: the batch is all or nothing.
                        check_reuse(message.idempotency_key, found[2], message.fingerprint, index)
                        deliveries = [
                            delivery_from_row(r)
                            for r in conn.execute(_Q["deliveries_of_message"], {"id": found[0]})
                        ]
                        results.append(
                            IngestResult(message_id=found[0], deliveries=deliveries, duplicate=True)
                        )
                        continue
                    conn.execute(
                        _Q["upsert_idempotency_key"],
                        {
                            **key,
                            "message_id": message.id,
                            "created_at": now,
                            "fingerprint": message.fingerprint,
                        },
                    )
                message_rows.append(message)
                targets = subscribed.get(message.event_type)
                if targets is None:
                    rows = conn.execute(
                        _Q["subscribed_endpoints"],
                        {"account_id": account_id, "event_type": message.event_type},
                    )
                    targets = subscribed[message.event_type] = [r[0] for r in rows]
                endpoint_ids = delivery_targets(message, targets)
                deliveries = new_deliveries(account_id, message, endpoint_ids, now, next_id)
                fresh.append((message, deliveries))
                results.append(IngestResult(message_id=message.id, deliveries=deliveries))
            _insert_messages(conn, account_id, now, message_rows)
            plan = self._lease_plan(conn, fresh, lease, now)
            leased_by_message: dict[str, list[ClaimedDelivery]] = {}
            delivery_rows: list[_DeliveryRow] = []
            for message, deliveries in fresh:
                for delivery in deliveries:
                    claimed = plan.take(message, delivery)
                    delivery_rows.append(
                        (
                            delivery.id,
                            message.id,
                            delivery.endpoint_id,
                            message.event_type,
                            message.ordering_key,
                            "pending" if claimed is None else "delivering",
                            None if claimed is None else plan.lease_until,
                        )
                    )
                    if claimed is not None:
                        leased_by_message.setdefault(message.id, []).append(claimed)
            _insert_deliveries(conn, account_id, now, delivery_rows, plan.holder)
            return [
                msgspec.structs.replace(
                    r,
                    leased=leased_by_message[r.message_id],
                    deliveries=[
                        msgspec.structs.replace(d, state=DeliveryState.DELIVERING)
                        if d.id in leased_ids
                        else d
                        for d in r.deliveries
                    ],
                )
                if r.message_id in leased_by_message and not r.duplicate
                else r
                for r in results
                for leased_ids in [{c.delivery_id for c in leased_by_message.get(r.message_id, [])}]
            ]

        return await self._write(write, ingested=max(1, len(messages)))

    @staticmethod
    def _lease_plan(
        conn: sqlite3.Connection,
        fresh: list[tuple[NewMessage, list[Delivery]]],
        lease: LeaseOffer | None,
        now: int,
    ) -> LeasePlan:
        if lease is None:
            return LeasePlan.none()
        wanted = LeasePlan.wanted(fresh, lease)
        if not wanted:
            return LeasePlan.none()
        found = conn.execute(
            _Q["endpoint_loads"],
            {"ids": json.dumps(list(wanted)), "now": now, "holder": lease.holder},
        ).fetchone()[0]
        return LeasePlan.of(lease, wanted, msgspec.json.decode(found), now)

    async def get_message(self, account_id: str, message_id: str) -> Message | None:
        def read(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute(
                _Q["get_message"], {"id": message_id, "account_id": account_id}
            ).fetchone()
            if row is None:
                return None
            return Message(
                id=row[0],
                account_id=row[1],
                event_type=row[2],
                payload=bytes(row[3]),
                idempotency_key=row[4],
                created_at=row[5],
            )

        return await self._read(read)

    async def get_delivery(self, account_id: str, delivery_id: str) -> Delivery | None:
        sql = _Q["delivery_columns"] + "\n" + _Q["delivery_by_id"]

        def read(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(sql, {"id": delivery_id, "account_id": account_id}).fetchone()
            return None if row is None else delivery_from_row(row)

        return await self._read(read)

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
        sql, params = delivery_listing(
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
        )

        def read(conn: sqlite3.Connection) -> list[Delivery]:
            return [delivery_from_row(r) for r in conn.execute(sql, params)]

        return await self._read(read)

    async def list_attempts(
        self, account_id: str, delivery_id: str, *, after: str | None, limit: int
    ) -> list[Attempt]:
        params = {
            "account_id": account_id,
            "delivery_id": delivery_id,
            "after": after or "",
            "limit": limit,
        }

        def read(conn: sqlite3.Connection) -> list[Attempt]:
            return [attempt_from_row(r) for r in conn.execute(_Q["attempts_for_delivery"], params)]

        return await self._read(read)

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
        exclude = json.dumps(list(exclude_endpoints))

        def write(conn: sqlite3.Connection) -> list[ClaimedDelivery]:
            found = conn.execute(
                _Q["claim_ready_endpoints"],
                {"now": now, "exclude": exclude, "endpoints": max(limit, 64), "holder": holder},
            ).fetchone()[0]
            ready = msgspec.json.decode(found, type=list[tuple[str, int, int]])
            holders: dict[str, int] = {}
            fleet_rooms: list[tuple[str, int]] = []
            for endpoint_id, in_flight, other_holders in ready:
                mine = own.get(endpoint_id, 0)
                reserve = ahead.get(endpoint_id, prefetch)
                allowed = min(
                    rooms.get(endpoint_id, per_endpoint + reserve), per_endpoint + reserve
                )
                fleet = fleet_room(
                    allowed,
                    reserve,
                    mine,
                    max(0, in_flight - mine),
                    other_holders,
                    per_endpoint,
                    sending.get(endpoint_id),
                )
                holders[endpoint_id] = fleet.holders
                fleet_rooms.append((endpoint_id, fleet.room))
            picked = _pick_due(conn, fleet_rooms, limit, now)
            rows, exhausted = claim_plan(fleet_rooms, picked, limit)
            if rows:
                conn.execute(
                    _Q["lease_deliveries"],
                    {
                        "ids": msgspec.json.encode([r[0] for r in rows]),
                        "now": now,
                        "lease_until": now + lease_ms,
                        "holder": holder,
                    },
                )
            if exhausted:
                conn.execute(_Q["settle_endpoints_work"], {"ids": json.dumps(exhausted)})
            if not rows:
                return []
            message_ids = json.dumps(sorted({r[1] for r in rows}))
            found = conn.execute(_Q["claimed_payloads"], {"ids": message_ids}).fetchone()[0]
            payloads = {m[0]: m for m in msgspec.json.decode(found)}
            endpoint_ids = json.dumps(sorted({r[3] for r in rows}))
            found = conn.execute(
                _Q["claimed_endpoints"], {"ids": endpoint_ids, "now": now}
            ).fetchone()[0]
            endpoints = msgspec.json.decode(found)
            versions = {e[0]: e[1] for e in endpoints}
            paced = {e[0] for e in endpoints if e[2]}
            return [
                ClaimedDelivery(
                    delivery_id=r[0],
                    message_id=r[1],
                    account_id=r[2],
                    endpoint_id=r[3],
                    endpoint_updated_at=versions.get(r[3], 0),
                    attempt_count=r[4],
                    schedule_base=r[5],
                    event_type=payloads[r[1]][1],
                    payload=bytes.fromhex(payloads[r[1]][2]),
                    message_created_at=payloads[r[1]][3],
                    paced=r[3] in paced,
                    holders=holders[r[3]],
                )
                for r in rows
            ]

        return await self._write(write)

    async def record(self, records: list[AttemptRecord]) -> None:
        attempts = _set_rows([_attempt_row(rec.attempt) for rec in records])
        settled: dict[str, tuple[Any, ...]] = {}
        for rec in records:  # a delivery settled twice in one call: the first wins, as row by row
            settled.setdefault(rec.delivery_id, _settle_row(rec))
        settles = _set_rows(list(settled.values()))

        def write(conn: sqlite3.Connection) -> None:
            if attempts is not None and settles is not None:
                conn.execute(_Q["insert_attempts"], {"rows": attempts})
                conn.execute(_Q["settle_deliveries"], {"rows": settles})
                return
            for rec in records:
                conn.execute(_Q["insert_attempt"], msgspec.structs.asdict(rec.attempt))
                conn.execute(_Q["settle_delivery"], _settle_params(rec))

        await self._write(write)

    async def release(self, delivery_ids: Collection[str], due_at: int) -> None:
        ids = json.dumps(list(delivery_ids))
        await self._write(lambda conn: conn.execute(_Q["release"], {"ids": ids, "due_at": due_at}))

    async def pace(self, endpoint_id: str, update: Callable[[Pacing], tuple[Pacing, T]]) -> T:
        def write(conn: sqlite3.Connection) -> T:
            key = {"endpoint_id": endpoint_id}
            conn.execute(_Q["ensure_pacing"], key)
            row = conn.execute(_Q["get_pacing"], key).fetchone()
            before = pacing_from_row(row)
            after, result = update(before)
            if after != before:
                conn.execute(_Q["set_pacing"], {**key, **pacing_params(after)})
            return result

        return await self._write(write)

    async def expire_leases(self, now: int) -> int:
        return await self._write(
            lambda conn: conn.execute(_Q["expire_leases"], {"now": now}).rowcount
        )

    async def renew_leases(self, delivery_ids: Collection[str], lease_until: int) -> None:
        ids = json.dumps(list(delivery_ids))
        await self._write(
            lambda conn: conn.execute(_Q["renew_leases"], {"ids": ids, "lease_until": lease_until})
        )

    async def next_due_at(self, exclude_endpoints: Collection[str] = ()) -> int | None:
        exclude = json.dumps(list(exclude_endpoints))

        def read(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(_Q["next_due_at"], {"exclude": exclude}).fetchone()
            return None if row is None else row[0]

        return await self._read(read)

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
        return await self._write(lambda conn: [r[0] for r in conn.execute(_Q["replay"], params)])

    async def purge(self, before: int, limit: int) -> int:
        before_id = make_id("msg", before, bytes(10))

        def write(conn: sqlite3.Connection) -> int:
            rows = conn.execute(_Q["purge_messages"], {"before_id": before_id, "limit": limit})
            ids = json.dumps([r[0] for r in rows])
            for name in ("purge_attempts", "purge_endpoint_deliveries", "purge_deliveries"):
                conn.execute(_Q[name], {"ids": ids})
            deleted = conn.execute(_Q["purge_message_rows"], {"ids": ids}).rowcount
            conn.execute(_Q["purge_idempotency_keys"], {"before": before})
            for name in ("purge_batch_recipients", "purge_batches"):
                conn.execute(_Q[name], {"before": before})
            return deleted

        return await self._write(write)

    async def create_event_type(self, account_id: str, definition: EventTypeDefinition) -> bool:
        params = {"account_id": account_id, **msgspec.structs.asdict(definition)}
        return await self._write(
            lambda conn: conn.execute(_Q["insert_event_type_definition"], params).rowcount == 1
        )

    async def event_types(self, account_id: str) -> list[EventTypeDefinition]:
        def read(conn: sqlite3.Connection) -> list[EventTypeDefinition]:
            rows = conn.execute(_Q["event_type_definitions"], {"account_id": account_id})
            return [event_type_from_row(r) for r in rows]

        return await self._read(read)

    async def event_type(self, account_id: str, name: str) -> EventTypeDefinition | None:
        def read(conn: sqlite3.Connection) -> EventTypeDefinition | None:
            row = conn.execute(
                _Q["event_type_definition"], {"account_id": account_id, "name": name}
            ).fetchone()
            return None if row is None else event_type_from_row(row)

        return await self._read(read)

    async def update_batch(
        self,
        account_id: str,
        batch: BatchRecord,
        recipients: list[str],
        updates: list[RecipientStatus],
    ) -> tuple[BatchRecord, dict[str, tuple[str | None, int | None]]]:
        key = {"account_id": account_id, "batch_id": batch.batch_id}

        def write(
            conn: sqlite3.Connection,
        ) -> tuple[BatchRecord, dict[str, tuple[str | None, int | None]]]:
            conn.execute(
                _Q["insert_batch"], {"account_id": account_id, **msgspec.structs.asdict(batch)}
            )
            for recipient in recipients:
                conn.execute(_Q["add_batch_recipient"], {**key, "recipient": recipient})
            for update in updates:
                conn.execute(_Q["set_recipient_status"], {**key, **msgspec.structs.asdict(update)})
            stored = batch_from_row(conn.execute(_Q["get_batch"], key).fetchone())
            rows = conn.execute(_Q["batch_recipient_statuses"], key)
            return stored, {r: (st, code) for r, st, code in rows}

        return await self._write(write)

    async def batch_statuses(
        self, account_id: str, batch_id: str
    ) -> tuple[BatchRecord, dict[str, tuple[str | None, int | None]]] | None:
        key = {"account_id": account_id, "batch_id": batch_id}

        def read(
            conn: sqlite3.Connection,
        ) -> tuple[BatchRecord, dict[str, tuple[str | None, int | None]]] | None:
            row = conn.execute(_Q["get_batch"], key).fetchone()
            if row is None:
                return None
            rows = conn.execute(_Q["batch_recipient_statuses"], key)
            return batch_from_row(row), {r: (st, code) for r, st, code in rows}

        return await self._read(read)

    async def mark_batch_reported(self, account_id: str, batch_id: str) -> bool:
        key = {"account_id": account_id, "batch_id": batch_id}
        return await self._write(
            lambda conn: conn.execute(_Q["mark_batch_reported"], key).rowcount == 1
        )

    async def due_batch_reports(self, now: int, limit: int) -> list[tuple[str, str]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = conn.execute(_Q["due_batch_reports"], {"now": now, "limit": limit})
            return [(a, b) for a, b in rows]

        return await self._read(read)

    async def count_by_state(self, account_id: str | None) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(conn.execute(_Q["count_by_state"], {"account_id": account_id}).fetchall())

        return await self._read(read)

    # -- the operator dashboard and the customer portal ------------------------------------------

    async def account_activity(
        self, since: int, limit: int, account_id: str | None = None
    ) -> list[AccountActivity]:
        params = {"since_id": make_id("att", since, bytes(10)), "limit": limit}
        params["account_id"] = account_id

        def read(conn: sqlite3.Connection) -> list[AccountActivity]:
            rows = conn.execute(_Q["account_activity"], params)
            return [account_activity_from_row(r) for r in rows]

        return await self._read(read)

    async def endpoint_health(
        self, since: int, now: int, limit: int, account_id: str | None = None
    ) -> list[EndpointHealth]:
        params = {
            "since_id": make_id("att", since, bytes(10)),
            "now": now,
            "limit": limit,
            "account_id": account_id,
        }

        def read(conn: sqlite3.Connection) -> list[EndpointHealth]:
            return [
                endpoint_health_from_row(r) for r in conn.execute(_Q["endpoint_health"], params)
            ]

        return await self._read(read)

    async def live_totals(self, since: int) -> LiveTotals:
        params = {"since_id": make_id("att", since, bytes(10))}

        def read(conn: sqlite3.Connection) -> LiveTotals:
            pending, delivering, delivered, failed = conn.execute(
                _Q["live_totals"], params
            ).fetchone()
            return LiveTotals(
                pending=pending, delivering=delivering, delivered=delivered, failed=failed
            )

        return await self._read(read)

    async def dead_letters(
        self, *, before: str | None, limit: int, account_id: str | None = None
    ) -> list[Delivery]:
        params = {"before": before, "limit": limit, "account_id": account_id}

        def read(conn: sqlite3.Connection) -> list[Delivery]:
            return [delivery_from_row(r) for r in conn.execute(_Q["dead_letters"], params)]

        return await self._read(read)

    async def endpoint_activity(
        self, endpoint_id: str, since: int, bucket_ms: int
    ) -> list[ActivityPoint]:
        params = {
            "endpoint_id": endpoint_id,
            "since_id": make_id("att", since, bytes(10)),
            "bucket_ms": bucket_ms,
        }

        def read(conn: sqlite3.Connection) -> list[ActivityPoint]:
            rows = conn.execute(_Q["endpoint_activity"], params)
            return [activity_point_from_row(r, bucket_ms) for r in rows]

        return await self._read(read)

    # -- operations (endpoint health, auto-disable, backlog, readiness) ------------------------

    async def backlog(self, now: int) -> Backlog:
        def read(conn: sqlite3.Connection) -> Backlog:
            return backlog_from_row(conn.execute(_Q["backlog"], {"now": now}).fetchone(), now)

        return await self._read(read)

    async def busiest_endpoints(self, now: int, limit: int) -> list[EndpointBacklog]:
        def read(conn: sqlite3.Connection) -> list[EndpointBacklog]:
            rows = conn.execute(_Q["busiest_endpoints"], {"now": now, "limit": limit})
            return [
                EndpointBacklog(
                    endpoint_id=r[0],
                    pending=r[1],
                    due=int(r[2] or 0),
                    oldest_pending_created_at=r[3],
                )
                for r in rows
            ]

        return await self._read(read)

    async def failing_endpoints(self, limit: int) -> list[tuple[str, int]]:
        def read(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            return [(r[0], r[1]) for r in conn.execute(_Q["failing_endpoints"], {"limit": limit})]

        return await self._read(read)

    async def endpoint_backlog(self, endpoint_ids: Collection[str], now: int) -> dict[str, Backlog]:
        params = {"ids": json.dumps(list(endpoint_ids)), "now": now}
        return await self._read(
            lambda conn: backlog_from_rows(conn.execute(_Q["endpoint_backlog"], params))
        )

    async def health_states(self, endpoint_ids: Collection[str]) -> dict[str, HealthState]:
        params = {"ids": json.dumps(list(endpoint_ids))}

        def read(conn: sqlite3.Connection) -> dict[str, HealthState]:
            rows = conn.execute(_Q["health_rows"], params)
            return {r[0]: health_from_row(r) for r in rows}

        return await self._read(read)

    async def update_health(
        self,
        endpoint_ids: Collection[str],
        update: Callable[[HealthState], tuple[HealthState, T]],
    ) -> dict[str, T]:
        params = {"ids": json.dumps(sorted(endpoint_ids))}

        def write(conn: sqlite3.Connection) -> dict[str, T]:
            # Read and written as sets (one step each), not row by row: with many endpoints a
            # flush touches hundreds of rows, and each step waits for the busy event loop.
            conn.execute(_Q["ensure_health"], params)
            found = conn.execute(_Q["health_rows_json"], params).fetchone()[0]
            results: dict[str, T] = {}
            changed: list[HealthState] = []
            for row in msgspec.json.decode(found):
                before = health_from_row(row)
                after, results[before.endpoint_id] = update(before)
                if after != before:
                    changed.append(after)
            if changed:
                encoded = _set_rows([health_row(h) for h in changed])
                if encoded is not None:
                    conn.execute(_Q["set_health_rows"], {"rows": encoded})
                else:
                    for health in changed:
                        conn.execute(_Q["set_health"], health_params(health))
            return results

        return await self._write(write)

    async def disable_endpoint(self, endpoint_id: str, reason: str, now: int) -> str | None:
        key = {"endpoint_id": endpoint_id, "now": now}

        def write(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(_Q["disable_endpoint"], key).fetchone()
            if row is None:
                return None
            conn.execute(
                _Q["hold_endpoint_deliveries"], {**key, "reason": f"endpoint disabled: {reason}"}
            )
            return str(row[0])

        return await self._write(write)

    async def account_disable_after(self, account_id: str) -> int | None:
        def read(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(_Q["account_disable_after"], {"account_id": account_id}).fetchone()
            return None if row is None else row[0]

        return await self._read(read)

    async def set_account_disable_after(self, account_id: str, seconds: int | None) -> bool:
        params = {"account_id": account_id, "disable_after_s": seconds}
        return await self._write(
            lambda conn: conn.execute(_Q["set_account_disable_after"], params).rowcount == 1
        )

    async def replay_dead_since(self, endpoint_id: str, dead_since: int, now: int) -> list[str]:
        params = {"endpoint_id": endpoint_id, "dead_since": dead_since, "now": now}
        return await self._write(
            lambda conn: [r[0] for r in conn.execute(_Q["replay_dead_since"], params).fetchall()]
        )

    async def probe(self, now: int) -> None:
        await self._write(lambda conn: conn.execute(_Q["probe_readiness"], {"now": now}))
