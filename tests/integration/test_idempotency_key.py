"""The ``Idempotency-Key`` header and key reuse, over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.support.receiver import Receiver
from tests.support.service import RunningPostback


@pytest.fixture(params=["sqlite", "postgres"])
def running(request: pytest.FixtureRequest) -> RunningPostback:
    name = "postback" if request.param == "sqlite" else "postback_pg"
    value: RunningPostback = request.getfixturevalue(name)
    return value


async def post(
    running: RunningPostback, key: str, body: Any, header: str | None = None, path: str = ""
) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    if header is not None:
        headers["Idempotency-Key"] = header
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{running.url}/v1/messages{path}", data=json.dumps(body), headers=headers
        ) as response,
    ):
        return response.status, await response.json()


async def test_header_is_an_alias_and_reuse_with_another_body_conflicts(
    running: RunningPostback, receiver: Receiver
) -> None:
    async with await running.new_account() as pb:
        await pb.create_endpoint(receiver.url("/hook"))
        key = pb.api_key or ""
        one = {"event_type": "t", "payload": {"n": 1}}
        status, first = await post(running, key, one, header="order-1")
        assert status == 202 and not first["duplicate"]
        status, again = await post(running, key, one, header="order-1")
        assert status == 202 and again["duplicate"] and again["id"] == first["id"]
        # The body field and the header are the same key.
        status, by_field = await post(running, key, {**one, "idempotency_key": "order-1"})
        assert status == 202 and by_field["id"] == first["id"]
        status, both = await post(running, key, {**one, "idempotency_key": "order-1"}, "order-1")
        assert status == 202 and both["id"] == first["id"]

        status, differ = await post(running, key, {**one, "idempotency_key": "a"}, "b")
        assert status == 400 and differ["error"]["field"] == "idempotency_key"
        status, conflict = await post(
            running, key, {"event_type": "t", "payload": {"n": 2}}, header="order-1"
        )
        assert status == 409, conflict
        assert conflict["error"]["code"] == "idempotency_conflict"
        assert conflict["error"]["field"] == "idempotency_key"
        assert "order-1" in conflict["error"]["message"]
        status, batch = await post(
            running,
            key,
            [
                {"event_type": "t", "payload": {"n": 3}, "idempotency_key": "order-3"},
                {"event_type": "t", "payload": {"n": 2}, "idempotency_key": "order-1"},
            ],
            path="/batch",
        )
        assert status == 409 and batch["error"]["field"] == "$[1].idempotency_key"
        [delivered] = await receiver.wait_for("/hook", 1)
        assert json.loads(delivered.body) == {"n": 1}
        # Nothing else was stored: not the conflicting message, not the refused batch.
        deliveries = (await pb.list_deliveries(limit=100)).data
        assert [d.message_id for d in deliveries] == [first["id"]]
        fresh = await pb.send("t", {"n": 3}, idempotency_key="order-3")
        assert not fresh.duplicate
