"""An endpoint's rate limit holds for the whole fleet, not per worker."""

from __future__ import annotations

from pathlib import Path

from postback.core.wire import EndpointCreate
from tests.fleet.conftest import Fleet
from tests.integration.test_pacing import max_in_window
from tests.support.processes import PostbackProcess, worker
from tests.support.receiver import Receiver

RATE = 50
SECONDS = 10


async def test_two_workers_share_one_rate_limit(
    postgres_url: str, fleet: Fleet, receiver: Receiver, tmp_path: Path
) -> None:
    workers: list[PostbackProcess] = []
    try:
        await fleet.service.endpoints.create(
            fleet.account_id, EndpointCreate(url=receiver.url("/limited"), rate_limit_per_s=RATE)
        )
        total = RATE * (SECONDS + 2)
        await fleet.submit(total)
        workers = [worker(postgres_url, tmp_path / f"w{i}.log") for i in range(2)]
        for w in workers:
            w.start()
        await receiver.wait_for("/limited", total, timeout=SECONDS + 20)
        both_alive = all(w.alive() for w in workers)
    finally:
        for w in workers:
            w.kill()
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
