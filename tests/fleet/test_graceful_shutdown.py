"""SIGTERM: a worker stops claiming, hands back what it cannot finish, and exits in time."""

from __future__ import annotations

import time
from pathlib import Path

from postback.core.wire import EndpointCreate
from tests.fleet.conftest import Fleet
from tests.support.processes import worker
from tests.support.receiver import Receiver, sleep


async def test_sigterm_releases_unfinished_work_and_exits(
    postgres_url: str, fleet: Fleet, receiver: Receiver, tmp_path: Path
) -> None:
    storage = fleet.storage
    process = worker(postgres_url, tmp_path / "worker.log", POSTBACK_SHUTDOWN_TIMEOUT_SECONDS="2")
    try:
        await fleet.service.endpoints.create(
            fleet.account_id, EndpointCreate(url=receiver.on("/hang", sleep(8)), timeout_ms=7_000)
        )
        await fleet.submit(3)
        process.start()
        await receiver.wait_for("/hang", 3, timeout=15)
        assert (await storage.count_by_state(None)).get("delivering") == 3
        started = time.monotonic()
        code = process.terminate(timeout=20)
        took = time.monotonic() - started
        counts = await storage.count_by_state(None)
    finally:
        process.kill()
    assert code == 0
    assert took < 5  # the shutdown timeout is 2 s, well below the 7 s attempt timeout
    # Nothing is left leased to the dead worker: the three are pending again, due now.
    assert counts == {"pending": 3}
