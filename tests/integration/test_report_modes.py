"""Delivery-report modes: raw recipient statuses in, the callbacks the batch's mode asks for out."""

from __future__ import annotations

import json

import pytest
from sinch.domains.sms.sinch_events.v1.sms_sinch_event import SmsSinchEvent

from postback.client import APIError, Client
from tests.support.receiver import Receiver, sequence, status
from tests.support.service import RunningPostback

AT = "2026-11-23T10:00:00.000Z"


def update(recipient: str, state: str, code: int = 0) -> dict[str, object]:
    return {"recipient": recipient, "status": state, "code": code, "at": AT}


async def reports_endpoint(pb: Client, receiver: Receiver, path: str = "/reports") -> None:
    await pb.create_endpoint(
        receiver.url(path),
        event_types=[
            "recipient_delivery_report_sms",
            "delivery_report_sms",
            "recipient_delivery_report_mms",
            "delivery_report_mms",
        ],
        retry_policy={"schedule_s": [0.3, 0.3]},
    )


async def test_per_recipient_sends_every_change_in_order(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        # The first callback fails once: the recipient's next report must wait for it.
        receiver.on("/reports", sequence(status(503), status(204)))
        await reports_endpoint(pb, receiver)
        first = await pb.batch_recipient_status(
            "batch-1",
            delivery_report="per_recipient",
            statuses=[update("4670001", "Dispatched")],
            client_reference="order-9",
        )
        second = await pb.batch_recipient_status(
            "batch-1", delivery_report="per_recipient", statuses=[update("4670001", "Delivered")]
        )
        arrivals = await receiver.wait_for("/reports", 3)
    assert len(first.messages) == 1 and len(second.messages) == 1
    assert not first.batch_report_sent
    bodies = [json.loads(a.body) for a in arrivals]
    assert [b["status"] for b in bodies] == ["Dispatched", "Dispatched", "Delivered"]
    assert bodies[0]["client_reference"] == "order-9" and bodies[0]["batch_id"] == "batch-1"
    event = SmsSinchEvent(app_secret="x").parse_event(arrivals[-1].body)  # Sinch's own SDK
    assert event.status == "Delivered" and event.recipient == "4670001"


async def test_per_recipient_final_skips_intermediate_statuses(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        await reports_endpoint(pb, receiver)
        result = await pb.batch_recipient_status(
            "b2",
            delivery_report="per_recipient_final",
            statuses=[
                update("1", "Queued"),
                update("1", "Dispatched"),
                update("1", "Failed", 402),
                update("2", "Dispatched"),
            ],
        )
        [arrival] = await receiver.wait_for("/reports", 1)
    assert len(result.messages) == 1
    assert json.loads(arrival.body)["status"] == "Failed"


@pytest.mark.parametrize("mode", ["summary", "full"])
async def test_batch_report_once_every_recipient_is_final(
    postback: RunningPostback, receiver: Receiver, mode: str
) -> None:
    async with await postback.new_account() as pb:
        await reports_endpoint(pb, receiver)
        waiting = await pb.batch_recipient_status(
            "b3",
            delivery_report=mode,
            recipients=["1", "2", "3"],
            statuses=[update("1", "Delivered"), update("2", "Dispatched")],
        )
        assert not waiting.batch_report_sent and waiting.messages == []
        done = await pb.batch_recipient_status(
            "b3",
            delivery_report=mode,
            statuses=[update("2", "Delivered"), update("3", "Failed", 402)],
        )
        again = await pb.batch_recipient_status(
            "b3", delivery_report=mode, statuses=[update("3", "Failed", 402)]
        )
        [arrival] = await receiver.wait_for("/reports", 1)
    assert done.batch_report_sent and not again.batch_report_sent and again.messages == []
    report = json.loads(arrival.body)
    assert report["type"] == "delivery_report_sms" and report["total_message_count"] == 3
    expected = [
        {"code": 0, "status": "Delivered", "count": 2},
        {"code": 402, "status": "Failed", "count": 1},
    ]
    if mode == "full":
        expected[0]["recipients"] = ["1", "2"]
        expected[1]["recipients"] = ["3"]
    assert report["statuses"] == expected
    event = SmsSinchEvent(app_secret="x").parse_event(arrival.body)  # Sinch's own SDK parses it
    assert event.batch_id == "b3"


async def test_batch_report_at_the_deadline(postback: RunningPostback, receiver: Receiver) -> None:
    async with await postback.new_account() as pb:
        await reports_endpoint(pb, receiver)
        await pb.batch_recipient_status(
            "b4",
            delivery_report="summary",
            type="mms",
            recipients=["1", "2"],
            statuses=[update("1", "Delivered"), update("2", "Dispatched")],
            report_deadline_s=1,
        )
        [arrival] = await receiver.wait_for("/reports", 1, timeout=10)
    report = json.loads(arrival.body)
    assert report["type"] == "delivery_report_mms"
    assert {(s["status"], s["count"]) for s in report["statuses"]} == {
        ("Delivered", 1),
        ("Dispatched", 1),
    }


async def test_none_sends_nothing_and_mistakes_are_named(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        await reports_endpoint(pb, receiver)
        quiet = await pb.batch_recipient_status(
            "b5", delivery_report="none", statuses=[update("1", "Delivered")]
        )
        assert quiet.messages == [] and not quiet.batch_report_sent
        with pytest.raises(APIError) as conflict:
            await pb.batch_recipient_status("b5", delivery_report="full")
        assert conflict.value.status == 409
        with pytest.raises(APIError) as bad:
            await pb.batch_recipient_status(
                "b6", delivery_report="summary", statuses=[update("1", "Sent")]
            )
        assert bad.value.field == "statuses[0].status"
        with pytest.raises(APIError) as mode:
            await pb.batch_recipient_status("b6", delivery_report="sometimes")
        assert mode.value.field == "delivery_report"
    assert receiver.at("/reports") == []
