from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.postgres import fresh_schema
from tests.support.receiver import Receiver
from tests.support.service import RunningPostback, start_postback


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'postback.db'}"


@pytest.fixture
async def postback(sqlite_url: str) -> AsyncIterator[RunningPostback]:
    """A running Postback (API + dispatcher) on a fresh SQLite file."""
    running = await start_postback(sqlite_url)
    try:
        yield running
    finally:
        await running.shutdown()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1; script it with ``receiver.on(path, behaviour)``."""
    running = await Receiver().start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A URL for a fresh schema on the real PostgreSQL (fails, never skips, without it)."""
    async with fresh_schema() as url:
        yield url


@pytest.fixture
async def postback_pg(postgres_url: str) -> AsyncIterator[RunningPostback]:
    """A running Postback (API + dispatcher) on a fresh PostgreSQL schema."""
    running = await start_postback(postgres_url)
    try:
        yield running
    finally:
        await running.shutdown()
