"""Requests aiohttp's parser refuses (a header over 8 KB, an endless request line, bytes that
are not HTTP) get the API's JSON error, echo nothing, and are logged as one line without
the offending bytes; and a whole run of hostile requests leaves no credential and no
traceback in the log."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import msgspec
import pytest

from postback.api.protocol import MAX_HEADER_BYTES
from tests.support.service import RunningPostback

CREDENTIAL = "sk_live_CREDENTIAL_BYTES_0123456789"


async def exchange(postback: RunningPostback, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one HTTP response: status, headers, body."""
    host, port = postback.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def request(headers: dict[str, str], target: str = "/v1/endpoints", body: bytes = b"") -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    # surrogateescape: "\udcff" in a header stands for the raw byte 0xff (not UTF-8).
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> str:
    assert status == expected, body
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert set(error) <= {"code", "message", "field"}
    assert CREDENTIAL.encode() not in body
    return str(error["code"])


@pytest.mark.parametrize("size", [MAX_HEADER_BYTES, 20_000, 100_000])
async def test_a_header_over_8_kb_is_a_431_that_echoes_and_logs_nothing_of_it(
    postback: RunningPostback, caplog: pytest.LogCaptureFixture, size: int
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "Bearer " + CREDENTIAL + "x" * size
    status, headers, body = await exchange(postback, request({"Authorization": token}))
    assert assert_json_error(status, headers, body, 431) == "header_too_large"
    assert str(MAX_HEADER_BYTES) in json.loads(body)["error"]["message"]
    refused = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert len(refused) == 1 and refused[0].exc_info is None
    assert_clean_log(caplog)


async def test_a_header_just_under_the_limit_is_served(postback: RunningPostback) -> None:
    status, _, body = await exchange(
        postback, request({"X-Padding": "x" * (MAX_HEADER_BYTES - 100), "Connection": "close"})
    )
    assert status == 401, body  # reached the handler: no API key


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"POST /v1/" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: " + CREDENTIAL.encode() + b"\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00" + CREDENTIAL.encode() + b"\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + CREDENTIAL.encode() + b"\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5" + CREDENTIAL.encode() + b"\r\n\r\n",
            400,
            "bad_request",
        ),
    ],
)
async def test_other_parser_refusals_are_json_and_echo_nothing(
    postback: RunningPostback, caplog: pytest.LogCaptureFixture, raw: bytes, status: int, code: str
) -> None:
    caplog.set_level(logging.DEBUG)
    got, headers, body = await exchange(postback, raw)
    assert assert_json_error(got, headers, body, status) == code
    assert_clean_log(caplog)


def assert_clean_log(caplog: pytest.LogCaptureFixture) -> None:
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert CREDENTIAL not in text
    assert "Traceback" not in text
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_run_of_hostile_requests_leaves_no_credential_or_traceback_in_the_log(
    postback: RunningPostback, caplog: pytest.LogCaptureFixture
) -> None:
    """Credentials sent in every place a client can put one, inside requests that are each
    wrong in some way: the log keeps none of them and no traceback."""
    caplog.set_level(logging.DEBUG)
    async with postback.client() as admin:
        key = (await admin.create_account("acct")).api_key
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def body(value: Any) -> bytes:
        return msgspec.json.encode(value)

    hostile: list[bytes] = [
        request({"Authorization": "Bearer " + CREDENTIAL}),  # unknown API key
        request({"Authorization": "Basic " + CREDENTIAL}),
        request({"Authorization": "Bearer " + CREDENTIAL + "y" * 9000}),  # over 8 KB
        request({"X-Api-Key": CREDENTIAL * 400}),
        request(auth, "/v1/accounts", body({"name": "x"})),  # wrong admin token is the API key
        request({"Authorization": "Bearer " + CREDENTIAL}, "/v1/accounts", body({"name": "x"})),
    ]
    for endpoint in [
        {"url": "http://example.com/\x00", "auth": {"type": "bearer", "token": CREDENTIAL}},
        {"url": "http://example.com/", "auth": {"type": "bearer", "token": CREDENTIAL + " x"}},
        {
            "url": "http://example.com/",
            "auth": {"type": "basic", "username": "u:" + CREDENTIAL, "password": CREDENTIAL},
        },
        {
            "url": "http://example.com/",
            "auth": {"type": "basic", "username": "u", "password": CREDENTIAL + "\x00"},
        },
        {
            "url": "http://example.com/",
            "auth": {
                "type": "oauth2",
                "token_url": "ftp://x",
                "client_id": "c",
                "client_secret": CREDENTIAL,
            },
        },
        {"url": "http://example.com/", "signing_secret": "whsec_" + CREDENTIAL},
        {"url": "http://example.com/", "signing_secret": CREDENTIAL},
        {"url": "http://example.com/", "tls": {"cert_pem": CREDENTIAL, "key_pem": CREDENTIAL}},
        {"url": "http://example.com/", "headers": {"Authorization": CREDENTIAL + "\r\n"}},
        {"url": "http://example.com/", "timeout_ms": CREDENTIAL},
        {"url": "http://example.com/", CREDENTIAL: 1},
    ]:
        hostile.append(request(auth, "/v1/endpoints", body(endpoint)))
    hostile += [
        request(
            auth, "/v1/endpoints", b'{"url": "http://example.com/\xff' + CREDENTIAL.encode() + b'"}'
        ),
        request(auth, "/v1/endpoints", b'{"auth": {"token": "' + CREDENTIAL.encode() + b'"' * 3),
        request(auth, "/v1/messages", b'{"payload": ' + b"[" * 5000 + CREDENTIAL.encode()),
        request(auth, "/v1/endpoints/" + CREDENTIAL, b""),
        request(auth, "/v1/deliveries?cursor=%00" + CREDENTIAL, b""),
        # Header bytes that are not UTF-8, where an API key and the admin token are read.
        request({"Authorization": "Bearer \udcff" + CREDENTIAL}),
        request(
            {"Authorization": "Bearer \udcff" + CREDENTIAL}, "/v1/accounts", body({"name": "x"})
        ),
    ]
    for raw in hostile:
        status, _, answer = await exchange(
            postback, raw.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
        )
        assert 400 <= status < 500, answer
        assert CREDENTIAL.encode() not in answer or b"unknown field" in answer
    assert_clean_log(caplog)
