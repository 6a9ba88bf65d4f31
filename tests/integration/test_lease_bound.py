"""An attempt never outlives half its lease, whatever timeout the endpoint asks for."""

from __future__ import annotations

import asyncio
from pathlib import Path

from postback.core.model import Attempt
from postback.core.wire import EndpointCreate
from postback.dispatch.loop import Dispatcher, DispatcherSettings
from postback.ingest import MessageSubmission, Services
from postback.store import open_storage
from postback.transports.http import HTTPTransport
from tests.support.payloads import ANY_OBJECT
from tests.support.processes import TEST_ALLOWED
from tests.support.receiver import Receiver, sleep
from tests.support.service import wait_until


async def test_attempt_timeout_is_capped_by_the_lease(tmp_path: Path, receiver: Receiver) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'lease.db'}")
    await storage.open()
    transport = HTTPTransport(allowed_networks=TEST_ALLOWED)
    try:
        service = Services.build(storage, allowed_networks=TEST_ALLOWED)
        account, _ = await service.accounts.create("lease")
        await service.event_types.create(account.id, "t", ANY_OBJECT)
        await service.endpoints.create(
            account.id,
            EndpointCreate(
                url=receiver.on("/slow", sleep(5)), timeout_ms=60_000, retry_policy=None
            ),
        )
        [result] = await service.messages.submit(
            account.id, [MessageSubmission(event_type="t", payload=b"{}")]
        )
        dispatcher = Dispatcher(storage, transport, DispatcherSettings(lease_ms=2_000))
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))

        async def attempted() -> list[Attempt]:
            return await storage.list_attempts(
                account.id, result.deliveries[0].id, after=None, limit=5
            )

        [attempt] = await wait_until(attempted, timeout=10)
        stop.set()
        await task
    finally:
        await transport.close()
        await storage.close()
    assert attempt.error == "no response within 1 s"
    assert attempt.duration_ms < 2_000
