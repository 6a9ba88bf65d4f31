"""Rate limits and 429 backoff, measured at a real receiver."""

from __future__ import annotations

import asyncio

from tests.support.receiver import Receiver, sequence, status
from tests.support.service import RunningPostback


def max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class LoopLag:
    """The longest the test's event loop went without running a 10 ms tick. Postback, the
    receiver and this test share the loop here: a stall (a long garbage collection late in a
    full run) holds back arrival stamps, and the requests already sent are stamped at once."""

    def __init__(self) -> None:
        self.most = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.most = max(self.most, loop.time() - before - 0.01)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_rate_limit_is_exact(postback: RunningPostback, receiver: Receiver) -> None:
    rate = 20
    with LoopLag() as lag:
        async with await postback.new_account() as pb:
            await pb.create_endpoint(receiver.url("/limited"), rate_limit_per_s=rate)
            await pb.send_batch([{"event_type": "t", "payload": {"n": i}} for i in range(50)])
            arrivals = await receiver.wait_for("/limited", 50, timeout=15)
    times = [a.at for a in arrivals]
    # A second's worth (and one for the window's edges). A stall of the loop the receiver
    # shares with Postback may hold back the receipt of the one or two requests already sent,
    # and the receiver then stamps them together; the sends held back by the stall still
    # leave 1/rate apart (``Dispatcher._keep_spacing``), so they add nothing.
    held_back = 2 if lag.most > 0.05 else 0
    print(f"\nrate limit {rate}/s: most in 1 s {max_in_window(times)}, loop lag {lag.most:.3f} s")
    assert max_in_window(times) <= rate + 1 + held_back
    # 50 sends spaced 1/20 s apart take at least 49/20 s.
    assert max(times) - min(times) >= 49 / 20 - 0.1


async def test_429_with_retry_after_pauses_only_that_endpoint(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        await pb.create_endpoint(
            receiver.on("/busy", sequence(status(429, {"Retry-After": "2"}), status(200))),
            event_types=["busy"],
            retry_policy={"schedule_s": [0.1, 0.1, 0.1]},
        )
        await pb.create_endpoint(receiver.url("/calm"), event_types=["calm"])
        await pb.send("busy", {"n": 0})
        [first] = await receiver.wait_for("/busy", 1)
        await pb.send_batch([{"event_type": "busy", "payload": {"n": i}} for i in range(1, 4)])
        await pb.send_batch([{"event_type": "calm", "payload": {"n": i}} for i in range(20)])
        calm = await receiver.wait_for("/calm", 20, timeout=5)
        busy = await receiver.wait_for("/busy", 5, timeout=10)
    # The calm endpoint was served during the busy one's pause.
    assert max(a.at for a in calm) - first.at < 1.5
    # Nothing reached the busy endpoint until its Retry-After ran out.
    assert min(a.at for a in busy[1:]) - first.at >= 1.9
