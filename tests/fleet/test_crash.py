"""Workers SIGKILLed at random moments lose nothing: at-least-once, duplicates bounded."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from postback.core.model import DeliveryState
from postback.core.wire import EndpointCreate
from tests.fleet.conftest import Fleet
from tests.support.processes import PostbackProcess, worker
from tests.support.receiver import Receiver

EVENTS = 5000
WORKERS = 3
LEASE_S = 3
SHARE = 100
"""The endpoint's in-flight share counts the whole fleet, including a killed worker's
deliveries until their lease ends: with the default 32 and a kill every half second, the one
endpoint here would spend the test waiting for leases rather than exercising recovery."""


async def test_sigkilled_workers_lose_nothing(
    postgres_url: str, fleet: Fleet, receiver: Receiver, tmp_path: Path
) -> None:
    storage = fleet.storage
    workers: list[PostbackProcess] = []
    try:
        await fleet.service.endpoints.create(
            fleet.account_id, EndpointCreate(url=receiver.url("/hook"))
        )
        await fleet.submit(EVENTS)
        workers = [
            worker(
                postgres_url,
                tmp_path / f"worker{i}.log",
                POSTBACK_LEASE_SECONDS=str(LEASE_S),
                POSTBACK_ENDPOINT_CONCURRENCY=str(SHARE),
            )
            for i in range(WORKERS)
        ]
        for w in workers:
            w.start()
        rng = random.Random(7)
        in_flight_at_kills = 0
        kills = 0
        deadline = time.monotonic() + 100
        # Kill a random worker at random moments while work remains, and restart it.
        while len(receiver.received) < EVENTS * 0.8 and time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(0.2, 0.8))
            victim = rng.choice(workers)
            counts = await storage.count_by_state(None)
            in_flight_at_kills += counts.get(DeliveryState.DELIVERING.value, 0)
            victim.kill()
            kills += 1
            victim.start()

        async def all_delivered() -> bool:
            counts = await storage.count_by_state(None)
            return counts.get("delivered", 0) == EVENTS

        while not await all_delivered():
            assert time.monotonic() < deadline, "deliveries did not finish in time"
            await asyncio.sleep(0.25)
    finally:
        for w in workers:
            w.kill()
    ids = [r.headers["webhook-id"] for r in receiver.received]
    unique = set(ids)
    duplicates = len(ids) - len(unique)
    print(
        f"\ncrash test: {kills} kills, {len(ids)} received, {len(unique)} unique, "
        f"{duplicates} received twice or more, {in_flight_at_kills} in flight at the kills"
    )
    assert kills >= 3
    assert len(unique) == EVENTS
    assert duplicates <= in_flight_at_kills
