"""Hostile bodies and parameters are refused at the decoding seam, alike on both backends:
a 400 naming the field, never a 500, and nothing stored."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from postback.core.validation import MAX_JSON_DEPTH
from tests.support.service import RunningPostback

GOOD_URL = "https://example.com/hook"


async def call(
    postback: RunningPostback, method: str, path: str, key: str | None, body: bytes | None = None
) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"} if key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, postback.url + path, headers=headers, data=body) as response,
    ):
        return response.status, await response.json(content_type=None)


async def account_key(postback: RunningPostback) -> str:
    async with postback.client() as admin:
        key = (await admin.create_account("acct")).api_key
    async with postback.client(key) as setup:
        await setup.create_event_type("t", {"type": "object"})
    return key


def assert_refused(
    status: int, body: Any, field: str | None, code: str = "invalid_request"
) -> None:
    assert status == 400, body
    assert body["error"]["code"] == code
    if field is not None:
        assert body["error"]["field"] == field


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # Invalid UTF-8 inside a JSON string: the event type, deep in a payload, a batch.
        ("/v1/messages", b'{"event_type": "t\xff", "payload": {}}', None),
        ("/v1/messages", b'{"event_type": "t", "payload": {"a": ["\xc3\x28"]}}', None),
        ("/v1/messages/batch", b'[{"event_type": "t", "payload": {"a": "\xed\xa0\x80"}}]', None),
        ("/v1/endpoints", b'{"url": "https://example.com/\xfe"}', None),
    ],
)
async def test_invalid_utf8_inside_strings_is_a_400(
    service: RunningPostback, path: str, body: bytes, field: str | None
) -> None:
    key = await account_key(service)
    status, answer = await call(service, "POST", path, key, body)
    assert_refused(status, answer, field, code="invalid_json")
    assert "UTF-8" in answer["error"]["message"]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 1000, 100_000])
async def test_a_payload_nested_too_deep_is_a_400_naming_the_limit(
    service: RunningPostback, depth: int
) -> None:
    key = await account_key(service)
    payload = b'{"a":' * depth + b"1" + b"}" * depth
    single = b'{"event_type": "t", "payload": ' + payload + b"}"
    status, answer = await call(service, "POST", "/v1/messages", key, single)
    assert_refused(status, answer, "payload")
    assert f"deeper than {MAX_JSON_DEPTH} levels" in answer["error"]["message"]
    status, answer = await call(service, "POST", "/v1/messages/batch", key, b"[" + single + b"]")
    assert_refused(status, answer, "[0].payload")


async def test_a_payload_at_the_limit_is_accepted(service: RunningPostback) -> None:
    key = await account_key(service)
    inner = MAX_JSON_DEPTH - 1  # the body's own object is the first level
    payload = b'{"a":' * inner + b'"[{[{"' + b"}" * inner
    status, answer = await call(
        service, "POST", "/v1/messages", key, b'{"event_type":"t","payload":' + payload + b"}"
    )
    assert status == 202, answer


@pytest.mark.parametrize("bad", ["\x00", "\r", "\n", "\r\n", "\t", "\x1b", "\x7f", " "])
async def test_control_characters_in_urls_are_refused_naming_the_field(
    service: RunningPostback, bad: str
) -> None:
    key = await account_key(service)
    url = f"https://example.com/a{bad}b"
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/v1/endpoints", {"url": url}, "url"),
        ("/v1/messages", {"event_type": "t", "payload": {}, "callback_url": url}, "callback_url"),
        (
            "/v1/endpoints",
            {
                "url": GOOD_URL,
                "auth": {
                    "type": "oauth2",
                    "token_url": url,
                    "client_id": "c",
                    "client_secret": "s",
                },
            },
            "auth.token_url",
        ),
    ]
    import msgspec

    for path, body, field in cases:
        status, answer = await call(service, "POST", path, key, msgspec.json.encode(body))
        assert_refused(status, answer, field)
    async with service.client(key) as pb:
        assert (await pb.list_endpoints()).data == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/endpoints", {"url": GOOD_URL, "description": "a\x00b"}, "description"),
        ("/v1/endpoints", {"url": "https://exa\x00mple.com/"}, "url"),
        ("/v1/endpoints", {"url": GOOD_URL, "event_types": ["t", "\x00"]}, "event_types[1]"),
        ("/v1/endpoints", {"url": GOOD_URL, "headers": {"X-A": "\x00"}}, "headers.X-A"),
        (
            "/v1/endpoints",
            {"url": GOOD_URL, "auth": {"type": "basic", "username": "u", "password": "p\x00"}},
            "auth.password",
        ),
        (
            "/v1/messages",
            {"event_type": "t", "payload": {}, "idempotency_key": "k\x00"},
            "idempotency_key",
        ),
        ("/v1/messages/batch", [{"event_type": "t\x00", "payload": {}}], "[0].event_type"),
        ("/v1/event-types", {"name": "n", "schema": {"description": "\x00"}}, "schema.description"),
        ("/v1/accounts", {"name": "a\x00"}, "name"),
    ],
)
async def test_nul_in_any_text_field_is_a_400_on_both_backends(
    service: RunningPostback, path: str, body: Any, field: str
) -> None:
    import msgspec

    key = service.admin_token if path == "/v1/accounts" else await account_key(service)
    status, answer = await call(service, "POST", path, key, msgspec.json.encode(body))
    assert_refused(status, answer, field)
    assert "NUL" in answer["error"]["message"]


async def test_nul_in_path_and_query_parameters_is_a_400(service: RunningPostback) -> None:
    key = await account_key(service)
    for path, field in [
        ("/v1/endpoints/ep_%00", "id"),
        ("/v1/deliveries?endpoint_id=%00", "endpoint_id"),
    ]:
        status, answer = await call(service, "GET", path, key)
        assert_refused(status, answer, field)


async def test_payload_nul_escapes_are_kept_as_bytes(service: RunningPostback) -> None:
    key = await account_key(service)
    body = b'{"event_type": "t", "payload": {"text": "a\\u0000b"}}'
    status, answer = await call(service, "POST", "/v1/messages", key, body)
    assert status == 202, answer
    async with service.client(key) as pb:
        message = await pb.get_message(answer["id"])
    assert bytes(message.payload) == b'{"text": "a\\u0000b"}'


async def test_405_names_the_allowed_methods(service: RunningPostback) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.put(service.url + "/v1/endpoints") as response,
    ):
        assert response.status == 405
        allowed = set(response.headers["Allow"].split(","))
        assert {"GET", "POST"} <= allowed and "PUT" not in allowed
        assert (await response.json())["error"]["code"] == "method_not_allowed"
