"""How the dispatcher came by its deliveries, as ``/metrics`` counts them: the fast path
(leased by the ingest that stored them) once it knows the endpoint, the claim path before."""

from __future__ import annotations

import re

import aiohttp

from tests.support.receiver import Receiver
from tests.support.service import RunningPostback, wait_until


async def by_label(url: str, counter: str, label: str) -> dict[str, float]:
    """One counter's values by its one label, as ``/metrics`` says now."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as answer:
        text = await answer.text()
    pattern = rf'^{counter}\{{{label}="(\w+)"\}} (\S+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.M)}


async def taken(url: str) -> dict[str, float]:
    return await by_label(url, "postback_deliveries_taken_total", "path")


async def claims(url: str) -> dict[str, float]:
    return await by_label(url, "postback_claims_total", "result")


async def test_an_endpoint_the_dispatcher_knows_gets_its_deliveries_by_the_fast_path(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        await pb.create_endpoint(receiver.url("/hook"))
        await pb.send("t", {"n": 0})
        await receiver.wait_for("/hook")
        # The first went by a claim: the dispatcher had not loaded the endpoint yet.
        assert await taken(postback.url) == {"fast": 0.0, "claim": 1.0}
        await pb.send_batch([{"event_type": "t", "payload": {"n": n}} for n in range(1, 6)])
        await receiver.wait_for("/hook", 6)

        async def counted() -> dict[str, float] | None:
            now = await taken(postback.url)
            return now if sum(now.values()) == 6 else None

        assert await wait_until(counted) == {"fast": 5.0, "claim": 1.0}

        async def claimed() -> dict[str, float] | None:
            now = await claims(postback.url)
            return now if now.get("empty", 0) >= 1 else None

        # Claims are counted by whether they took anything: one took the first delivery. A
        # finished attempt wakes the claim loop, which then finds nothing: an empty claim.
        counts = await wait_until(claimed)
        assert counts["rows"] == 1.0
        assert counts["empty"] >= 1.0
