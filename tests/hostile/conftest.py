from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.postgres import fresh_schema
from tests.support.service import RunningPostback, start_postback


@pytest.fixture(params=["sqlite", "postgres"])
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningPostback]:
    """A running Postback on each backend: hostile input must be refused alike on both
    (SQLite tests do not depend on PostgreSQL being up)."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'postback.db'}"
        else:
            url = await stack.enter_async_context(fresh_schema())
        running = await start_postback(url)
        try:
            yield running
        finally:
            await running.shutdown()
