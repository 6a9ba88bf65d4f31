"""A platform and its customers over real sockets: platform keys, account scoping, key life."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from postback.api.app import ACCOUNT_ROUTES, create_app
from postback.api.openapi import TEXT_PATTERN, openapi_document, operations
from postback.client import APIError, Client
from postback.ingest import Services
from postback.ingest.keys import KEY_CACHE_TTL_S
from postback.store import open_storage
from tests.support.payloads import mo_text
from tests.support.processes import TEST_SEALER
from tests.support.receiver import Receiver
from tests.support.service import RunningPostback, start_postback, wait_until


async def raw(
    postback: RunningPostback, method: str, path: str, key: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, postback.url + path, headers=headers, json=body) as response,
    ):
        text = await response.text()
        return response.status, await response.json(content_type=None) if text else None


@pytest.fixture(params=["sqlite", "postgres"])
async def service(
    request: pytest.FixtureRequest, sqlite_url: str, postgres_url: str
) -> AsyncIterator[RunningPostback]:
    running = await start_postback(sqlite_url if request.param == "sqlite" else postgres_url)
    try:
        yield running
    finally:
        await running.shutdown()


async def platform_key(postback: RunningPostback) -> str:
    async with Client(postback.url, admin_token=postback.admin_token) as admin:
        created = await admin.create_key(platform=True, name="gateway")
    assert created.platform and created.account_id is None and created.key.startswith("pbp_")
    return created.key


async def test_one_platform_batch_reaches_each_customers_endpoint_and_no_one_elses(
    service: RunningPostback, receiver: Receiver
) -> None:
    key = await platform_key(service)
    async with Client(service.url, key) as platform:
        alpha = await platform.create_account("Alpha Ltd", external_id="cust-1", create_key=False)
        beta = await platform.create_account("Beta GmbH", external_id="cust-2", create_key=False)
        bystander = await platform.create_account("Gamma", create_key=False)
        assert alpha.api_key is None and alpha.external_id == "cust-1"
        # Endpoints registered per customer: by external id in the path, or by account id.
        await platform.for_account("cust-1").create_endpoint(
            receiver.url("/alpha"), event_types=["mo_text"]
        )
        await platform.for_account(beta.id).create_endpoint(receiver.url("/beta"))
        await platform.for_account(bystander.id).create_endpoint(receiver.url("/gamma"))

        accepted = await platform.send_batch(
            [
                {"event_type": "mo_text", "payload": mo_text("a1"), "account": "cust-1"},
                {"event_type": "mo_text", "payload": mo_text("b1"), "account": "cust-2"},
                {"event_type": "mo_text", "payload": mo_text("a2"), "account": alpha.id},
            ]
        )
        assert [len(m.deliveries) for m in accepted.data] == [1, 1, 1]
        await receiver.wait_for("/alpha", 2)
        await receiver.wait_for("/beta", 1)

        async def all_delivered() -> bool:
            states = [
                d.state
                for ref in ("cust-1", "cust-2")
                for d in (await platform.for_account(ref).list_deliveries()).data
            ]
            return states == ["delivered"] * 3

        await wait_until(all_delivered)
        bodies = sorted(r.body for r in receiver.at("/alpha"))
        assert [b'"a1"' in b or b'"a2"' in b for b in bodies] == [True, True]
        assert all(b'"b1"' in r.body for r in receiver.at("/beta"))
        assert receiver.at("/gamma") == []
        gamma = await platform.for_account(bystander.id).list_deliveries()
        assert gamma.data == []

        # Listing and search: by part of the name or of the external id.
        listed = await platform.list_accounts()
        assert {a.id for a in listed.data} == {alpha.id, beta.id, bystander.id}
        assert [a.id for a in (await platform.list_accounts(q="CUST-2")).data] == [beta.id]
        assert [a.id for a in (await platform.list_accounts(q="alpha")).data] == [alpha.id]
        first = await platform.list_accounts(limit=2)
        rest = await platform.list_accounts(limit=2, cursor=first.next_cursor)
        assert len(first.data) == 2 and len(rest.data) == 1 and rest.next_cursor is None
        assert (await platform.get_account("cust-2")).id == beta.id

        # A platform key must name the account; a message for an unknown one changes nothing.
        status, body = await raw(service, "GET", "/v1/endpoints", key)
        assert status == 400 and body["error"]["field"] == "account"
        status, body = await raw(
            service,
            "POST",
            "/v1/messages/batch",
            key,
            [
                {"event_type": "mo_text", "payload": mo_text(), "account": "cust-1"},
                {"event_type": "mo_text", "payload": mo_text(), "account": "cust-404"},
            ],
        )
        assert status == 404 and body["error"]["code"] == "not_found"
        status, body = await raw(
            service,
            "POST",
            "/v1/messages/batch",
            key,
            [{"event_type": "mo_text", "payload": mo_text()}],
        )
        assert status == 400 and body["error"]["field"] == "$[0].account"
        assert len((await platform.for_account("cust-1").list_deliveries()).data) == 2


async def test_a_callback_url_overrides_the_subscribed_endpoints_unless_fanout(
    service: RunningPostback, receiver: Receiver
) -> None:
    """Sinch: a batch's callback_url "overrides the default callback URL" for that batch."""
    async with await service.new_account() as pb:
        await pb.create_endpoint(receiver.url("/default-1"), event_types=["mo_text"])
        await pb.create_endpoint(receiver.url("/default-2"))
        override = await pb.send("mo_text", mo_text("override"), callback_url=receiver.url("/cb"))
        fanout = await pb.send(
            "mo_text", mo_text("fanout"), callback_url=receiver.url("/cb"), fanout=True
        )
        plain = await pb.send("mo_text", mo_text("plain"))
        assert [len(m.deliveries) for m in (override, fanout, plain)] == [1, 3, 2]
        [cb_endpoint] = {d.endpoint_id for d in override.deliveries}
        assert (await pb.get_endpoint(cb_endpoint)).kind == "callback_url"
        assert cb_endpoint in {d.endpoint_id for d in fanout.deliveries}

        async def settled() -> bool:
            page = await pb.list_deliveries()
            return len(page.data) == 6 and all(d.state == "delivered" for d in page.data)

        await wait_until(settled)
    assert sorted(r.body.count(b'"override"') for r in receiver.at("/cb")) == [0, 1]
    for path in ("/default-1", "/default-2"):
        bodies = [r.body for r in receiver.at(path)]
        assert len(bodies) == 2 and not any(b'"override"' in b for b in bodies), path


async def test_an_account_key_reaches_only_its_own_account(service: RunningPostback) -> None:
    key = await platform_key(service)
    async with Client(service.url, key) as platform:
        mine = await platform.create_account("Mine", external_id="mine")
        theirs = await platform.create_account("Theirs", external_id="theirs")
        their_endpoint = await platform.for_account("theirs").create_endpoint(
            "https://example.com/theirs"
        )
    assert mine.api_key is not None
    own = mine.api_key
    for path in (
        f"/v1/accounts/{theirs.id}",
        "/v1/accounts/theirs",
        f"/v1/accounts/{theirs.id}/endpoints",
        "/v1/accounts/theirs/deliveries",
        f"/v1/accounts/theirs/endpoints/{their_endpoint.id}",
        f"/v1/endpoints/{their_endpoint.id}",
        f"/v1/accounts/mine/endpoints/{their_endpoint.id}",
        "/v1/accounts/theirs/event-types",
        "/v1/keys?account=theirs",
    ):
        status, body = await raw(service, "GET", path, own)
        assert (status, body["error"]["code"]) == (404, "not_found"), path
    for path, body in (
        ("/v1/accounts/theirs/messages", {"event_type": "mo_text", "payload": mo_text()}),
        ("/v1/messages", {"event_type": "mo_text", "payload": mo_text(), "account": "theirs"}),
        (
            "/v1/messages/batch",
            [{"event_type": "mo_text", "payload": mo_text(), "account": theirs.id}],
        ),
        ("/v1/accounts/theirs/replay", {}),
        ("/v1/keys", {"account": "theirs"}),
    ):
        status, answer = await raw(service, "POST", path, own, body)
        assert (status, answer["error"]["code"]) == (404, "not_found"), path
    # Its own account, by id or external id, in the path or not.
    for path in ("/v1/endpoints", f"/v1/accounts/{mine.id}/endpoints", "/v1/accounts/mine"):
        status, _ = await raw(service, "GET", path, own)
        assert status == 200, path
    # Platform-only operations.
    for method, path, body in (
        ("GET", "/v1/accounts", None),
        ("POST", "/v1/accounts", {"name": "sneaky"}),
        ("POST", "/v1/keys", {"platform": True}),
    ):
        status, answer = await raw(service, method, path, own, body)
        assert (status, answer["error"]["code"]) == (403, "forbidden"), path
    async with Client(service.url, key) as platform:
        assert (await platform.list_accounts(q="sneaky")).data == []
        assert [k.platform for k in (await platform.list_keys()).data].count(True) == 1


async def test_keys_listed_rotated_revoked_and_never_shown_again(
    service: RunningPostback, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    key = await platform_key(service)
    seen.append(key)
    async with Client(service.url, key) as platform:
        account = await platform.create_account("Keys Inc", external_id="keys")
        assert account.api_key is not None
        seen.append(account.api_key)
        extra = await platform.create_key(account="keys", name="ci")
        seen.append(extra.key)
        assert extra.key.startswith("pbk_") and extra.account_id == account.id
        assert extra.prefix == extra.key[:8] and extra.last4 == extra.key[-4:]

        listing = await platform.list_keys(account="keys")
        assert len(listing.data) == 2 and all(k.account_id == account.id for k in listing.data)
        every = await platform.list_keys()
        assert len(every.data) == 3
        # The answers never carry a key, only how to recognise one.
        for path in ("/v1/keys", f"/v1/keys?account={account.id}"):
            status, body = await raw(service, "GET", path, key)
            assert status == 200
            assert all("key" not in item for item in body["data"])
            text = str(body)
            assert not any(secret in text for secret in seen)

    async with Client(service.url, extra.key) as ci:
        # An account key manages its own account's keys.
        assert {k.id for k in (await ci.list_keys()).data} == {k.id for k in listing.data}
        rotated = await ci.rotate_key(extra.id)
        seen.append(rotated.key)
        assert rotated.name == "ci" and rotated.account_id == account.id
        with pytest.raises(APIError) as refused:
            await ci.list_endpoints()
        assert refused.value.status == 401  # the old key stopped at once on this node
    async with Client(service.url, rotated.key) as ci:
        assert len((await ci.list_endpoints()).data) == 0
        graceful = await ci.rotate_key(rotated.id, grace_s=3600)
        seen.append(graceful.key)
        await ci.list_endpoints()  # still works during the grace period
        revoked = await ci.revoke_key(rotated.id)
        assert revoked.revoked_at is not None
        with pytest.raises(APIError) as refused:
            await ci.list_endpoints()
        assert refused.value.status == 401 and "revoked" in refused.value.message
    async with Client(service.url, graceful.key) as ci:
        with pytest.raises(APIError) as conflict:
            await ci.rotate_key(rotated.id)
        assert conflict.value.status == 409

    status, body = await raw(service, "POST", "/v1/keys", key, {"platform": True})
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await raw(service, "POST", "/v1/keys/key_unknown/revoke", key)
    assert status == 404
    status, body = await raw(
        service, "POST", f"/v1/keys/{graceful.id}/rotate", key, {"grace_s": -1}
    )
    assert status == 400 and body["error"]["field"] == "grace_s"

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(secret in logged for secret in seen)


async def test_external_ids_are_unique_and_checked(service: RunningPostback) -> None:
    key = await platform_key(service)
    async with Client(service.url, key) as platform:
        await platform.create_account("One", external_id="plan.7")
        with pytest.raises(APIError) as taken:
            await platform.create_account("Two", external_id="plan.7")
        assert taken.value.status == 409
        for bad in ("", "has space", "a/b", "acc_01", "x" * 129):
            with pytest.raises(APIError) as refused:
                await platform.create_account("Bad", external_id=bad)
            assert refused.value.status == 400 and refused.value.field == "external_id", bad
        assert [a.external_id for a in (await platform.list_accounts()).data] == ["plan.7"]


async def test_revocation_reaches_every_node_within_a_second(postgres_url: str) -> None:
    """Two Postbacks on one PostgreSQL database: a key revoked through one stops working on
    the other within 1 s, although the other had just used (and cached) it."""
    first = await start_postback(postgres_url)
    second = await start_postback(postgres_url)
    try:
        key = await platform_key(first)
        async with Client(first.url, key) as platform:
            account = await platform.create_account("Fleet customer")
        assert account.api_key is not None
        async with Client(second.url, account.api_key) as on_second:
            await on_second.list_endpoints()  # cached on the second node now
            async with Client(first.url, account.api_key) as on_first:
                [own] = (await on_first.list_keys()).data
                await on_first.revoke_key(own.id)
            await asyncio.sleep(1.0)
            with pytest.raises(APIError) as refused:
                await on_second.list_endpoints()
            assert refused.value.status == 401
    finally:
        await first.shutdown()
        await second.shutdown()
    assert KEY_CACHE_TTL_S < 1.0


async def test_every_route_is_documented_once_with_an_operation_id(sqlite_url: str) -> None:
    storage = open_storage(sqlite_url, TEST_SEALER)
    await storage.open()
    try:
        app = create_app(Services.build(storage), admin_token="t")
    finally:
        await storage.close()
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/v1")
        and route.method != "HEAD"
    }
    documented = {(op.method, op.path) for op in operations() if op.path.startswith("/v1")}
    assert served == documented
    # 13: accounts, keys, portal links, account settings, operational endpoints
    assert len(served) == 13 + 2 * len(ACCOUNT_ROUTES)
    ids = [op.operation_id for op in operations()]
    assert len(ids) == len(set(ids))
    document = openapi_document()
    scoped = document["paths"]["/v1/accounts/{account}/messages/batch"]["post"]
    assert scoped["operationId"] == "createMessageBatchForAccount"
    assert scoped["tags"] == ["Messages"]
    account_parameter = {
        "name": "account",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": TEXT_PATTERN},
    }
    assert account_parameter in scoped["parameters"]
