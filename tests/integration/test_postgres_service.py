"""The whole service on PostgreSQL: the same end-to-end behaviour as on SQLite."""

from __future__ import annotations

from postback.core.wire import DeliveryOut
from tests.integration.test_pacing import LoopLag, max_in_window
from tests.support.payloads import mo_text
from tests.support.receiver import Receiver, sequence, status
from tests.support.service import RunningPostback, wait_until


async def test_deliver_retry_and_dead_letter_on_postgres(
    postback_pg: RunningPostback, receiver: Receiver
) -> None:
    async with await postback_pg.new_account() as pb:
        await pb.create_endpoint(receiver.url("/ok"))
        await pb.create_endpoint(
            receiver.on("/flaky", sequence(status(500), status(200))),
            retry_policy={"schedule_s": [0.2]},
        )
        bad = await pb.create_endpoint(receiver.on("/bad", status(400)))
        accepted = await pb.send("mo_text", mo_text("hi"))
        [ok] = await receiver.wait_for("/ok")
        flaky = await receiver.wait_for("/flaky", 2)
        assert ok.headers["webhook-id"] == accepted.id
        assert flaky[0].body == flaky[1].body == ok.body

        async def dead() -> list[DeliveryOut]:
            return (await pb.list_deliveries(state="dead")).data

        [dead_delivery] = await wait_until(dead)
        assert dead_delivery.endpoint_id == bad.id
        again = await pb.send("t", {"n": 2}, idempotency_key="k")
        same = await pb.send("t", {"n": 2}, idempotency_key="k")
        assert same.duplicate and same.id == again.id


async def test_rate_limit_on_postgres(postback_pg: RunningPostback, receiver: Receiver) -> None:
    with LoopLag() as lag:
        async with await postback_pg.new_account() as pb:
            await pb.create_endpoint(receiver.url("/limited"), rate_limit_per_s=20)
            await pb.send_batch([{"event_type": "t", "payload": {"n": i}} for i in range(40)])
            arrivals = await receiver.wait_for("/limited", 40, timeout=15)
    # As on SQLite (test_pacing.test_rate_limit_is_exact): a stall of the loop the receiver
    # shares with Postback holds back the receipt of a request already sent, and the receiver
    # stamps it together with the next (seen once in a full run: two arrivals 0.2 ms apart,
    # then 50 ms apart). Allowed only when such a stall was measured.
    held_back = 2 if lag.most > 0.05 else 0
    assert max_in_window([a.at for a in arrivals]) <= 21 + held_back
