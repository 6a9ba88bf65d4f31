"""The storage contract, run on SQLite and on the machine's real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest

from postback.store import open_storage
from postback.store.base import Storage
from postback.store.sealing import Sealer
from tests.storage.contract import StorageContract
from tests.support.postgres import fresh_schema
from tests.support.service import wait_until


class TestSQLiteStorage(StorageContract):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:  # type: ignore[override]
        storage = open_storage(f"sqlite:///{tmp_path / 'contract.db'}", Sealer.ephemeral())
        await storage.open()
        yield storage
        await storage.close()


class TestSQLiteStorageListedAtOnce(StorageContract):
    """The contract again with every commit listing its new deliveries in endpoint_deliveries
    (migration 0011), where the default does so once a second: listings by endpoint read it,
    not the newest rows of ``deliveries``, so both halves of those queries are proven."""

    @pytest.fixture
    async def storage(  # type: ignore[override]
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[Storage]:
        import postback.store.sqlite as sqlite_store

        monkeypatch.setattr(sqlite_store, "LIST_NEW_DELIVERIES_EVERY_S", 0.0)
        storage = open_storage(f"sqlite:///{tmp_path / 'contract.db'}", Sealer.ephemeral())
        await storage.open()
        yield storage
        await storage.close()


class TestPostgresStorage(StorageContract):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[Storage]:  # type: ignore[override]
        async with fresh_schema() as url:
            storage = open_storage(url, Sealer.ephemeral())
            await storage.open()
            yield storage
            await storage.close()


async def test_sqlite_writes_row_by_row_what_one_json_array_cannot_carry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set-based statements fall back to row-by-row ones for a NUL in a text, a payload
    that is not UTF-8, or a set over the size limit; all three store the same rows."""
    import postback.store.sqlite as sqlite_store
    from postback.core.model import DeliveryState
    from tests.storage.contract import T0, WINDOW, account, endpoint, message, record

    storage = open_storage(f"sqlite:///{tmp_path / 'fallback.db'}", Sealer.ephemeral())
    await storage.open()
    try:
        acct = await account(storage)
        await endpoint(storage, acct.id)
        monkeypatch.setattr(sqlite_store, "SET_ROWS_MOST_BYTES", 64)  # every set is too large
        big = [message(payload=b'{"n":%d}' % i) for i in range(3)]
        results = await storage.ingest(acct.id, big, T0, WINDOW)
        monkeypatch.undo()
        results += await storage.ingest(acct.id, [message(payload=b"\xff not UTF-8")], T0, WINDOW)
        for result, sent in zip(results, [*big, None], strict=True):
            stored = await storage.get_message(acct.id, result.message_id)
            assert stored is not None
            assert stored.payload == (sent.payload if sent else b"\xff not UTF-8")
        claimed = await storage.claim(T0, 10, 60_000)
        assert len(claimed) == 4
        nul = "a\x00b"  # kept as it is by SQLite, row by row
        records = [record(c.delivery_id, DeliveryState.DELIVERED) for c in claimed]
        records[0] = msgspec.structs.replace(
            records[0], attempt=msgspec.structs.replace(records[0].attempt, response_body=nul)
        )
        await storage.record(records)
        [attempt] = await storage.list_attempts(
            acct.id, claimed[0].delivery_id, after=None, limit=5
        )
        assert attempt.response_body == nul
        for c in claimed:
            delivery = await storage.get_delivery(acct.id, c.delivery_id)
            assert delivery is not None and delivery.state is DeliveryState.DELIVERED
    finally:
        await storage.close()


async def test_sqlite_writes_queued_while_another_process_holds_the_file_join_one_commit(
    tmp_path: Path,
) -> None:
    """Another process holds the file lock (here: this test, through its own descriptor).
    The write the writer thread took first waits for it; writes queued meanwhile join that
    same transaction instead of queuing for the lock again. None is lost, and the one that
    fails is rolled back alone."""
    import asyncio
    import fcntl
    import os
    import sqlite3

    path = tmp_path / "contended.db"
    storage = open_storage(f"sqlite:///{path}", Sealer.ephemeral())
    await storage.open()
    statements: list[str] = []

    def job(name: str, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
        def write(conn: sqlite3.Connection) -> str:
            if name == "first":
                conn.set_trace_callback(statements.append)
            conn.execute(f"SELECT '{name}'")
            if fail:
                raise ValueError("this job fails")
            return name

        return write

    holder = os.open(f"{path}.lock", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        writer = storage._writer  # type: ignore[attr-defined]
        first = asyncio.ensure_future(storage._write(job("first")))  # type: ignore[attr-defined]
        await asyncio.sleep(0)  # it is queued

        async def taken() -> bool:  # the writer took it and waits for the lock
            return bool(writer.jobs.empty())

        await wait_until(taken, interval=0.005)
        await asyncio.sleep(0.05)
        queued = [
            asyncio.ensure_future(storage._write(job(name, fail=name == "bad")))  # type: ignore[attr-defined]
            for name in ("second", "bad", "third")
        ]
        await asyncio.sleep(0.05)
        assert not first.done()
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    try:
        assert await first == "first"
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert results[0] == "second" and results[2] == "third"
        assert isinstance(results[1], ValueError)
        marks = [s for s in statements if s.startswith("SELECT '") or s == "COMMIT"]
        assert marks == [*(f"SELECT '{n}'" for n in ("first", "second", "bad", "third")), "COMMIT"]
    finally:
        await storage.close()


async def test_sqlite_commits_every_other_write_first_and_ingests_a_bounded_amount_each(
    tmp_path: Path,
) -> None:
    """Writes queued together: what is not an ingest (recording attempts, claims) goes in the
    next commit, ingests in order up to INGESTED_PER_COMMIT messages a commit (at least one),
    so a record never waits behind several large batches of new messages."""
    import asyncio
    import fcntl
    import os
    import sqlite3

    import postback.store.sqlite as sqlite_store

    path = tmp_path / "ingest-bound.db"
    storage = open_storage(f"sqlite:///{path}", Sealer.ephemeral())
    await storage.open()
    statements: list[str] = []
    write = storage._write  # type: ignore[attr-defined]
    await write(lambda conn: conn.set_trace_callback(statements.append))
    statements.clear()  # that write's own COMMIT

    def job(name: str) -> Callable[[sqlite3.Connection], str]:
        def run(conn: sqlite3.Connection) -> str:
            conn.execute(f"SELECT '{name}'")
            return name

        return run

    assert sqlite_store.INGESTED_PER_COMMIT == 1000
    holder = os.open(f"{path}.lock", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as another process would: everything below queues
    try:
        sizes = {"big": 600, "next": 600, "small": 300, "huge": 5000}
        queued = [asyncio.ensure_future(write(job(n), ingested=k)) for n, k in sizes.items()]
        queued.append(asyncio.ensure_future(write(job("record"))))

        async def taken() -> bool:  # the writer took them all and waits for the lock
            return bool(storage._writer.jobs.empty())  # type: ignore[attr-defined]

        await wait_until(taken, interval=0.005)
        await asyncio.sleep(0.05)
    finally:
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
    try:
        assert await asyncio.gather(*queued) == [*sizes, "record"]
        marks = [s for s in statements if s.startswith("SELECT '") or s == "COMMIT"]
        assert marks == [
            "SELECT 'record'",
            "SELECT 'big'",
            "COMMIT",
            "SELECT 'next'",
            "SELECT 'small'",
            "COMMIT",
            "SELECT 'huge'",
            "COMMIT",
        ]
    finally:
        await storage.close()
