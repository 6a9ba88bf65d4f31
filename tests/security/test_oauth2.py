"""OAuth 2.0 against a real token server on 127.0.0.1 that issues expiring tokens."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import unquote

import pytest
from aiohttp import web

from postback.core.wire import DeliveryOut
from tests.support.receiver import Received, Receiver
from tests.support.service import RunningPostback, wait_until

CLIENT_ID = "postback-client"
CLIENT_SECRET = "s3cr:et/with+chars"


@dataclass
class TokenServer:
    """RFC 6749 client-credentials and password grants with client_secret_basic."""

    lifetime_s: float = 60.0
    status: int = 200
    issued: dict[str, float] = field(default_factory=dict)
    forms: list[dict[str, str]] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth/token"

    def valid(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        expires = self.issued.get(authorization.removeprefix("Bearer "))
        return expires is not None and time.time() < expires

    def revoke_all(self) -> None:
        self.issued.clear()

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.forms.append({k: str(v) for k, v in form.items()})
        if self.status != 200:
            return web.json_response({"error": "temporarily_unavailable"}, status=self.status)
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        if scheme != "Basic" or (unquote(client_id), unquote(secret)) != (CLIENT_ID, CLIENT_SECRET):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_urlsafe(16)
        self.issued[token] = time.time() + self.lifetime_s
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime_s}
        )

    async def start(self) -> TokenServer:
        app = web.Application()
        app.router.add_post("/oauth/token", self.token)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self


@pytest.fixture
async def token_server() -> AsyncIterator[TokenServer]:
    server = await TokenServer().start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


def protected(tokens: TokenServer):  # type: ignore[no-untyped-def]
    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        if tokens.valid(request.headers.get("Authorization")):
            return web.Response(status=204)
        return web.Response(status=401)

    return respond


def oauth(tokens: TokenServer, **extra: str) -> dict[str, str]:
    return {
        "type": "oauth2",
        "token_url": tokens.url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **extra,
    }


async def test_token_fetched_once_for_concurrent_deliveries(
    postback: RunningPostback, receiver: Receiver, token_server: TokenServer
) -> None:
    async with await postback.new_account() as pb:
        await pb.create_endpoint(
            receiver.on("/hook", protected(token_server)),
            auth=oauth(token_server, scope="callbacks"),
        )
        await pb.send_batch([{"event_type": "t", "payload": {"n": i}} for i in range(20)])
        arrivals = await receiver.wait_for("/hook", 20)
    assert len(token_server.forms) == 1
    assert token_server.forms[0] == {"grant_type": "client_credentials", "scope": "callbacks"}
    assert all(token_server.valid(a.headers["authorization"]) for a in arrivals)


async def test_expired_token_is_refreshed(
    postback: RunningPostback, receiver: Receiver, token_server: TokenServer
) -> None:
    token_server.lifetime_s = 1.0
    async with await postback.new_account() as pb:
        await pb.create_endpoint(
            receiver.on("/hook", protected(token_server)), auth=oauth(token_server)
        )
        await pb.send("t", {"n": 1})
        [first] = await receiver.wait_for("/hook", 1)
        await wait_until(lambda: _after(first.at + 1.2), timeout=5)
        await pb.send("t", {"n": 2})
        second = (await receiver.wait_for("/hook", 2))[1]
    assert len(token_server.forms) == 2
    assert first.headers["authorization"] != second.headers["authorization"]


async def _after(moment: float) -> bool:
    return time.time() >= moment


async def test_401_fetches_a_new_token_and_retries_at_once(
    postback: RunningPostback, receiver: Receiver, token_server: TokenServer
) -> None:
    async with await postback.new_account() as pb:
        await pb.create_endpoint(
            receiver.on("/hook", protected(token_server)), auth=oauth(token_server)
        )
        await pb.send("t", {"n": 1})
        await receiver.wait_for("/hook", 1)
        token_server.revoke_all()  # the customer revoked every token it had issued
        accepted = await pb.send("t", {"n": 2})
        hits = await receiver.wait_for("/hook", 3)

        async def delivered() -> DeliveryOut | None:
            [d] = (await pb.get_message(accepted.id)).deliveries
            return d if d.state == "delivered" else None

        delivery = await wait_until(delivered)
        attempts = (await pb.list_attempts(delivery.id)).data
    assert hits[1].headers["authorization"] != hits[2].headers["authorization"]
    assert len(token_server.forms) == 2
    # The refresh and second try happen inside one attempt, which succeeded.
    assert [(a.status_code, a.outcome) for a in attempts] == [(204, "delivered")]


async def test_password_grant_sends_username_and_password(
    postback: RunningPostback, receiver: Receiver, token_server: TokenServer
) -> None:
    async with await postback.new_account() as pb:
        await pb.create_endpoint(
            receiver.on("/hook", protected(token_server)),
            auth=oauth(token_server, grant="password", username="sinch", password="pw d"),
        )
        await pb.send("t", {"n": 1})
        await receiver.wait_for("/hook", 1)
    assert token_server.forms == [
        {"grant_type": "password", "username": "sinch", "password": "pw d"}
    ]


async def test_token_url_down_is_a_retried_attempt_failure(
    postback: RunningPostback, receiver: Receiver, token_server: TokenServer
) -> None:
    token_server.status = 503
    async with await postback.new_account() as pb:
        await pb.create_endpoint(
            receiver.on("/hook", protected(token_server)),
            auth=oauth(token_server),
            retry_policy={"schedule_s": [0.3, 0.3, 0.3]},
        )
        accepted = await pb.send("t", {"n": 1})

        async def failed_once() -> DeliveryOut | None:
            [d] = (await pb.get_message(accepted.id)).deliveries
            return d if d.attempt_count >= 1 else None

        delivery = await wait_until(failed_once)
        token_server.status = 200
        await receiver.wait_for("/hook", 1)

        async def delivered() -> bool:
            [d] = (await pb.get_message(accepted.id)).deliveries
            return d.state == "delivered"

        await wait_until(delivered)  # the arrival precedes the record of it
        attempts = (await pb.list_attempts(delivery.id)).data
    first = attempts[0]
    assert first.outcome == "retry" and first.status_code is None
    assert first.error is not None and "token URL" in first.error and "HTTP 503" in first.error
    assert attempts[-1].outcome == "delivered"


async def test_client_secret_is_never_returned(
    postback: RunningPostback, receiver: Receiver, token_server: TokenServer
) -> None:
    async with await postback.new_account() as pb:
        created = await pb.create_endpoint(receiver.url("/hook"), auth=oauth(token_server))
        shown = await pb.get_endpoint(created.id)
        listed = await pb.list_endpoints()
    for view in (created, shown, *listed.data):
        assert view.auth is not None and view.auth.type == "oauth2"
        assert CLIENT_SECRET not in repr(view)
    assert shown.auth is not None and shown.auth.client_id == CLIENT_ID
