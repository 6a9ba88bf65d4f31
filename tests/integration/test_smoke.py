from __future__ import annotations

import time

from postback.core import signing
from postback.core.wire import DeliveryOut
from tests.support.receiver import Receiver, status
from tests.support.service import RunningPostback, wait_until


async def test_delivered_signed_and_dead_lettered(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        good = await pb.create_endpoint(receiver.on("/good", status(204)))
        bad = await pb.create_endpoint(receiver.on("/bad", status(400)))
        accepted = await pb.send("t", {"type": "mo_text", "body": "hello"})
        assert {d.endpoint_id for d in accepted.deliveries} == {good.id, bad.id}
        [arrival] = await receiver.wait_for("/good")
        assert arrival.body == b'{"type":"mo_text","body":"hello"}'
        assert arrival.headers["webhook-id"] == accepted.id
        assert good.signing_secret
        signing.verify(
            [str(good.signing_secret)],
            arrival.headers["webhook-id"],
            arrival.headers["webhook-timestamp"],
            arrival.headers["webhook-signature"],
            arrival.body,
            now_s=time.time(),
        )
        await receiver.wait_for("/bad")

        async def dead_deliveries() -> list[DeliveryOut]:
            return (await pb.list_deliveries(state="dead")).data

        dead = await wait_until(dead_deliveries)
        assert [d.endpoint_id for d in dead] == [bad.id]
        assert dead[0].dead_reason == "permanent failure: HTTP 400"
