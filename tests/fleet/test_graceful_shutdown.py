"""SIGTERM: a worker stops claiming, hands back what it cannot finish, and exits in time."""

from __future__ import annotations

import time
from pathlib import Path

from postback.service import MessageSubmission, Postback
from postback.storage import open_storage
from tests.support.processes import TEST_ALLOWED, TEST_SEALER, worker
from tests.support.receiver import Receiver, sleep


async def test_sigterm_releases_unfinished_work_and_exits(
    postgres_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    storage = open_storage(postgres_url, TEST_SEALER)
    await storage.open(migrate=True)
    process = worker(postgres_url, tmp_path / "worker.log", POSTBACK_SHUTDOWN_TIMEOUT_SECONDS="2")
    try:
        service = Postback(storage, allowed_networks=TEST_ALLOWED)
        account, _key = await service.create_account("graceful")
        await service.create_event_type(account.id, "t", {"type": "object"})
        await service.create_endpoint(
            account.id, url=receiver.on("/hang", sleep(8)), timeout_ms=7_000
        )
        await service.submit(
            account.id,
            [MessageSubmission(event_type="t", payload=b'{"n":%d}' % n) for n in range(3)],
        )
        process.start()
        await receiver.wait_for("/hang", 3, timeout=15)
        assert (await storage.count_by_state(None)).get("delivering") == 3
        started = time.monotonic()
        code = process.terminate(timeout=20)
        took = time.monotonic() - started
        counts = await storage.count_by_state(None)
    finally:
        process.kill()
        await storage.close()
    assert code == 0
    assert took < 5  # the shutdown timeout is 2 s, well below the 7 s attempt timeout
    # Nothing is left leased to the dead worker: the three are pending again, due now.
    assert counts == {"pending": 3}
