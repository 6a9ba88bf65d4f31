"""The documented receiver example works against a real Postback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from examples.aiohttp_receiver import HANDLED, SECRETS, make_app
from postback.core import signing
from postback.receiver.events import InboundText
from tests.support.service import RunningPostback, free_port, wait_until


@pytest.fixture
async def example() -> AsyncIterator[tuple[web.Application, int]]:
    app = make_app([])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield app, port
    await runner.cleanup()


async def test_example_receiver_verifies_deduplicates_and_processes(
    postback: RunningPostback, example: tuple[web.Application, int]
) -> None:
    app, port = example
    url = f"http://127.0.0.1:{port}/callbacks"
    async with await postback.new_account() as pb:
        endpoint = await pb.create_endpoint(url)
        secret = str(endpoint.signing_secret)
        app[SECRETS].append(secret)
        accepted = await pb.send(
            "mo_text",
            {
                "type": "mo_text",
                "id": "01X",
                "from": "16051234567",
                "to": "13185551234",
                "body": "hello",
                "received_at": "2022-08-24T14:15:22Z",
            },
        )

        async def processed() -> bool:
            return len(app[HANDLED]) == 1

        await wait_until(processed)
    [event] = app[HANDLED]
    assert isinstance(event, InboundText) and event.body == "hello"
    # The same message again (a retry after a lost response): acknowledged, not processed.
    body = b'{"type":"mo_text","id":"01X","from":"1","to":"2","body":"hello","received_at":"2022-08-24T14:15:22Z"}'
    now = int(time.time())
    headers = {
        "webhook-id": accepted.id,
        "webhook-timestamp": str(now),
        "webhook-signature": signing.sign(signing.secret_key(secret), accepted.id, now, body),
        "content-type": "application/json",
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers) as again:
            assert again.status == 204
        forged = {**headers, "webhook-signature": "v1,AAAA"}
        async with session.post(url, data=body, headers=forged) as bad:
            assert bad.status == 401
    assert len(app[HANDLED]) == 1
