"""Two workers split one endpoint's in-flight share: both send to it, neither is kept away by
the other's reserve, and what the endpoint sees at once stays near the share."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
from aiohttp import web

from postback.core.wire import EndpointCreate
from tests.fleet.conftest import Fleet
from tests.support.postgres import POSTGRES_URL
from tests.support.processes import PostbackProcess, worker
from tests.support.receiver import Received, Receiver

SHARE = 8
EVENTS = 1200
ANSWER_S = 0.03


async def test_two_workers_split_one_endpoints_share(
    postgres_url: str, fleet: Fleet, receiver: Receiver, tmp_path: Path
) -> None:
    now = 0
    at_arrival: list[int] = []
    """How many requests were open at the endpoint as each arrived."""

    async def slow(request: web.Request, received: Received) -> web.StreamResponse:
        nonlocal now
        now += 1
        at_arrival.append(now)
        try:
            await asyncio.sleep(ANSWER_S)
        finally:
            now -= 1
        return web.Response(text="ok")

    receiver.on("/hook", slow)
    await fleet.service.endpoints.create(
        fleet.account_id, EndpointCreate(url=receiver.url("/hook"))
    )
    await fleet.submit(EVENTS)
    workers: list[PostbackProcess] = []
    try:
        # The first worker starts alone: it leases its share and a reserve beyond it; the
        # second must still get its part of the share.
        workers.append(
            worker(postgres_url, tmp_path / "w0.log", POSTBACK_ENDPOINT_CONCURRENCY=str(SHARE))
        )
        workers[0].start()
        await receiver.wait_for("/hook", 50, timeout=30)
        workers.append(
            worker(postgres_url, tmp_path / "w1.log", POSTBACK_ENDPOINT_CONCURRENCY=str(SHARE))
        )
        workers[1].start()
        await receiver.wait_for("/hook", EVENTS, timeout=60)
        alive = all(w.alive() for w in workers)
    finally:
        for w in workers:
            w.kill()
    schema = parse_qs(urlsplit(postgres_url).query)["schema"][0]
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        holders = await conn.fetch(
            f"SELECT lease_holder, count(*) FROM {schema}.deliveries GROUP BY lease_holder"
        )
    finally:
        await conn.close()
    sent_by = {r[0]: r[1] for r in holders}
    peak, settled = max(at_arrival), max(at_arrival[EVENTS // 2 :])
    print(
        f"\nfleet share {SHARE}: deliveries by holder {sorted(sent_by.values())}, "
        f"peak {peak}, in the second half {settled}"
    )
    assert alive
    assert len(sent_by) == 2 and None not in sent_by
    # The late one got a real part of the work, not a trickle.
    assert min(sent_by.values()) >= EVENTS // 5
    # Each sends at most its part once it knows of the other: the share, plus for a moment the
    # newcomer's part (ceil(8 / 2)) while the first drains down (core.fanout.fleet_room).
    assert peak <= SHARE + SHARE // 2
    assert settled <= SHARE
    logs = "".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
    assert "Traceback" not in logs
