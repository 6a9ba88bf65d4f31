"""Standard Webhooks signatures: the spec's published vector and a third-party verifier."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from postback.core import signing

# The example in the Standard Webhooks specification and its reference libraries' tests.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_spec_vector() -> None:
    key = signing.secret_key(SPEC_SECRET)
    assert signing.sign(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_third_party_library_accepts_our_headers_with_two_secrets() -> None:
    old, new = signing.secret_from_key(b"o" * 24), signing.secret_from_key(b"n" * 32)
    now = int(time.time())
    body = b'{"type":"mo_text","body":"hi"}'
    header = signing.signature_header(
        [signing.secret_key(new), signing.secret_key(old)], "msg_1", now, body
    )
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": header}
    assert len(header.split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, headers)  # raises if it does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.secret_from_key(b"x" * 24)).verify(body, headers)


def test_verify_rules() -> None:
    secret = signing.secret_from_key(b"k" * 24)
    body = b'{"a":1}'
    header = signing.sign(signing.secret_key(secret), "msg_1", 1000, body)
    signing.verify([secret], "msg_1", "1000", header, body, now_s=1100)
    for args, message in (
        (([secret], "msg_1", "1000", header, b'{"a":2}'), "no signature matches"),
        (([secret], "msg_2", "1000", header, body), "no signature matches"),
        (([signing.secret_from_key(b"z" * 24)], "msg_1", "1000", header, body), "no signature"),
        (([secret], "msg_1", "1000", "v2,abc", body), "no v1 signature"),
        (([secret], "msg_1", "soon", header, body), "not an integer"),
    ):
        with pytest.raises(signing.SignatureError, match=message):
            signing.verify(*args, now_s=1100)
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify([secret], "msg_1", "1000", header, body, now_s=1000 + 301)
    # A rotated pair: either secret in the verifier's list is enough.
    signing.verify(["whsec_" + "A" * 32, secret], "msg_1", "1000", header, body, now_s=1000)


@pytest.mark.parametrize("bad", ["whsec_not*base64", "whsec_" + "QUJD", "whsec_" + "A" * 200])
def test_malformed_secrets(bad: str) -> None:
    with pytest.raises(signing.SignatureError):
        signing.secret_key(bad)


@given(key=st.binary(max_size=200), message=st.binary(max_size=300))
def test_prepared_hmac_matches_the_standard_library(key: bytes, message: bytes) -> None:
    """The cached-pad HMAC equals ``hmac`` for every key length, longer than a block included."""
    assert signing.hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()
