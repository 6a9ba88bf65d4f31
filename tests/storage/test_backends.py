"""The storage contract, run on SQLite and on the machine's real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

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
