"""Every row of the outcome table, over real HTTP to receivers on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from postback.client import Client
from postback.core import signing
from postback.core.wire import AttemptOut, DeliveryOut
from tests.support.receiver import (
    Behaviour,
    Receiver,
    close_mid_response,
    drip,
    not_http,
    sequence,
    sleep,
    status,
)
from tests.support.service import RunningPostback, wait_until

FAST = {"schedule_s": [0.2, 0.2]}


async def settled(pb: Client, message_id: str) -> DeliveryOut | None:
    [delivery] = (await pb.get_message(message_id)).deliveries
    return delivery if delivery.state in ("delivered", "dead") else None


async def run_case(
    postback: RunningPostback, receiver: Receiver, behaviour: Behaviour, **endpoint: Any
) -> tuple[DeliveryOut, list[AttemptOut], str]:
    async with await postback.new_account() as pb:
        await pb.create_endpoint(receiver.on("/case", behaviour), **endpoint)
        accepted = await pb.send("t", {"n": 1})
        delivery = await wait_until(lambda: settled(pb, accepted.id), timeout=15)
        attempts = (await pb.list_attempts(delivery.id)).data
    return delivery, attempts, accepted.id


@pytest.mark.parametrize("code", [200, 204])
async def test_2xx_is_delivered(postback: RunningPostback, receiver: Receiver, code: int) -> None:
    delivery, attempts, _ = await run_case(postback, receiver, status(code))
    assert delivery.state == "delivered" and delivery.last_status_code == code
    assert [(a.outcome, a.status_code) for a in attempts] == [("delivered", code)]


@pytest.mark.parametrize("code", [400, 404, 408])
async def test_4xx_is_permanent_under_sinch(
    postback: RunningPostback, receiver: Receiver, code: int
) -> None:
    delivery, attempts, _ = await run_case(postback, receiver, status(code))
    assert delivery.state == "dead"
    assert delivery.dead_reason == f"permanent failure: HTTP {code}"
    assert [a.outcome for a in attempts] == ["permanent"]


async def test_4xx_is_retried_when_the_policy_says_so(
    postback: RunningPostback, receiver: Receiver
) -> None:
    policy = {**FAST, "retry_statuses": ["4xx", "5xx", "429", "timeout", "network", "3xx"]}
    delivery, attempts, _ = await run_case(
        postback, receiver, sequence(status(408), status(200)), retry_policy=policy
    )
    assert delivery.state == "delivered"
    assert [(a.outcome, a.status_code) for a in attempts] == [("retry", 408), ("delivered", 200)]


async def test_301_is_not_followed_and_is_permanent(
    postback: RunningPostback, receiver: Receiver
) -> None:
    target = receiver.url("/elsewhere")
    delivery, attempts, _ = await run_case(postback, receiver, status(301, {"Location": target}))
    assert delivery.state == "dead" and attempts[0].status_code == 301
    assert receiver.at("/elsewhere") == []


@pytest.mark.parametrize("code", [500, 503])
async def test_5xx_is_retried_then_delivered(
    postback: RunningPostback, receiver: Receiver, code: int
) -> None:
    delivery, attempts, message_id = await run_case(
        postback, receiver, sequence(status(code), status(200)), retry_policy=FAST
    )
    assert delivery.state == "delivered" and delivery.attempt_count == 2
    assert [(a.outcome, a.status_code) for a in attempts] == [("retry", code), ("delivered", 200)]
    first, second = receiver.at("/case")
    assert first.body == second.body  # byte-identical on every attempt
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == message_id
    assert second.at - first.at >= 0.19


async def test_5xx_until_exhausted_is_dead(postback: RunningPostback, receiver: Receiver) -> None:
    delivery, attempts, _ = await run_case(postback, receiver, status(500), retry_policy=FAST)
    assert delivery.state == "dead" and len(attempts) == 3
    assert delivery.dead_reason == "retries exhausted after 3 attempts: HTTP 500"


async def test_429_without_retry_after_is_throttled_and_retried(
    postback: RunningPostback, receiver: Receiver
) -> None:
    delivery, attempts, _ = await run_case(
        postback, receiver, sequence(status(429), status(200)), retry_policy=FAST
    )
    assert delivery.state == "delivered"
    assert [a.outcome for a in attempts] == ["throttled", "delivered"]


async def test_429_with_retry_after_waits_that_long(
    postback: RunningPostback, receiver: Receiver
) -> None:
    delivery, attempts, _ = await run_case(
        postback,
        receiver,
        sequence(status(429, {"Retry-After": "1"}), status(200)),
        retry_policy=FAST,
    )
    first, second = receiver.at("/case")
    assert delivery.state == "delivered"
    assert [a.outcome for a in attempts] == ["throttled", "delivered"]
    assert second.at - first.at >= 0.95  # Retry-After (1 s) beat the schedule (0.2 s)


async def test_timeout_is_retried(postback: RunningPostback, receiver: Receiver) -> None:
    delivery, attempts, _ = await run_case(
        postback,
        receiver,
        sequence(sleep(2.0), status(200)),
        retry_policy=FAST,
        timeout_ms=300,
    )
    assert delivery.state == "delivered"
    assert attempts[0].outcome == "retry" and attempts[0].status_code is None
    assert attempts[0].error == "no response within 0.3 s"
    assert 250 <= attempts[0].duration_ms < 1500


async def test_refused_connection_is_retried(postback: RunningPostback) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    async with await postback.new_account() as pb:
        await pb.create_endpoint(f"http://127.0.0.1:{port}/hook", retry_policy=FAST)
        accepted = await pb.send("t", {"n": 1})
        delivery = await wait_until(lambda: settled(pb, accepted.id))
        attempts = (await pb.list_attempts(delivery.id)).data
    assert delivery.state == "dead" and len(attempts) == 3
    # The last attempt is recorded as the final one it was: no retry follows it.
    assert [a.outcome for a in attempts] == ["retry", "retry", "exhausted"]
    assert attempts[0].error is not None and "Connect" in attempts[0].error
    assert delivery.dead_reason is not None and "connection error" in delivery.dead_reason


async def test_connection_closed_mid_response_is_retried(
    postback: RunningPostback, receiver: Receiver
) -> None:
    delivery, attempts, _ = await run_case(
        postback, receiver, sequence(close_mid_response, status(200)), retry_policy=FAST
    )
    assert delivery.state == "delivered"
    assert attempts[0].outcome == "retry" and attempts[0].status_code is None
    assert attempts[0].error


async def test_headers_signature_and_custom_headers(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        endpoint = await pb.create_endpoint(
            receiver.url("/h"),
            headers={"X-Tenant": "acme"},
            auth={"type": "basic", "username": "sinch", "password": "p:w"},
        )
        accepted = await pb.send("t", b'{"type": "mo_text",  "body":"x"}')
        [got] = await receiver.wait_for("/h")
    assert got.body == b'{"type": "mo_text",  "body":"x"}'  # exactly as submitted
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("Postback/")
    assert got.headers["x-tenant"] == "acme"
    assert got.headers["authorization"] == "Basic c2luY2g6cDp3"  # sinch:p:w
    assert got.headers["webhook-id"] == accepted.id
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 10
    signing.verify(
        [str(endpoint.signing_secret)],
        got.headers["webhook-id"],
        got.headers["webhook-timestamp"],
        got.headers["webhook-signature"],
        got.body,
        now_s=time.time(),
    )


async def test_a_2xx_status_decides_though_the_body_drips(
    postback: RunningPostback, receiver: Receiver
) -> None:
    # The status line arrives at once, the body one byte at a time for longer than the timeout.
    delivery, attempts, _ = await run_case(
        postback, receiver, drip(200, 5.0), retry_policy=FAST, timeout_ms=1500
    )
    assert delivery.state == "delivered" and delivery.last_status_code == 200
    assert [(a.outcome, a.status_code) for a in attempts] == [("delivered", 200)]
    assert attempts[0].duration_ms < 1500
    assert attempts[0].response_body is not None and set(attempts[0].response_body) == {"."}


async def test_a_dripping_5xx_is_retried_by_its_status(
    postback: RunningPostback, receiver: Receiver
) -> None:
    delivery, attempts, _ = await run_case(
        postback, receiver, sequence(drip(503, 3.0), status(200)), retry_policy=FAST
    )
    assert delivery.state == "delivered"
    assert [(a.outcome, a.status_code) for a in attempts] == [("retry", 503), ("delivered", 200)]


async def test_an_answer_that_is_not_http_is_named_so(
    postback: RunningPostback, receiver: Receiver
) -> None:
    delivery, attempts, _ = await run_case(postback, receiver, not_http, retry_policy=FAST)
    assert delivery.state == "dead" and len(attempts) == 3
    assert {a.error for a in attempts} == {"invalid HTTP response from the endpoint"}
    assert {a.status_code for a in attempts} == {None}
    assert [a.outcome for a in attempts] == ["retry", "retry", "exhausted"]
    assert delivery.dead_reason == (
        "retries exhausted after 3 attempts: "
        "connection error: invalid HTTP response from the endpoint"
    )
