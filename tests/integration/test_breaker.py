"""The circuit breaker, against a real receiver that fails everything and then comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from postback.core.wire import DeliveryOut
from tests.support.receiver import Received, Receiver
from tests.support.service import RunningPostback, start_postback, wait_until

MESSAGES = 40
FAST_RETRIES = {"schedule_s": [0.2] * 10}
"""Without a breaker, 40 messages would make 440 attempts in about two seconds."""


class Switch:
    """503 to everything until turned on, then 200."""

    def __init__(self) -> None:
        self.up = False

    async def __call__(self, request: web.Request, received: Received) -> web.StreamResponse:
        return web.Response(status=200 if self.up else 503)


@pytest.fixture(params=["sqlite", "postgres"])
async def breaking_postback(
    request: pytest.FixtureRequest, sqlite_url: str, postgres_url: str
) -> AsyncIterator[RunningPostback]:
    """Postback whose breaker opens at five failures, for a second each time."""
    url = sqlite_url if request.param == "sqlite" else postgres_url
    running = await start_postback(
        url, breaker_failures=5, breaker_pause_s=1.0, breaker_max_pause_s=1.0
    )
    try:
        yield running
    finally:
        await running.shutdown()


async def test_an_endpoint_that_fails_everything_is_paused_and_loses_nothing(
    breaking_postback: RunningPostback, receiver: Receiver
) -> None:
    switch = Switch()
    async with await breaking_postback.new_account() as pb:
        endpoint = await pb.create_endpoint(
            receiver.on("/down", switch), event_types=["t"], retry_policy=FAST_RETRIES
        )
        await pb.send_batch([{"event_type": "t", "payload": {"n": i}} for i in range(MESSAGES)])
        first = (await receiver.wait_for("/down", 1))[0]
        await asyncio.sleep(first.at + 3.0 - time.time())
        in_three_s = [r for r in receiver.received if r.at < first.at + 3.0]
        # The first burst (one share, 32 in flight, and the few that follow before the fifth
        # failure is recorded), then a probe a second: not 40 messages x 11 attempts.
        print(f"\nbreaker: {len(in_three_s)} requests in the first 3 s")
        assert len(in_three_s) < 60, len(in_three_s)
        page = await pb.list_deliveries(endpoint_id=endpoint.id, limit=100)
        assert {d.state for d in page.data} == {"pending"}  # held, not dead-lettered
        assert max(d.attempt_count for d in page.data) <= 3

        switch.up = True

        async def all_delivered() -> list[DeliveryOut] | None:
            page = await pb.list_deliveries(endpoint_id=endpoint.id, limit=100)
            delivered = [d for d in page.data if d.state == "delivered"]
            return delivered if len(delivered) == MESSAGES else None

        delivered = await wait_until(all_delivered, timeout=20)
        # The pause held deliveries back without using their attempts: retries of 0.2 s for
        # ~5 s would have used all eleven.
        print(f"most attempts of one delivery: {max(d.attempt_count for d in delivered)}")
        assert max(d.attempt_count for d in delivered) <= 4


async def test_with_the_breaker_off_every_retry_goes_out(
    sqlite_url: str, receiver: Receiver
) -> None:
    running = await start_postback(sqlite_url, breaker_failures=0)
    try:
        async with await running.new_account() as pb:
            await pb.create_endpoint(
                receiver.on("/down", Switch()), event_types=["t"], retry_policy=FAST_RETRIES
            )
            await pb.send_batch([{"event_type": "t", "payload": {"n": i}} for i in range(MESSAGES)])
            await receiver.wait_for("/down", 200, timeout=15)
    finally:
        await running.shutdown()
