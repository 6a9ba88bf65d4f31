from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.service import RunningPostback, start_postback


@pytest.fixture(params=["sqlite", "postgres"])
async def service(
    request: pytest.FixtureRequest, sqlite_url: str, postgres_url: str
) -> AsyncIterator[RunningPostback]:
    """A running Postback on each backend: hostile input must be refused alike on both."""
    running = await start_postback(sqlite_url if request.param == "sqlite" else postgres_url)
    try:
        yield running
    finally:
        await running.shutdown()
