"""HTTP Basic and bearer auth end to end against a receiver that checks them."""

from __future__ import annotations

from aiohttp import web

from postback.core.wire import DeliveryOut
from postback.receiver import check_basic, check_bearer
from tests.support.receiver import Received, Receiver
from tests.support.service import RunningPostback, wait_until


def requires_basic(username: str, password: str):  # type: ignore[no-untyped-def]
    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        ok = check_basic(request.headers, username, password)
        return web.Response(status=204 if ok else 401)

    return respond


def requires_bearer(token: str):  # type: ignore[no-untyped-def]
    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        return web.Response(status=204 if check_bearer(request.headers, token) else 401)

    return respond


async def test_right_and_wrong_credentials(postback: RunningPostback, receiver: Receiver) -> None:
    async with await postback.new_account() as pb:
        await pb.create_endpoint(
            receiver.on("/basic-ok", requires_basic("sinch", "right")),
            auth={"type": "basic", "username": "sinch", "password": "right"},
        )
        await pb.create_endpoint(
            receiver.on("/basic-wrong", requires_basic("sinch", "right")),
            auth={"type": "basic", "username": "sinch", "password": "wrong"},
        )
        await pb.create_endpoint(
            receiver.on("/bearer-ok", requires_bearer("notify-token")),
            auth={"type": "bearer", "token": "notify-token"},
            retry_policy={"preset": "notify"},
        )
        accepted = await pb.send("t", {"n": 1})

        async def settled() -> list[DeliveryOut] | None:
            deliveries = (await pb.get_message(accepted.id)).deliveries
            done = all(d.state in ("delivered", "dead") for d in deliveries)
            return deliveries if done else None

        deliveries = await wait_until(settled)
        endpoints = {e.id: e.url for e in (await pb.list_endpoints()).data}
    by_path = {endpoints[d.endpoint_id].rsplit("/", 1)[1]: d for d in deliveries}
    assert by_path["basic-ok"].state == "delivered"
    assert by_path["bearer-ok"].state == "delivered"
    wrong = by_path["basic-wrong"]
    # A wrong password is the customer's configuration to fix: permanent under the sinch policy.
    assert wrong.state == "dead" and wrong.dead_reason == "permanent failure: HTTP 401"
