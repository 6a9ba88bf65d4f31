"""Short leases, renewed: an attempt may take longer than its lease and is still sent once."""

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


async def test_an_attempt_longer_than_the_lease_is_renewed_not_taken_over(
    tmp_path: Path, receiver: Receiver
) -> None:
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
                url=receiver.on("/slow", sleep(3)), timeout_ms=60_000, retry_policy=None
            ),
        )
        [result] = await service.messages.submit(
            account.id, [MessageSubmission(event_type="t", payload=b"{}")]
        )
        # A 1 s lease, checked for expiry every 0.1 s: without renewal the delivery would be
        # reclaimed and sent again while the first attempt still waits for its answer.
        dispatcher = Dispatcher(
            storage,
            transport,
            DispatcherSettings(lease_ms=1_000, lease_check_interval_s=0.1, idle_poll_s=0.05),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))

        async def attempted() -> list[Attempt]:
            return await storage.list_attempts(
                account.id, result.deliveries[0].id, after=None, limit=5
            )

        [attempt] = await wait_until(attempted, timeout=15)
        await asyncio.sleep(0.5)
        stop.set()
        await task
    finally:
        await transport.close()
        await storage.close()
    assert attempt.outcome == "delivered" and attempt.duration_ms >= 2_900
    assert len(receiver.at("/slow")) == 1
