"""The SSRF guard end to end: refused at save time, and again at connect time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postback.client import APIError
from postback.core.wire import EndpointCreate
from postback.dispatch.loop import Dispatcher
from postback.ingest import MessageSubmission, Services
from postback.store import open_storage
from postback.transports.http import HTTPTransport
from tests.support.receiver import Receiver
from tests.support.service import RunningPostback, start_postback, wait_until


@pytest.fixture
async def guarded(sqlite_url: str) -> AsyncIterator[RunningPostback]:
    """Postback with the default guard: no allow-list at all."""
    running = await start_postback(sqlite_url, allow_networks="")
    yield running
    await running.shutdown()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost:8080/hook",
        "http://0x7f000001/hook",
        "http://2130706433/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/hook",
        "http://192.168.1.10/hook",
        "http://100.64.1.1/hook",
    ],
)
async def test_forbidden_destinations_refused_at_creation(
    guarded: RunningPostback, url: str
) -> None:
    async with await guarded.new_account() as pb:
        with pytest.raises(APIError) as refused:
            await pb.create_endpoint(url)
        assert refused.value.status == 400 and refused.value.field == "url"
        assert "not allowed" in refused.value.message
        assert (await pb.list_endpoints()).data == []


async def test_callback_url_and_token_url_are_guarded_too(guarded: RunningPostback) -> None:
    async with await guarded.new_account() as pb:
        with pytest.raises(APIError) as refused:
            await pb.send("t", {"n": 1}, callback_url="http://127.0.0.1:9/x")
        assert refused.value.field == "callback_url"
        with pytest.raises(APIError) as token:
            await pb.create_endpoint(
                "https://example.com/hook",
                auth={
                    "type": "oauth2",
                    "token_url": "http://169.254.169.254/token",
                    "client_id": "a",
                    "client_secret": "b",
                },
            )
        assert token.value.field == "auth.token_url"


async def test_connect_time_check_blocks_what_slipped_past_creation(
    tmp_path: Path, receiver: Receiver
) -> None:
    """An endpoint stored while the address was allowed (or before DNS rebound to it) is
    still refused by the dispatcher, whose guard judges the address it connects to."""
    storage = open_storage(f"sqlite:///{tmp_path / 'pb.db'}")
    await storage.open()
    try:
        service = Services.build(storage, guard_destinations=False)
        account, _ = await service.accounts.create("a")
        await service.event_types.create(account.id, "t", {"type": "object"})
        for url in (receiver.url("/by-ip"), f"http://localhost:{receiver.port}/by-name"):
            await service.endpoints.create(account.id, EndpointCreate(url=url))
        [result] = await service.messages.submit(
            account.id, [MessageSubmission(event_type="t", payload=b'{"n":1}')]
        )
        transport = HTTPTransport()  # the default guard, no allow-list
        dispatcher = Dispatcher(storage, transport)
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))

        async def all_dead() -> bool:
            counts = await storage.count_by_state(account.id)
            return counts.get("dead", 0) == 2

        await wait_until(all_dead)
        stop.set()
        await task
        await transport.close()
        reasons = {
            d.endpoint_id: d.dead_reason
            for d in await storage.list_deliveries(account.id, message_id=result.message_id)
        }
    finally:
        await storage.close()
    assert receiver.received == []
    assert all(r is not None and r.startswith("blocked destination:") for r in reasons.values())
    assert any(r is not None and "localhost resolves to a loopback" in r for r in reasons.values())
