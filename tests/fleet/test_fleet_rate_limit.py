"""An endpoint's rate limit holds for the whole fleet, not per worker."""

from __future__ import annotations

from pathlib import Path

from postback.service import MessageSubmission, Postback
from postback.storage import open_storage
from tests.integration.test_pacing import max_in_window
from tests.support.processes import TEST_ALLOWED, TEST_SEALER, PostbackProcess, worker
from tests.support.receiver import Receiver

RATE = 50
SECONDS = 10


async def test_two_workers_share_one_rate_limit(
    postgres_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    storage = open_storage(postgres_url, TEST_SEALER)
    await storage.open(migrate=True)
    workers: list[PostbackProcess] = []
    try:
        service = Postback(storage, allowed_networks=TEST_ALLOWED)
        account, _key = await service.create_account("fleet")
        await service.create_event_type(account.id, "t", {"type": "object"})
        await service.create_endpoint(
            account.id, url=receiver.url("/limited"), rate_limit_per_s=RATE
        )
        total = RATE * (SECONDS + 2)
        await service.submit(
            account.id,
            [MessageSubmission(event_type="t", payload=b'{"n":%d}' % n) for n in range(total)],
        )
        workers = [worker(postgres_url, tmp_path / f"w{i}.log") for i in range(2)]
        for w in workers:
            w.start()
        await receiver.wait_for("/limited", total, timeout=SECONDS + 20)
        both_alive = all(w.alive() for w in workers)
    finally:
        for w in workers:
            w.kill()
        await storage.close()
    times = sorted(r.at for r in receiver.received)
    # Skip the first second (workers start at different moments); measure the next 10 s.
    start = times[0] + 1.0
    window = [t for t in times if start <= t < start + SECONDS]
    rate = len(window) / SECONDS
    peak = max_in_window(times)
    print(
        f"\nfleet rate limit {RATE}/s: measured {rate:.1f}/s over {SECONDS} s, peak {peak} in 1 s"
    )
    assert both_alive
    assert rate <= RATE * 1.1
    assert rate >= RATE * 0.8  # the limit is a limit, not a stall
    assert peak <= RATE * 1.1
    logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
    assert "Traceback" not in logs
