"""Event types with schemas: built-ins as the providers define them, custom ones per account."""

from __future__ import annotations

import json

import pytest

from postback.client import APIError
from tests.core.test_receiver_sdk import SEED_MO_TEXT, SEED_NOTIFY_RECEIPT
from tests.support.payloads import mo_text, recipient_report
from tests.support.receiver import Receiver
from tests.support.service import RunningPostback


async def test_seed_samples_are_accepted_and_delivered_byte_for_byte(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        await pb.create_endpoint(receiver.url("/all"))
        await pb.send("mo_text", SEED_MO_TEXT)
        await pb.send("notify_delivery_receipt", SEED_NOTIFY_RECEIPT)
        await pb.send("recipient_delivery_report_sms", recipient_report(operator="310260"))
        arrivals = await receiver.wait_for("/all", 3)
    assert SEED_MO_TEXT in {a.body for a in arrivals}


@pytest.mark.parametrize(
    ("event_type", "payload", "field", "rule"),
    [
        ("mo_text", mo_text(body="x" * 2001), "payload.body", "maxLength"),
        ("mo_text", {k: v for k, v in mo_text().items() if k != "to"}, "payload", "required"),
        ("mo_text", mo_text(received_at="yesterday"), "payload.received_at", "format"),
        ("mo_text", mo_text(type="mo_binary"), "payload.type", "const"),
        ("recipient_delivery_report_sms", recipient_report(code="0"), "payload.code", "type"),
        (
            "notify_delivery_receipt",
            {**SEED_NOTIFY_RECEIPT, "template_version": "1"},
            "payload.template_version",
            "type",
        ),
        (
            "notify_delivery_receipt",
            {**SEED_NOTIFY_RECEIPT, "status": "sent"},
            "payload.status",
            "enum",
        ),
    ],
)
async def test_payloads_that_break_their_schema_are_refused(
    postback: RunningPostback, event_type: str, payload: dict[str, object], field: str, rule: str
) -> None:
    async with await postback.new_account() as pb:
        with pytest.raises(APIError) as error:
            await pb.send(event_type, payload)
        assert (await pb.list_deliveries()).data == []
    assert error.value.status == 400 and error.value.field == field
    assert f"(rule: {rule})" in error.value.message


async def test_batch_error_names_the_item_and_the_path(postback: RunningPostback) -> None:
    async with await postback.new_account() as pb:
        with pytest.raises(APIError) as error:
            await pb.send_batch(
                [
                    {"event_type": "mo_text", "payload": mo_text()},
                    {
                        "event_type": "recipient_delivery_report_sms",
                        "payload": recipient_report(code=None),
                    },
                ]
            )
    assert error.value.field == "$[1].payload.code"


async def test_a_batch_of_one_event_type_names_the_message_that_breaks_it(
    postback: RunningPostback,
) -> None:
    """The schema is compiled by the first message; later ones of the type are checked with
    it alone (no coroutine each), and still refused by their own path."""
    good = {"event_type": "recipient_delivery_report_sms", "payload": recipient_report()}
    bad = {"event_type": "recipient_delivery_report_sms", "payload": recipient_report(code=None)}
    async with await postback.new_account() as pb:
        with pytest.raises(APIError) as error:
            await pb.send_batch([good, good, bad, good])
        assert (await pb.list_deliveries()).data == []
    assert error.value.status == 400 and error.value.field == "$[2].payload.code"


async def test_custom_event_types(postback: RunningPostback, receiver: Receiver) -> None:
    schema = {
        "type": "object",
        "required": ["order_id", "state"],
        "properties": {"order_id": {"type": "string"}, "state": {"enum": ["paid", "shipped"]}},
    }
    async with await postback.new_account() as pb, await postback.new_account("other") as other:
        with pytest.raises(APIError) as unknown:
            await pb.send("order.updated", {"order_id": "1", "state": "paid"})
        assert (
            unknown.value.field == "event_type" and "POST /v1/event-types" in unknown.value.message
        )
        created = await pb.create_event_type("order.updated", schema, "an order changed")
        assert created.schema == schema and not created.built_in
        await pb.create_endpoint(receiver.url("/orders"), event_types=["order.updated"])
        await pb.send("order.updated", {"order_id": "1", "state": "paid"})
        with pytest.raises(APIError) as bad:
            await pb.send("order.updated", {"order_id": "1", "state": "lost"})
        assert bad.value.field == "payload.state"
        with pytest.raises(APIError) as duplicate:
            await pb.create_event_type("order.updated", {"type": "object"})
        assert duplicate.value.status == 409
        with pytest.raises(APIError) as builtin:
            await pb.create_event_type("mo_text", {"type": "object"})
        assert builtin.value.status == 409
        with pytest.raises(APIError) as invalid:
            await pb.create_event_type("broken", {"type": "no-such-type"})
        assert invalid.value.status == 400 and invalid.value.field == "schema"
        with pytest.raises(APIError) as elsewhere:  # event types belong to one account
            await other.send("order.updated", {"order_id": "1", "state": "paid"})
        assert elsewhere.value.field == "event_type"
        listing = await pb.list_event_types()
        await receiver.wait_for("/orders")
    by_name = {t.name: t for t in listing.data}
    assert by_name["order.updated"].description == "an order changed"
    for name in (
        "mo_text",
        "mo_binary",
        "mo_media",
        "recipient_delivery_report_sms",
        "recipient_delivery_report_mms",
        "delivery_report_sms",
        "delivery_report_mms",
        "notify_delivery_receipt",
        "notify_received_text",
    ):
        assert by_name[name].built_in
    assert by_name["mo_text"].schema["properties"]["body"]["maxLength"] == 2000
    assert json.dumps(by_name["notify_delivery_receipt"].schema)
