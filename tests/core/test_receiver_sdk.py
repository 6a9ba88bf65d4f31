"""postback.receiver: typed parsing of the built-in types, clear errors, dedup, credentials."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest

import postback
from postback import receiver
from postback.receiver import Deduplicator, PayloadError, parse
from postback.receiver.events import (
    BatchDeliveryReport,
    InboundText,
    NotifyDeliveryReceipt,
    NotifyReceivedText,
    RecipientDeliveryReport,
)

# The request sample of the seeds' "Incoming SMS" webhook (Sinch), verbatim.
SEED_MO_TEXT = b"""{
  "body": "This is a test message.",
  "from": "16051234567",
  "id": "01XXXXX21XXXXX119Z8P1XXXXX",
  "operator_id": "string",
  "received_at": "2022-08-24T14:15:22Z",
  "sent_at": "2022-08-24T14:15:22Z",
  "to": "13185551234",
  "type": "mo_text"
}"""

# The seeds' GOV.UK Notify delivery receipt table, as a payload.
SEED_NOTIFY_RECEIPT = {
    "id": "740e5834-3a29-46b4-9a6f-16142fde533a",
    "reference": None,
    "to": "07700912345",
    "status": "delivered",
    "created_at": "2017-05-14T12:15:30.000000Z",
    "completed_at": "2017-05-14T12:15:30.000000Z",
    "sent_at": None,
    "notification_type": "sms",
    "template_id": "f33517ff-2a88-4f6e-b855-c550268ce08a",
    "template_version": 1,
}


def test_seed_inbound_sample() -> None:
    event = parse(SEED_MO_TEXT)
    assert isinstance(event, InboundText)
    assert event.from_ == "16051234567" and event.to == "13185551234"
    assert event.received_at == datetime(2022, 8, 24, 14, 15, 22, tzinfo=UTC)
    assert event.operator_id == "string" and event.extra == {}
    with pytest.raises(AttributeError):
        event.body = "changed"  # type: ignore[misc]


def test_recipient_and_batch_reports() -> None:
    report = parse(
        {
            "type": "recipient_delivery_report_sms",
            "at": "2022-08-24T14:15:22.123Z",
            "batch_id": "01FC66621XXXXX119Z8PMV1QPQ",
            "code": 401,
            "recipient": "46701234567",
            "status": "Dispatched",
            "operator": "35000",
            "new_field_from_the_future": {"x": 1},
        }
    )
    assert isinstance(report, RecipientDeliveryReport)
    assert report.code == 401 and not report.is_final
    assert report.extra == {"new_field_from_the_future": {"x": 1}}
    batch = parse(
        b'{"type":"delivery_report_sms","batch_id":"b1","total_message_count":3,'
        b'"statuses":[{"code":0,"status":"Delivered","count":2,"recipients":["1","2"]},'
        b'{"code":402,"status":"Failed","count":1}]}'
    )
    assert isinstance(batch, BatchDeliveryReport)
    assert [(s.status, s.count) for s in batch.statuses] == [("Delivered", 2), ("Failed", 1)]
    assert batch.statuses[0].recipients == ("1", "2") and batch.statuses[1].recipients is None


def test_notify_payloads_are_recognised_by_their_fields() -> None:
    receipt = parse(SEED_NOTIFY_RECEIPT)
    assert isinstance(receipt, NotifyDeliveryReceipt)
    assert receipt.template_version == 1 and receipt.reference is None
    text = parse(
        {
            "id": "a",
            "source_number": "447700912345",
            "destination_number": "07700987654",
            "message": "Hello Notify!",
            "date_received": "2017-05-14T12:15:30.000000Z",
        }
    )
    assert isinstance(text, NotifyReceivedText) and text.message == "Hello Notify!"


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        (b"{nope", "$", "not valid JSON"),
        (b"[1]", "$", "JSON object"),
        (b'{"body": "x"}', "$.type", "cannot tell"),
        (b'{"type": "mo_carrier_pigeon"}', "$.type", "unknown event type"),
        (SEED_MO_TEXT.replace(b'"id": "01XXXXX21XXXXX119Z8P1XXXXX",', b""), "$.id", "missing"),
        (
            SEED_MO_TEXT.replace(
                b'"2022-08-24T14:15:22Z",\n  "sent_at"', b'"yesterday",\n  "sent_at"'
            ),
            "$.received_at",
            "datetime",
        ),
        (SEED_MO_TEXT.replace(b"This is a test message.", b"x" * 2001), "$.body", "2000"),
        (
            b'{"type":"delivery_report_sms","batch_id":"b","total_message_count":1,'
            b'"statuses":[{"code":"zero","status":"Delivered","count":1}]}',
            "$.statuses[0].code",
            "int",
        ),
    ],
)
def test_errors_name_the_json_path(body: bytes, path: str, words: str) -> None:
    with pytest.raises(PayloadError) as error:
        parse(body)
    assert error.value.path == path
    assert words in str(error.value)


def test_notify_status_must_be_one_of_four() -> None:
    with pytest.raises(PayloadError) as error:
        parse({**SEED_NOTIFY_RECEIPT, "status": "sent"})
    assert error.value.path == "$.status"


def test_deduplicator_by_webhook_id_with_expiry() -> None:
    now = [0.0]
    seen = Deduplicator(ttl_s=10, max_entries=3, clock=lambda: now[0])
    assert seen.first_time("msg_1") and not seen.first_time("msg_1")
    now[0] = 11
    assert seen.first_time("msg_1")  # forgotten after the TTL
    for i in range(2, 6):
        seen.first_time(f"msg_{i}")
    assert seen.first_time("msg_2")  # evicted by the size bound


def test_credential_helpers() -> None:
    headers = {"Authorization": "Basic c2luY2g6cDp3"}  # sinch:p:w
    assert receiver.check_basic(headers, "sinch", "p:w")
    assert not receiver.check_basic(headers, "sinch", "p")
    assert not receiver.check_basic({}, "sinch", "p:w")
    assert receiver.check_bearer({"authorization": "Bearer t0k"}, "t0k")
    assert not receiver.check_bearer({"authorization": "Bearer t0k"}, "t0")


def test_receiver_needs_no_server_or_http_client() -> None:
    code = "import sys, postback.receiver; assert 'aiohttp' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    assert sorted(postback.__all__) == [
        "APIError",
        "Client",
        "PostbackError",
        "SyncClient",
        "__version__",
    ]
    assert "parse" in receiver.__all__ and "verify" in receiver.__all__


BUILT_IN_SAMPLES = {
    "mo_binary": {
        "type": "mo_binary",
        "id": "01B",
        "from": "16051234567",
        "to": "13185551234",
        "body": "SGVsbG8=",
        "udh": "06050423F423F4",
        "received_at": "2022-08-24T14:15:22Z",
    },
    "mo_media": {
        "type": "mo_media",
        "id": "01M",
        "from": "16051234567",
        "to": "13185551234",
        "body": {
            "subject": "photo",
            "message": "look",
            "media": [{"url": "https://example.com/a.jpg", "content_type": "image/jpeg"}],
        },
        "received_at": "2022-08-24T14:15:22Z",
    },
    "recipient_delivery_report_mms": {
        "type": "recipient_delivery_report_mms",
        "at": "2022-08-24T14:15:22Z",
        "batch_id": "b",
        "code": 0,
        "recipient": "1",
        "status": "Delivered",
        "number_of_message_parts": 1,
    },
    "delivery_report_mms": {
        "type": "delivery_report_mms",
        "batch_id": "b",
        "statuses": [{"code": 0, "status": "Delivered", "count": 1}],
        "total_message_count": 1,
    },
}


@pytest.mark.parametrize("name", sorted(BUILT_IN_SAMPLES))
def test_every_built_in_type_parses_and_validates(name: str) -> None:
    from postback.core.event_schemas import BUILT_IN_SCHEMAS
    from postback.core.payloads import PayloadInvalid, PayloadValidator

    sample = BUILT_IN_SAMPLES[name]
    event = parse(sample)
    assert type(event).__name__ and getattr(event, "type", name) == name
    encoded = json.dumps(sample).encode()
    validator = PayloadValidator(BUILT_IN_SCHEMAS[name])
    validator.check(encoded)  # the ingest-side schema accepts what the SDK parses
    broken = {k: v for k, v in sample.items() if k != "type"}
    with pytest.raises(PayloadInvalid) as error:
        validator.check(json.dumps(broken).encode())
    assert error.value.rule == "required"
    with pytest.raises(PayloadError):
        parse(broken, event_type=name)


def test_the_schemas_and_the_parser_agree_on_the_seed_samples() -> None:
    from postback.core.event_schemas import BUILT_IN_SCHEMAS
    from postback.core.payloads import PayloadValidator

    PayloadValidator(BUILT_IN_SCHEMAS["mo_text"]).check(SEED_MO_TEXT)
    PayloadValidator(BUILT_IN_SCHEMAS["notify_delivery_receipt"]).check(
        json.dumps(SEED_NOTIFY_RECEIPT).encode()
    )


def test_verify_tolerance_and_missing_headers() -> None:
    from postback.core import signing
    from postback.receiver import WebhookVerificationError, verify

    secret = signing.secret_from_key(b"s" * 24)
    body = b'{"a":1}'
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": "1000",
        "Webhook-Signature": signing.sign(signing.secret_key(secret), "msg_1", 1000, body),
    }
    verify(headers, body, secret, now_s=1200)  # header names are case-insensitive
    verify(headers, body, [secret], tolerance=1000, now_s=1900)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(headers, body, secret, now_s=1400)
    with pytest.raises(WebhookVerificationError, match="missing webhook-id"):
        verify({k: v for k, v in headers.items() if k != "Webhook-Id"}, body, secret, now_s=1000)
    with pytest.raises(WebhookVerificationError, match="no secret"):
        verify(headers, body, [], now_s=1000)
