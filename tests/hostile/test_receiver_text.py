"""What a receiver answers is stored alike on both backends, whatever bytes it holds."""

from __future__ import annotations

from postback.core.validation import storable_text
from tests.support.receiver import Receiver, status
from tests.support.service import RunningPostback, wait_until


def test_storable_text_replaces_only_what_a_backend_cannot_keep() -> None:
    assert storable_text(None) is None
    assert storable_text("h\u00e9 \\u0000 ok") == "h\u00e9 \\u0000 ok"
    assert storable_text("a\x00b\ud800c") == "a\ufffdb\ufffdc"


async def test_a_nul_in_a_receivers_answer_is_recorded_and_holds_up_nothing(
    service: RunningPostback, receiver: Receiver
) -> None:
    """PostgreSQL refuses NUL in text: unreplaced, the attempt's record would fail, and with it
    every attempt recorded in the same write, again at each retry."""
    async with await service.new_account() as pb:
        await pb.create_endpoint(receiver.on("/nul", status(400, body="bad\x00input")))
        healthy = await pb.create_endpoint(receiver.on("/ok", status(204)))
        accepted = await pb.send("t", {"n": 1})

        async def settled() -> bool:
            deliveries = (await pb.get_message(accepted.id)).deliveries
            return all(d.state in ("delivered", "dead") for d in deliveries)

        await wait_until(settled, timeout=15)
        by_endpoint = {d.endpoint_id: d for d in (await pb.get_message(accepted.id)).deliveries}
        assert by_endpoint[healthy.id].state == "delivered"
        [dead] = [d for d in by_endpoint.values() if d.endpoint_id != healthy.id]
        assert dead.state == "dead" and dead.last_status_code == 400
        [attempt] = (await pb.list_attempts(dead.id)).data
        assert attempt.response_body == "bad\ufffdinput"
