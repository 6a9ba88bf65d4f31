"""The storage contract, run on SQLite and on the machine's real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from postback.store import open_storage
from postback.store.base import Storage
from postback.store.sealing import Sealer
from tests.storage.contract import StorageContract
from tests.support.postgres import fresh_schema


class TestSQLiteStorage(StorageContract):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[Storage]:  # type: ignore[override]
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
