"""The Sinch signature scheme, checked by Sinch's own Python SDK as a receiver would use it."""

from __future__ import annotations

import time

import pytest
from sinch.domains.sms.sinch_events.v1.sms_sinch_event import SmsSinchEvent

from postback.core import signing
from postback.receiver import WebhookVerificationError, verify
from tests.support.receiver import Receiver
from tests.support.service import RunningPostback

RECIPIENT_REPORT = (
    b'{"at":"2022-08-24T14:15:22.000Z","batch_id":"01FC66621XXXXX119Z8PMV1QPQ",'
    b'"client_reference":"order-1","code":0,"operator_status_at":"2022-08-24T14:15:20.000Z",'
    b'"recipient":"46701234567","status":"Delivered","type":"recipient_delivery_report_sms"}'
)


async def test_sinch_sdk_accepts_our_callbacks(
    postback: RunningPostback, receiver: Receiver
) -> None:
    secret = "my sinch app secret é"
    async with await postback.new_account() as pb:
        endpoint = await pb.create_endpoint(
            receiver.url("/sinch"), signature_scheme="sinch", signing_secret=secret
        )
        assert endpoint.signature_scheme == "sinch" and endpoint.signing_secret == secret
        accepted = await pb.send("recipient_delivery_report_sms", RECIPIENT_REPORT)
        [got] = await receiver.wait_for("/sinch")
    assert got.headers[signing.SINCH_ALGORITHM] == "HmacSHA256"
    assert "webhook-signature" not in got.headers
    assert got.headers["webhook-id"] == accepted.id  # still there to deduplicate on
    sdk = SmsSinchEvent(app_secret=secret)
    assert sdk.validate_authentication_header(got.headers, got.body)
    assert not SmsSinchEvent(app_secret="another secret").validate_authentication_header(
        got.headers, got.body
    )
    event = sdk.parse_event(got.body)
    assert event.batch_id == "01FC66621XXXXX119Z8PMV1QPQ" and event.recipient == "46701234567"
    verify(got.headers, got.body, secret)  # our receiver SDK speaks the scheme too
    with pytest.raises(WebhookVerificationError):
        verify(got.headers, got.body, "wrong")


async def test_generated_sinch_secret_and_rotation(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        endpoint = await pb.create_endpoint(receiver.url("/s"), signature_scheme="sinch")
        generated = str(endpoint.signing_secret)
        assert len(generated) >= 32 and not generated.startswith("whsec_")
        rotated = await pb.rotate_secret(endpoint.id, key="the new sinch secret")
        await pb.send("t", {"n": 1})
        [got] = await receiver.wait_for("/s")
    assert rotated.key == "the new sinch secret"
    assert SmsSinchEvent(app_secret="the new sinch secret").validate_authentication_header(
        got.headers, got.body
    )


def test_sinch_signature_matches_the_sdk_computation() -> None:
    from sinch.domains.authentication.sinch_events.v1.authentication_validation import (
        calculate_sinch_event_signature,
        compute_signed_data,
    )

    body = RECIPIENT_REPORT.decode()
    expected = calculate_sinch_event_signature(
        compute_signed_data(body, "01FJA8B4A7BM43YGWSG9GBV067", "1634579353"), "foo_secret1234"
    )
    ours = signing.sinch_signature(
        "foo_secret1234", RECIPIENT_REPORT, "01FJA8B4A7BM43YGWSG9GBV067", 1634579353
    )
    assert ours == expected
    signing.verify_sinch(
        ["x", "foo_secret1234"],
        "01FJA8B4A7BM43YGWSG9GBV067",
        "1634579353",
        ours,
        RECIPIENT_REPORT,
        now_s=1634579353 + 10,
    )
    with pytest.raises(signing.SignatureError):
        signing.verify_sinch(
            ["foo_secret1234"], "n", "1634579353", ours, RECIPIENT_REPORT, now_s=time.time()
        )
