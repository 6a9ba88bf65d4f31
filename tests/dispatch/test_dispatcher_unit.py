"""Ingest and the dispatcher together, without sockets: SQLite in a temp file, the mock transport,
and a clock the test moves by hand (a 5 s retry wait takes no time).

Only the dispatcher's public surface is used (constructor, ``run(stop)``, ``wake()``).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from postback.core.errors import PostbackError
from postback.core.model import Account, DeliveryState, Endpoint
from postback.core.outcome import Outcome
from postback.core.wire import EndpointCreate
from postback.dispatch.loop import Dispatcher, DispatcherSettings
from postback.ingest import MessageSubmission, Services
from postback.receiver import verify
from postback.store import Storage, open_storage
from postback.transports.mock import MockTransport
from tests.support.payloads import mo_text
from tests.support.service import wait_until

T0 = 1_800_000_000.0  # seconds since the epoch: where the test's clock starts


class Clock:
    """Time as the test says: ``clock()`` is now, ``advance(s)`` moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Rig:
    storage: Storage
    services: Services
    transport: MockTransport
    dispatcher: Dispatcher
    clock: Clock
    account: Account
    endpoint: Endpoint
    secret: str

    async def submit(self) -> tuple[str, str, bytes]:
        payload = msgspec.json.encode(mo_text("hi"))
        [result] = await self.services.messages.submit(
            self.account.id, [MessageSubmission(event_type="mo_text", payload=payload)]
        )
        [delivery] = result.deliveries
        return result.message_id, delivery.id, payload

    async def delivery_in(self, delivery_id: str, state: DeliveryState) -> bool:
        delivery = await self.services.deliveries.get(self.account.id, delivery_id)
        return delivery.state is state


class NoNetwork(PostbackError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any outbound connection or name lookup fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NoNetwork(f"unit test tried the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    # Parametrised indirectly with a factory: each test gets its own script.
    transport: MockTransport = getattr(request, "param", MockTransport)()
    clock = Clock(T0)
    storage = open_storage(f"sqlite:///{tmp_path / 'postback.db'}")
    await storage.open(migrate=True)
    dispatcher = Dispatcher(storage, transport, DispatcherSettings(idle_poll_s=0.02), clock=clock)
    services = Services.build(
        storage, on_ingest=dispatcher.wake, clock=clock, guard_destinations=False
    )
    account, _ = await services.accounts.create("acme")
    endpoint, secret = await services.endpoints.create(
        account.id, EndpointCreate(url="https://hooks.example.com/sms")
    )
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        yield Rig(storage, services, transport, dispatcher, clock, account, endpoint, secret)
    finally:
        stop.set()
        await running
        await storage.close()


async def test_an_ingested_message_is_sent_signed_and_recorded(rig: Rig) -> None:
    message_id, delivery_id, payload = await rig.submit()

    [request] = await asyncio.wait_for(rig.transport.wait_for_requests(1), 30)
    await wait_until(lambda: rig.delivery_in(delivery_id, DeliveryState.DELIVERED))

    assert request.url == "https://hooks.example.com/sms"
    assert request.endpoint_id == rig.endpoint.id and request.message_id == message_id
    assert request.body == payload  # the exact bytes submitted
    assert request.headers["webhook-id"] == message_id
    assert request.headers["webhook-timestamp"] == str(int(T0))
    verify(request.headers, request.body, rig.secret, now_s=T0)

    [attempt] = await rig.services.deliveries.attempts(
        rig.account.id, delivery_id, after=None, limit=10
    )
    assert attempt.outcome == Outcome.DELIVERED and attempt.status_code == 200
    assert attempt.attempt_number == 1 and attempt.started_at == int(T0 * 1000)
    delivery = await rig.services.deliveries.get(rig.account.id, delivery_id)
    assert delivery.attempt_count == 1 and delivery.last_status_code == 200


@pytest.mark.parametrize("rig", [lambda: MockTransport.scripted(503, 200)], indirect=True)
async def test_a_503_is_retried_after_the_schedule_s_wait_then_delivered(rig: Rig) -> None:
    _, delivery_id, _ = await rig.submit()

    await asyncio.wait_for(rig.transport.wait_for_requests(1), 30)
    await wait_until(lambda: rig.delivery_in(delivery_id, DeliveryState.PENDING))
    waiting = await rig.services.deliveries.get(rig.account.id, delivery_id)
    # The default (Sinch) schedule: "The first initial retry will happen 5 seconds after the
    # first try." Nothing is sent again until the clock gets there.
    assert waiting.next_attempt_at == int(T0 * 1000) + 5000
    assert waiting.attempt_count == 1 and waiting.last_status_code == 503
    assert len(rig.transport.requests) == 1

    rig.clock.advance(5)
    rig.dispatcher.wake()
    second = (await asyncio.wait_for(rig.transport.wait_for_requests(2), 30))[1]
    await wait_until(lambda: rig.delivery_in(delivery_id, DeliveryState.DELIVERED))

    first = rig.transport.requests[0]
    assert second.headers["webhook-id"] == first.headers["webhook-id"]  # same id on a retry
    assert second.headers["webhook-timestamp"] == str(int(T0) + 5)
    attempts = await rig.services.deliveries.attempts(
        rig.account.id, delivery_id, after=None, limit=10
    )
    assert [(a.attempt_number, a.outcome, a.status_code, a.started_at) for a in attempts] == [
        (1, Outcome.RETRY, 503, int(T0 * 1000)),
        (2, Outcome.DELIVERED, 200, int(T0 * 1000) + 5000),
    ]


@pytest.mark.parametrize("rig", [lambda: MockTransport.scripted(404)], indirect=True)
async def test_a_404_is_dead_at_once_under_the_default_policy(rig: Rig) -> None:
    _, delivery_id, _ = await rig.submit()

    await wait_until(lambda: rig.delivery_in(delivery_id, DeliveryState.DEAD))
    delivery = await rig.services.deliveries.get(rig.account.id, delivery_id)
    assert delivery.dead_reason == "permanent failure: HTTP 404"
    assert len(rig.transport.requests) == 1
