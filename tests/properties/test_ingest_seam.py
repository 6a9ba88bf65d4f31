"""Properties of the decoding and validation seam: whatever bytes or JSON arrive, the only
exception is the project's own refusal (an ``ApiError`` 400 or an ``InvalidInput``), and
what passes obeys the rules the storage relies on."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postback.api.app import ApiError, decode_body
from postback.core import wire
from postback.core.errors import InvalidInput
from postback.core.model import Auth, SNSDestination
from postback.core.policy import RetryPolicy
from postback.core.validation import (
    MAX_JSON_DEPTH,
    _nesting_within,
    check_auth,
    check_batch_id,
    check_destination_config,
    check_event_type,
    check_event_types,
    check_headers,
    check_json_depth,
    check_policy,
    check_rate,
    check_secret,
    check_text,
    check_timeout,
    check_url,
)

BODY_TYPES: list[Any] = [
    wire.AccountCreate,
    wire.EndpointCreate,
    wire.EndpointUpdate,
    wire.SecretRotate,
    wire.MessageCreate,
    list[wire.MessageCreate],
    wire.ReplayRequest,
    wire.EventTypeCreate,
    wire.RecipientStatusRequest,
]

# Text as hostile as JSON can carry: controls, NUL, lone surrogates, astral characters.
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=30,
)
KEYS = st.sampled_from(
    [
        "url",
        "description",
        "event_types",
        "retry_policy",
        "timeout_ms",
        "rate_limit_per_s",
        "headers",
        "auth",
        "tls",
        "destination",
        "signing_secret",
        "signature_scheme",
        "disabled",
        "event_type",
        "payload",
        "idempotency_key",
        "callback_url",
        "name",
        "schema",
        "type",
        "token",
        "username",
        "password",
        "token_url",
        "client_id",
        "client_secret",
        "preset",
        "schedule_s",
        "initial_s",
        "factor",
        "max_retries",
        "recipients",
        "statuses",
        "delivery_report",
        "key",
        "endpoint_id",
        "since",
        "until",
    ]
)
# Objects shaped like the API's bodies (its field names, hostile values), so decoding gets
# past the first unknown field often enough to reach the later checks.
SHAPED = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)


def _text_encodings(value: Any) -> list[bytes]:
    """JSON encodings of ``value``: escaped (ASCII) and raw (where UTF-8 can carry it)."""
    out = [json.dumps(value, ensure_ascii=True).encode()]
    raw = json.dumps(value, ensure_ascii=False)
    out.append(raw.encode("utf-8", "surrogatepass"))  # lone surrogates as invalid UTF-8
    return out


def _decode_or_refuse(raw: bytes, type_: Any) -> Any:
    try:
        value = decode_body(raw, type_)
    except ApiError as exc:
        assert exc.status == 400 and exc.code in ("invalid_request", "invalid_json")
        assert exc.message
        return None
    check_text(value)  # whatever passed has no NUL or lone surrogate anywhere
    return value


@pytest.mark.parametrize("type_", BODY_TYPES, ids=lambda t: getattr(t, "__name__", str(t)))
@settings(max_examples=100)
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_are_decoded_or_refused(type_: Any, raw: bytes) -> None:
    _decode_or_refuse(raw, type_)


@pytest.mark.parametrize("type_", BODY_TYPES, ids=lambda t: getattr(t, "__name__", str(t)))
@settings(max_examples=100)
@given(value=JSON | SHAPED)
def test_arbitrary_json_is_decoded_or_refused(type_: Any, value: Any) -> None:
    for raw in _text_encodings(value):
        _decode_or_refuse(raw, type_)


@settings(max_examples=100)
@given(depth=st.integers(0, 3 * MAX_JSON_DEPTH), inner=JSON, wrap=st.sampled_from("[{"))
def test_nesting_is_refused_exactly_past_the_limit(depth: int, inner: Any, wrap: str) -> None:
    inner_raw = json.dumps(inner).encode()
    inner_depth = _depth(inner)
    opening, closing = (b"[", b"]") if wrap == "[" else (b'{"k":', b"}")
    raw = opening * depth + inner_raw + closing * depth
    try:
        check_json_depth(raw)
    except InvalidInput as exc:
        assert depth + inner_depth > MAX_JSON_DEPTH
        assert str(MAX_JSON_DEPTH) in exc.message
    else:
        assert depth + inner_depth <= MAX_JSON_DEPTH


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@given(raw=st.binary(max_size=500))
def test_depth_check_never_fails_on_garbage(raw: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        check_json_depth(raw, 3)


@settings(max_examples=300)
@given(url=TEXT | st.from_regex(r"\Ahttps?://[a-z0-9.\-]{1,20}(:\d{1,6})?/[ -~]{0,20}\Z"))
def test_urls_are_checked_or_refused(url: str) -> None:
    try:
        checked = check_url(url)
    except InvalidInput as exc:
        assert exc.field == "url"
        return
    # What is stored is what is called: nothing a client would percent-encode or split on.
    assert not any(ord(c) <= 0x20 or ord(c) == 0x7F for c in checked)
    assert checked.startswith(("http://", "https://"))


@given(text=TEXT, field=st.sampled_from(["event_type", "batch_id", "timeout", "rate"]))
def test_field_checks_refuse_only_with_invalid_input(text: str, field: str) -> None:
    try:
        if field == "event_type":
            check_event_type(text)
            check_event_types([text, text])
        elif field == "batch_id":
            check_batch_id(text)
        elif field == "timeout":
            check_timeout(len(text) * 1000 - 500)
        else:
            check_rate(len(text) / 10 - 1)
    except InvalidInput:
        pass


@given(headers=st.dictionaries(TEXT, TEXT, max_size=5), auth_set=st.booleans())
def test_header_checks_refuse_only_with_invalid_input(
    headers: dict[str, str], auth_set: bool
) -> None:
    try:
        check_headers(headers, auth_set=auth_set)
    except InvalidInput as exc:
        assert exc.field.startswith("headers")


@given(
    secret=TEXT | st.builds(lambda b: "whsec_" + b, TEXT),
    scheme=st.sampled_from(["standard-webhooks", "sinch"]),
)
def test_secret_checks_refuse_only_with_invalid_input(secret: str, scheme: str) -> None:
    try:
        check_secret(secret, scheme)
    except InvalidInput as exc:
        assert exc.field == "signing_secret"


@settings(max_examples=200)
@given(value=SHAPED)
def test_auth_policy_and_destination_checks_refuse_only_with_invalid_input(value: Any) -> None:
    raw = json.dumps(value).encode()
    for type_, check in [
        (Auth, check_auth),
        (RetryPolicy, check_policy),
        (SNSDestination, check_destination_config),
    ]:
        try:
            decoded = msgspec.json.decode(raw, type=type_)
        except msgspec.MsgspecError:
            continue
        with contextlib.suppress(InvalidInput):
            check(decoded)  # type: ignore[operator]


BRACKETY = st.text(alphabet='[]{}"\\ a', max_size=6)
NESTED = st.recursive(
    st.none() | st.integers() | BRACKETY,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(BRACKETY, children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(value=NESTED, limit=st.integers(2, 8))
def test_the_fast_depth_answer_matches_the_real_depth(value: Any, limit: int) -> None:
    """The C-speed pre-check says "within the limit" only when it is; strings full of brackets,
    quotes and backslashes must not fool it (they are what it drops)."""
    raw = json.dumps(value).encode()
    if _nesting_within(raw, limit):
        assert _depth(value) <= limit
    try:
        check_json_depth(raw, limit)
    except InvalidInput:
        assert _depth(value) > limit
    else:
        assert _depth(value) <= limit
