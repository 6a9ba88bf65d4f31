"""The HTTP API's contract: validation, isolation, idempotency, rotation, replay, pagination."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate as validate_openapi
from standardwebhooks import Webhook

from postback.client import APIError, Client
from postback.core.wire import DeliveryOut
from tests.support.payloads import mo_text, recipient_report
from tests.support.receiver import Receiver, sequence, status
from tests.support.service import RunningPostback, wait_until


async def raw(
    postback: RunningPostback, method: str, path: str, key: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    data = body if isinstance(body, bytes) else None
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            postback.url + path,
            headers=headers,
            data=data,
            json=None if isinstance(body, bytes) else body,
        ) as response,
    ):
        text = await response.text()
        payload = await response.json(content_type=None) if text else None
        return response.status, payload


async def new_key(postback: RunningPostback) -> str:
    async with postback.client() as admin:
        key = (await admin.create_account("acct")).api_key
    async with postback.client(key) as setup:
        await setup.create_event_type("t", {"type": "object"})
    return key


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": "https://example.com/x", "timeout_ms": 5}, "timeout_ms"),
        ({"url": "https://example.com/x", "timeout_ms": "x"}, "timeout_ms"),
        ({"url": "https://example.com/x", "rate_limit_per_s": 0}, "rate_limit_per_s"),
        (
            {"url": "https://example.com/x", "headers": {"webhook-signature": "v1,x"}},
            "headers.webhook-signature",
        ),
        (
            {"url": "https://example.com/x", "headers": {"Content-Type": "text/plain"}},
            "headers.Content-Type",
        ),
        (
            {
                "url": "https://example.com/x",
                "headers": {"Authorization": "x"},
                "auth": {"type": "bearer", "token": "t"},
            },
            "headers.Authorization",
        ),
        ({"url": "https://example.com/x", "colour": "red"}, "colour"),
        (
            {"url": "https://example.com/x", "retry_policy": {"schedule_s": [-1]}},
            "retry_policy.schedule_s[0]",
        ),
        (
            {
                "url": "https://example.com/x",
                "retry_policy": {"preset": "sinch", "schedule_s": [1]},
            },
            "retry_policy",
        ),
        ({"url": "https://example.com/x", "signing_secret": "nope"}, "signing_secret"),
        ({"url": "https://example.com/x", "event_types": ["bad type!"]}, "event_types[0]"),
        ({"url": "https://example.com/x", "auth": {"type": "kerberos"}}, "auth.type"),
        (
            {"url": "https://example.com/x", "auth": {"type": "basic", "username": "u"}},
            "auth.password",
        ),
    ],
)
async def test_bad_endpoints_get_400_naming_the_field_and_change_nothing(
    postback: RunningPostback, body: dict[str, Any], field: str
) -> None:
    key = await new_key(postback)
    code, answer = await raw(postback, "POST", "/v1/endpoints", key, body)
    assert code == 400, answer
    assert answer["error"]["field"] == field
    assert answer["error"]["message"]
    code, listing = await raw(postback, "GET", "/v1/endpoints", key)
    assert code == 200 and listing["data"] == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/messages", {"event_type": "t"}, "payload"),
        ("/v1/messages", {"event_type": "t", "payload": [1, 2]}, "payload"),
        ("/v1/messages", {"event_type": "", "payload": {}}, "event_type"),
        (
            "/v1/messages",
            {"event_type": "t", "payload": {}, "callback_url": "gopher://x"},
            "callback_url",
        ),
        ("/v1/messages", b"{not json", None),
        (
            "/v1/messages/batch",
            [{"event_type": "t", "payload": {}}, {"event_type": "t"}],
            "[1].payload",
        ),
        ("/v1/messages/batch", [{"event_type": "t", "payload": {}}] * 1001, "$"),
    ],
)
async def test_bad_messages_store_nothing(
    postback: RunningPostback, receiver: Receiver, path: str, body: Any, field: str | None
) -> None:
    key = await new_key(postback)
    await raw(postback, "POST", "/v1/endpoints", key, {"url": receiver.url("/x")})
    code, answer = await raw(postback, "POST", path, key, body)
    assert code == 400, answer
    if field is not None:
        assert (
            answer["error"]["field"].lstrip("$.") == field.lstrip("$.")
            or answer["error"]["field"] == field
        )
    code, deliveries = await raw(postback, "GET", "/v1/deliveries", key)
    assert deliveries["data"] == []


@pytest.mark.parametrize("query", ["state=bogus", "limit=0", "limit=5000", "since=yesterday"])
async def test_bad_query_parameters(postback: RunningPostback, query: str) -> None:
    key = await new_key(postback)
    code, answer = await raw(postback, "GET", f"/v1/deliveries?{query}", key)
    assert code == 400 and answer["error"]["field"] == query.split("=")[0]


async def test_authentication(postback: RunningPostback) -> None:
    assert (await raw(postback, "GET", "/v1/endpoints", None))[0] == 401
    assert (await raw(postback, "GET", "/v1/endpoints", "pbk_wrong"))[0] == 401
    code, answer = await raw(postback, "POST", "/v1/accounts", "not-the-admin", {"name": "x"})
    assert code == 401 and answer["error"]["code"] == "unauthorized"
    code, answer = await raw(postback, "GET", "/v1/nowhere", None)
    assert code == 404 and answer["error"]["code"] == "not_found"


async def test_tenant_isolation_answers_404(postback: RunningPostback, receiver: Receiver) -> None:
    async with await postback.new_account("a") as a, await postback.new_account("b") as b:
        endpoint = await a.create_endpoint(receiver.on("/a", status(400)))
        accepted = await a.send("t", {"n": 1})
        await receiver.wait_for("/a")
        delivery_id = accepted.deliveries[0].id
        calls = [
            b.get_endpoint(endpoint.id),
            b.update_endpoint(endpoint.id, description="mine now"),
            b.delete_endpoint(endpoint.id),
            b.get_secret(endpoint.id),
            b.rotate_secret(endpoint.id),
            b.get_message(accepted.id),
            b.get_delivery(delivery_id),
            b.list_attempts(delivery_id),
            b.replay_delivery(delivery_id),
            b.replay(endpoint_id=endpoint.id),
        ]
        for call in calls:
            with pytest.raises(APIError) as error:
                await call
            assert error.value.status == 404
        assert (await b.list_endpoints()).data == []
        assert (await b.list_deliveries()).data == []
        assert (await a.get_endpoint(endpoint.id)).description == ""


async def test_idempotency_key_returns_the_first_message(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account("a") as a, await postback.new_account("b") as b:
        await a.create_endpoint(receiver.url("/a"))
        await b.create_endpoint(receiver.url("/b"))
        first = await a.send("t", {"n": 1}, idempotency_key="order-1")
        again = await a.send("t", {"n": 1}, idempotency_key="order-1")
        other = await b.send("t", {"n": 3}, idempotency_key="order-1")
        batch = await a.send_batch(
            [
                {"event_type": "t", "payload": {"n": 4}, "idempotency_key": "order-2"},
                {"event_type": "t", "payload": {"n": 4}, "idempotency_key": "order-2"},
            ]
        )
        await receiver.wait_for("/a", 2)
        await receiver.wait_for("/b", 1)
    assert again.id == first.id and again.duplicate and not first.duplicate
    assert [d.id for d in again.deliveries] == [d.id for d in first.deliveries]
    assert other.id != first.id and not other.duplicate  # keys are per account
    assert batch.data[1].id == batch.data[0].id and batch.data[1].duplicate
    assert sorted(r.body for r in receiver.at("/a")) == [b'{"n":1}', b'{"n":4}']


async def test_secret_rotation_signs_with_both_during_overlap(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        endpoint = await pb.create_endpoint(receiver.url("/r"))
        old = str(endpoint.signing_secret)
        rotated = await pb.rotate_secret(endpoint.id)
        new = rotated.key
        assert new != old and [s.key for s in rotated.active] == [new, old]
        assert rotated.active[0].expires_at is None and rotated.active[1].expires_at is not None
        await pb.send("t", {"n": 1})
        [got] = await receiver.wait_for("/r")
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(got.body, got.headers)  # a third-party verifier, each secret alone


async def test_replay_keeps_the_message_id(postback: RunningPostback, receiver: Receiver) -> None:
    async with await postback.new_account() as pb:
        endpoint = await pb.create_endpoint(
            receiver.on("/fixme", sequence(status(400), status(200)))
        )
        accepted = await pb.send("t", {"n": 1})

        async def state_is(wanted: str) -> DeliveryOut | None:
            [d] = (await pb.get_message(accepted.id)).deliveries
            return d if d.state == wanted else None

        dead = await wait_until(lambda: state_is("dead"))
        await pb.replay_delivery(dead.id)
        delivered = await wait_until(lambda: state_is("delivered"))
        with pytest.raises(APIError) as not_dead:
            await pb.replay_delivery(delivered.id)
        bulk_none = await pb.replay(endpoint_id=endpoint.id)
    first, replayed = receiver.at("/fixme")
    assert delivered.id == dead.id and delivered.attempt_count == 2
    assert replayed.headers["webhook-id"] == first.headers["webhook-id"] == accepted.id
    assert replayed.body == first.body
    assert not_dead.value.status == 409 and not_dead.value.code == "conflict"
    assert bulk_none.replayed == 0


async def test_bulk_replay_of_an_endpoints_dead_deliveries(
    postback: RunningPostback, receiver: Receiver
) -> None:
    behaviour = sequence(*[status(400)] * 3, status(200))
    async with await postback.new_account() as pb:
        endpoint = await pb.create_endpoint(receiver.on("/bulk", behaviour))
        await pb.send_batch([{"event_type": "t", "payload": {"n": i}} for i in range(3)])

        async def dead() -> list[DeliveryOut] | None:
            rows = (await pb.list_deliveries(state="dead")).data
            return rows if len(rows) == 3 else None

        await wait_until(dead)
        result = await pb.replay(endpoint_id=endpoint.id)
        await receiver.wait_for("/bulk", 6)

        async def delivered() -> bool:
            return len((await pb.list_deliveries(state="delivered")).data) == 3

        await wait_until(delivered)
    assert result.replayed == 3


async def test_pagination_visits_everything_once(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        made = {
            (await pb.create_endpoint(receiver.url(f"/p{i}"), event_types=["p"])).id
            for i in range(7)
        }
        seen: list[str] = []
        cursor = None
        while True:
            page = await pb.list_endpoints(limit=3, cursor=cursor)
            seen += [e.id for e in page.data]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(seen) == sorted(made)
        await pb.send_batch([{"event_type": "p", "payload": {"n": i}} for i in range(2)])
        ids: list[str] = []
        cursor = None
        while True:
            dpage = await pb.list_deliveries(limit=4, cursor=cursor)
            ids += [d.id for d in dpage.data]
            if dpage.next_cursor is None:
                break
            cursor = dpage.next_cursor
    assert len(ids) == len(set(ids)) == 14
    assert ids == sorted(ids, reverse=True)  # newest first


async def test_event_type_filter_disabled_patch_and_delete(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        mo_only = await pb.create_endpoint(receiver.url("/mo"), event_types=["mo_text"])
        off = await pb.create_endpoint(receiver.url("/off"), disabled=True)
        moved = await pb.create_endpoint(receiver.url("/before"))
        await pb.update_endpoint(moved.id, url=receiver.url("/after"))
        sent = await pb.send("recipient_delivery_report_sms", recipient_report())
        assert {d.endpoint_id for d in sent.deliveries} == {moved.id}
        await receiver.wait_for("/after")
        await pb.send("mo_text", mo_text("hi"))
        await receiver.wait_for("/mo")
        await pb.delete_endpoint(mo_only.id)
        with pytest.raises(APIError) as gone:
            await pb.get_endpoint(mo_only.id)
        assert gone.value.status == 404
    assert receiver.at("/off") == [] and receiver.at("/before") == []
    assert off.disabled


async def test_deleting_an_endpoint_dead_letters_its_pending_deliveries(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        endpoint = await pb.create_endpoint(
            receiver.on("/later", status(503)), retry_policy={"schedule_s": [3600]}
        )
        accepted = await pb.send("t", {"n": 1})
        await receiver.wait_for("/later")

        async def retry_scheduled() -> bool:
            [d] = (await pb.get_message(accepted.id)).deliveries
            return d.state == "pending" and d.next_attempt_at is not None

        await wait_until(retry_scheduled)
        await pb.delete_endpoint(endpoint.id)
        [delivery] = (await pb.get_message(accepted.id)).deliveries
    assert delivery.state == "dead" and delivery.dead_reason == "endpoint deleted"


async def test_callback_url_gets_its_own_signed_delivery(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        accepted = await pb.send("t", {"n": 1}, callback_url=receiver.url("/per-batch"))
        [got] = await receiver.wait_for("/per-batch")
        [delivery] = accepted.deliveries
        endpoint = await pb.get_endpoint(delivery.endpoint_id)
        secret = await pb.get_secret(endpoint.id)
        again = await pb.send("t", {"n": 2}, callback_url=receiver.url("/per-batch"))
        other = await pb.send("u", {"n": 3})
    assert endpoint.kind == "callback_url"
    assert again.deliveries[0].endpoint_id == endpoint.id  # one endpoint per URL, reused
    assert other.deliveries == []  # callback endpoints get only messages that name them
    Webhook(secret.key).verify(got.body, got.headers)


async def test_openapi_docs_and_health(postback: RunningPostback) -> None:
    code, document = await raw(postback, "GET", "/openapi.json", None)
    assert code == 200 and document["openapi"].startswith("3.1")
    validate_openapi(document)  # a third-party validator of the OpenAPI specification
    for path in (
        "/v1/endpoints",
        "/v1/messages/batch",
        "/v1/deliveries/{id}/attempts",
        "/v1/replay",
    ):
        assert path in document["paths"]
    operations = [op for item in document["paths"].values() for op in item.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) and all(op["tags"] for op in operations)
    listing = document["paths"]["/v1/deliveries"]["get"]
    params = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert params["limit"]["type"] == "integer" and params["limit"]["maximum"] == 1000
    assert params["state"]["enum"] == ["pending", "delivering", "delivered", "dead", "aborted"]
    assert listing["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    async with aiohttp.ClientSession() as session:
        async with session.get(postback.url + "/docs") as page:
            html = await page.text()
            assert page.status == 200 and "/docs/static/swagger-ui-bundle.js" in html
        async with session.get(postback.url + "/docs/static/swagger-ui-bundle.js") as script:
            assert script.status == 200 and len(await script.read()) > 100_000
    async with Client(postback.url) as anonymous:
        assert (await anonymous.health()).status == "ok"


async def test_message_shows_deliveries_and_attempt_fields(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with await postback.new_account() as pb:
        await pb.create_endpoint(receiver.on("/m", status(500)), retry_policy={"schedule_s": [60]})
        accepted = await pb.send("t", {"n": 1})

        async def attempted() -> DeliveryOut | None:
            [d] = (await pb.get_message(accepted.id)).deliveries
            return d if d.attempt_count == 1 else None

        delivery = await wait_until(attempted)
        message = await pb.get_message(accepted.id)
        [attempt] = (await pb.list_attempts(delivery.id)).data
    assert bytes(message.payload) == b'{"n":1}'
    assert delivery.state == "pending" and delivery.last_status_code == 500
    assert delivery.next_attempt_at is not None
    assert attempt.status_code == 500 and attempt.outcome == "retry" and attempt.duration_ms > 0
    assert (
        time.time() - 60
        < time.mktime(time.strptime(attempt.started_at[:19], "%Y-%m-%dT%H:%M:%S"))
        - time.timezone
        + 1
    )


async def test_portal_sessions_need_a_platform_key_and_a_real_account(
    postback: RunningPostback,
) -> None:
    async with postback.client() as admin:
        account = await admin.create_account("acme", external_id="cust-7")
        link = await admin.create_portal_session(account.id)
        platform = await admin.create_key(platform=True)
        with pytest.raises(APIError) as unknown:
            await admin.create_portal_session("acc_nobody")
    assert link.url.startswith(postback.url + "/ui/portal?token=")
    assert link.expires_at.endswith("Z")
    async with Client(postback.url, platform.key) as by_platform:
        by_external_id = await by_platform.create_portal_session("cust-7")
    assert by_external_id.url.startswith(postback.url + "/ui/portal?token=")
    async with Client(postback.url, account.api_key) as customer:
        with pytest.raises(APIError) as not_platform:
            await customer.create_portal_session(account.id)
    assert unknown.value.status == 404
    assert not_platform.value.status == 403  # an account key cannot mint portal links
