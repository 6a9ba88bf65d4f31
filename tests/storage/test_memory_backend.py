"""The storage contract on the in-memory backend (tests and tools only, never ``serve``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from postback.store.base import Storage
from postback.store.memory import MemoryStorage
from postback.store.sealing import Sealer
from tests.storage.contract import StorageContract


class TestMemoryStorage(StorageContract):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[Storage]:
        storage = MemoryStorage(Sealer.ephemeral())
        await storage.open()
        yield storage
        await storage.close()
