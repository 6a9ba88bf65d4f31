"""Receiver controls and operational webhooks end to end, on SQLite and on PostgreSQL.

410 Gone and ``webhook-delivery: disable`` disable the endpoint at once; ``abort-message``
stops one message; the operators' endpoint receives signed, schema-valid events about it; a
re-enable with replay sends what was held.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import jsonschema
import pytest

from postback.client import APIError
from postback.core.event_schemas import OPERATIONAL_SCHEMAS
from postback.core.wire import DeliveryOut
from postback.receiver import verify
from tests.support.postgres import fresh_schema
from tests.support.receiver import Received, Receiver, sequence, status
from tests.support.service import RunningPostback, start_postback, wait_until


@pytest.fixture(params=["sqlite", "postgres"])
async def running(
    request: pytest.FixtureRequest, sqlite_url: str
) -> AsyncIterator[RunningPostback]:
    if request.param == "sqlite":
        pb = await start_postback(sqlite_url)
        try:
            yield pb
        finally:
            await pb.shutdown()
        return
    async with fresh_schema() as url:
        pb = await start_postback(url)
        try:
            yield pb
        finally:
            await pb.shutdown()


def checked_events(received: list[Received], secret: str) -> list[dict[str, object]]:
    """Each operational event verified (signature) and validated (its JSON Schema)."""
    events = []
    for r in received:
        verify(r.headers, r.body, secret)
        event = json.loads(r.body)
        jsonschema.validate(event, OPERATIONAL_SCHEMAS[event["type"]])
        events.append(event)
    return events


async def test_410_disables_at_once_operators_are_told_and_enable_replays(
    running: RunningPostback, receiver: Receiver
) -> None:
    async with running.client() as admin:
        ops = await admin.create_operational_endpoint(receiver.url("/ops"))
        assert isinstance(ops.signing_secret, str)
        listed = await admin.list_operational_endpoints()
        assert [e.id for e in listed.data] == [ops.id]
    gone = sequence(status(410), status(200))
    async with await running.new_account() as pb:
        endpoint = await pb.create_endpoint(
            receiver.on("/gone", gone), retry_policy={"preset": "sinch"}
        )
        sent = await pb.send("t", {"n": 1})
        await receiver.wait_for("/gone")

        async def disabled() -> bool:
            return (await pb.get_endpoint(endpoint.id)).disabled

        await wait_until(disabled)
        arrived = await receiver.wait_for("/ops", 2)
        events = checked_events(arrived, ops.signing_secret)
        by_type = {e["type"]: e["data"] for e in events}
        assert set(by_type) == {"delivery.dead", "endpoint.disabled"}
        dead = by_type["delivery.dead"]
        assert isinstance(dead, dict) and dead["message_id"] == sent.id
        assert dead["endpoint_id"] == endpoint.id and dead["last_status_code"] == 410
        off = by_type["endpoint.disabled"]
        assert isinstance(off, dict) and off["reason"] == "the receiver answered 410 Gone"
        health = await pb.endpoint_health(endpoint.id)
        assert health.status == "disabled" and health.disabled_at is not None
        assert health.disabled_reason == "the receiver answered 410 Gone"
        assert health.consecutive_failures == 1 and health.backlog.dead == 1
        listing = await pb.list_endpoints_with_health()
        assert listing.data[0].health.disabled_reason == "the receiver answered 410 Gone"

        # Disabled: new messages are not sent to it.
        await pb.send("t", {"n": 2})
        enabled = await pb.enable_endpoint(endpoint.id, replay=True)
        assert not enabled.endpoint.disabled and enabled.replayed == 1
        [_, again] = await receiver.wait_for("/gone", 2)
        assert json.loads(again.body) == {"n": 1}  # the replayed message, not the skipped one

        async def delivered() -> list[DeliveryOut]:
            return (await pb.list_deliveries(state="delivered")).data

        await wait_until(delivered)
        arrived = await receiver.wait_for("/ops", 3)
        enabled_event = checked_events(arrived, ops.signing_secret)[-1]
        assert enabled_event["type"] == "endpoint.enabled"
        health = await pb.endpoint_health(endpoint.id)
        assert health.status == "healthy" and health.consecutive_failures == 0
        assert health.failing_since is None and health.recent.successes == 1


async def test_disable_header_and_abort_message(
    running: RunningPostback, receiver: Receiver
) -> None:
    async with await running.new_account() as pb:
        stop = await pb.create_endpoint(
            receiver.on("/stop", status(200, {"Webhook-Delivery": "disable"}))
        )
        picky = await pb.create_endpoint(
            receiver.on("/picky", status(500, {"webhook-delivery": "abort-message"})),
            retry_policy={"schedule_s": [0.1, 0.1, 0.1]},
        )
        await pb.send("t", {"n": 1})
        await receiver.wait_for("/stop")
        await receiver.wait_for("/picky")

        async def aborted() -> list[DeliveryOut]:
            return (await pb.list_deliveries(endpoint_id=picky.id, state="aborted")).data

        [delivery] = await wait_until(aborted)
        assert delivery.dead_reason is None and delivery.attempt_count == 1
        attempts = await pb.list_attempts(delivery.id)
        assert [a.outcome for a in attempts.data] == ["aborted"]

        async def stopped() -> bool:
            return (await pb.get_endpoint(stop.id)).disabled

        await wait_until(stopped)
        delivered = (await pb.list_deliveries(endpoint_id=stop.id)).data
        assert [d.state for d in delivered] == ["delivered"]  # delivered, then disabled
        health = await pb.endpoint_health(stop.id)
        assert health.disabled_reason == "the receiver answered 'webhook-delivery: disable'"
        # The aborting endpoint answered on purpose: not failing, still enabled.
        assert (await pb.endpoint_health(picky.id)).status == "healthy"
        assert not (await pb.get_endpoint(picky.id)).disabled
    assert len(receiver.at("/picky")) == 1  # no retries


async def test_operational_endpoints_need_the_admin_token_and_valid_types(
    running: RunningPostback, receiver: Receiver
) -> None:
    async with await running.new_account() as pb:
        with pytest.raises(APIError) as error:  # an account key is not enough
            await pb._call("POST", "/v1/operational-endpoints", None, {"url": receiver.url("/x")})
        assert error.value.status == 403
    async with running.client() as admin:
        with pytest.raises(APIError) as error:
            await admin.create_operational_endpoint(
                receiver.url("/x"), event_types=["delivery.dead", "mo_text"]
            )
        assert error.value.status == 400 and error.value.field == "event_types[1]"
        assert (await admin.list_operational_endpoints()).data == []


async def test_the_command_line_shows_health_and_enables(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        gone = sequence(status(410), status(200))
        endpoint = await pb.create_endpoint(receiver.on("/back", gone))
        await pb.send("t", {"n": 1})

        async def disabled() -> bool:
            return (await pb.get_endpoint(endpoint.id)).disabled

        await wait_until(disabled)
        env = {**os.environ, "POSTBACK_URL": postback.url, "POSTBACK_API_KEY": pb.api_key or ""}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "postback", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )

        shown = await asyncio.to_thread(cli, "endpoints", "health", endpoint.id, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["disabled_reason"] == "the receiver answered 410 Gone"
        enabled = await asyncio.to_thread(cli, "endpoints", "enable", endpoint.id, "--replay")
        assert enabled.returncode == 0, enabled.stderr
        assert enabled.stdout.strip() == f"endpoint {endpoint.id} enabled; replayed 1 deliveries"
        await receiver.wait_for("/back", 2)  # the replayed delivery
        assert not (await pb.get_endpoint(endpoint.id)).disabled
        missing = await asyncio.to_thread(cli, "endpoints", "enable", "ep_missing")
        assert missing.returncode == 1 and "Traceback" not in missing.stderr
