"""Ingest and the dispatcher together, without sockets: the in-memory store and SQLite in a temp
file (each test runs on both), the mock transport, and a clock the test moves by hand (a 5 s
retry wait takes no time).

Only the dispatcher's public surface is used (constructor, ``run(stop)``, ``wake()``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from postback.core.breaker import BreakerRules
from postback.core.errors import PostbackError
from postback.core.ids import make_id
from postback.core.model import (
    Account,
    AttemptRecord,
    DeliveryState,
    Endpoint,
    LeaseOffer,
    NewMessage,
)
from postback.core.outcome import AttemptResult, FailureKind, Outcome
from postback.core.policy import RetryPolicy
from postback.core.wire import EndpointCreate, EndpointUpdate
from postback.dispatch.loop import Dispatcher, DispatcherSettings
from postback.ingest import MessageSubmission, Services
from postback.receiver import verify
from postback.store import Storage, open_storage
from postback.store.memory import MemoryStorage
from postback.transports.mock import MockTransport, fail, respond
from tests.storage.contract import delivered_record
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

    async def submit_texts(self, count: int) -> None:
        await self.services.messages.submit(
            self.account.id,
            [
                MessageSubmission(event_type="mo_text", payload=msgspec.json.encode(mo_text("x")))
                for _ in range(count)
            ],
        )

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


@pytest.fixture(params=["memory", "sqlite"])
def new_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Storage]:
    """The dispatcher's scheduling is proven on the in-memory store, which needs no database,
    and again on SQLite: both must give the same answers."""
    if request.param == "memory":
        return MemoryStorage
    return lambda: open_storage(f"sqlite:///{tmp_path / 'postback.db'}")


@pytest.fixture
async def rig(
    new_storage: Callable[[], Storage], request: pytest.FixtureRequest
) -> AsyncIterator[Rig]:
    # Parametrised indirectly with a factory: each test gets its own script.
    transport: MockTransport = getattr(request, "param", MockTransport)()
    clock = Clock(T0)
    storage = new_storage()
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


@pytest.mark.parametrize(
    "rig", [lambda: MockTransport.scripted(503, 503, 503, 503, then=200)], indirect=True
)
async def test_attempts_made_within_one_millisecond_list_in_the_order_they_were_made(
    rig: Rig,
) -> None:
    """Retries with no wait, on a clock that does not move: five attempts in one millisecond
    come back as attempts 1 to 5 (the list is ordered by id; random ids within a millisecond
    would shuffle them)."""
    endpoint = rig.endpoint
    await rig.services.endpoints.update(
        rig.account.id,
        endpoint.id,
        EndpointUpdate(retry_policy=RetryPolicy(schedule_s=(0.0, 0.0, 0.0, 0.0))),
    )
    _, delivery_id, _ = await rig.submit()
    await wait_until(lambda: rig.delivery_in(delivery_id, DeliveryState.DELIVERED))
    attempts = await rig.services.deliveries.attempts(
        rig.account.id, delivery_id, after=None, limit=10
    )
    assert [(a.attempt_number, a.status_code) for a in attempts] == [
        (1, 503),
        (2, 503),
        (3, 503),
        (4, 503),
        (5, 200),
    ]
    assert {a.started_at for a in attempts} == {int(T0 * 1000)}


@pytest.mark.parametrize("rig", [lambda: MockTransport.scripted(404)], indirect=True)
async def test_a_404_is_dead_at_once_under_the_default_policy(rig: Rig) -> None:
    _, delivery_id, _ = await rig.submit()

    await wait_until(lambda: rig.delivery_in(delivery_id, DeliveryState.DEAD))
    delivery = await rig.services.deliveries.get(rig.account.id, delivery_id)
    assert delivery.dead_reason == "permanent failure: HTTP 404"
    assert len(rig.transport.requests) == 1


async def test_prefetched_deliveries_wait_for_a_slot_and_are_handed_back_at_shutdown(
    new_storage: Callable[[], Storage],
) -> None:
    """Share 2, prefetch 2: never more than 2 requests to the endpoint at once though 4 are
    leased; what was ready but never sent goes back to pending when the dispatcher stops."""
    gate = asyncio.Event()
    in_flight = 0
    most = 0

    async def hold(_request: object) -> AttemptResult:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await gate.wait()
            return respond(200)
        finally:
            in_flight -= 1

    transport = MockTransport(hold)
    storage = new_storage()
    await storage.open(migrate=True)
    settings = DispatcherSettings(
        idle_poll_s=0.02, per_endpoint=2, prefetch=2, shutdown_timeout_s=0.2
    )
    dispatcher = Dispatcher(storage, transport, settings)
    services = Services.build(storage, on_ingest=dispatcher.wake, guard_destinations=False)
    account, _ = await services.accounts.create("acme")
    await services.endpoints.create(account.id, EndpointCreate(url="https://hooks.example.com/x"))
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        results = await services.messages.submit(
            account.id,
            [
                MessageSubmission(event_type="mo_text", payload=msgspec.json.encode(mo_text("hi")))
                for _ in range(10)
            ],
        )
        ids = [d.id for r in results for d in r.deliveries]

        async def states() -> dict[DeliveryState, int]:
            counts: dict[DeliveryState, int] = {}
            for delivery_id in ids:
                state = (await services.deliveries.get(account.id, delivery_id)).state
                counts[state] = counts.get(state, 0) + 1
            return counts

        async def four_leased() -> bool:
            # The store commits the lease before the dispatcher has read the claim's answer:
            # wait for both to say so.
            return (await states()).get(DeliveryState.DELIVERING) == 4 and (
                sum(dispatcher.own_in_flight().values()) == 4
            )

        await wait_until(four_leased)
        await asyncio.sleep(0.1)
        assert most == 2 and len(transport.requests) == 2
        stop.set()
        await running
        # The 2 in flight were cut off by the shutdown timeout and the 2 ready never started:
        # all 4 are pending again, none lost, none delivered twice.
        assert (await states()) == {DeliveryState.PENDING: 10}
    finally:
        stop.set()
        await running
        await storage.close()


def _poisoned_transport() -> MockTransport:
    """Answers 200 to every message, with the body "poison" to the one that says so."""
    return MockTransport(
        lambda request: respond(200, "poison" if b"poison" in request.body else "ok")
    )


@pytest.mark.parametrize("new_storage", ["sqlite"], indirect=True)  # a trigger refuses the row
@pytest.mark.parametrize("rig", [_poisoned_transport], indirect=True)
async def test_a_record_the_store_refuses_holds_up_no_other(rig: Rig, tmp_path: Path) -> None:
    """The database itself refuses one attempt record (a trigger here, as a constraint or an
    encoding would elsewhere): the others batched with it are recorded, and the refused one is
    recorded without the receiver's text instead of the batch being retried forever."""
    import sqlite3

    with sqlite3.connect(tmp_path / "postback.db") as conn:
        conn.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON attempts "
            "WHEN NEW.response_body = 'poison' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    results = await rig.services.messages.submit(
        rig.account.id,
        [
            MessageSubmission(event_type="mo_text", payload=msgspec.json.encode(mo_text(text)))
            for text in ("one", "poison", "three")
        ],
    )
    ids = [r.deliveries[0].id for r in results]

    async def all_delivered() -> bool:
        return all([await rig.delivery_in(d, DeliveryState.DELIVERED) for d in ids])

    await wait_until(all_delivered, 10)
    bodies = []
    for delivery_id in ids:
        [attempt] = await rig.services.deliveries.attempts(
            rig.account.id, delivery_id, after=None, limit=10
        )
        bodies.append((attempt.response_body, attempt.error))
    assert bodies == [
        ("ok", None),
        (None, "the attempt's result could not be stored"),
        ("ok", None),
    ]


async def until(predicate: Callable[[], bool]) -> None:
    async def check() -> bool:
        return predicate()

    await wait_until(check)


class HeldAnswers:
    """An endpoint that holds every request until told how to answer: counts the most
    requests it held at once."""

    def __init__(self) -> None:
        self.holding = 0
        self.most = 0
        self.answer: asyncio.Future[AttemptResult] = asyncio.get_running_loop().create_future()

    async def __call__(self, _request: object) -> AttemptResult:
        self.holding += 1
        self.most = max(self.most, self.holding)
        try:
            return await asyncio.shield(self.answer)
        finally:
            self.holding -= 1


async def sends_at_most(rig: Rig, count: int, most: int) -> HeldAnswers:
    """Submit ``count`` messages to an endpoint that holds every request: exactly ``most``
    start at once, none more after a pause that leaves room for them."""
    held = HeldAnswers()
    rig.transport.handler = held
    await rig.submit_texts(count)
    await until(lambda: held.holding == most)
    await asyncio.sleep(0.2)
    assert held.most == most
    return held


async def test_an_endpoint_that_keeps_timing_out_gets_a_narrow_share_until_it_answers(
    rig: Rig,
) -> None:
    """Each attempt to a hanging endpoint holds a slot for its whole timeout: after three
    timeouts in a row it may hold only ``narrow_share`` (4) at once instead of its share (32),
    and its first answer gives the full share back."""
    settings = rig.dispatcher.settings
    assert (settings.narrow_after_timeouts, settings.narrow_share) == (3, 4)

    rig.transport.handler = lambda _request: fail(FailureKind.TIMEOUT)
    await rig.submit_texts(3)
    await asyncio.wait_for(rig.transport.wait_for_requests(3), 10)

    held = await sends_at_most(rig, 40, 4)
    held.answer.set_result(respond(200))  # it answers: the four finish delivered
    await until(lambda: held.holding == 0 and len(rig.transport.requests) == 3 + 40)

    wide = await sends_at_most(rig, 40, settings.per_endpoint)
    wide.answer.set_result(respond(200))


async def test_narrowing_hands_back_what_waited_ready_beyond_the_narrow_share(rig: Rig) -> None:
    """Deliveries leased ahead at the full share (here 8, behind 32 in flight) would wait in
    memory behind four slots: those past the narrow share are handed back and taken again
    within it. None is sent twice, none is lost, and never more than four are in flight."""
    # The circuit breaker would pause the endpoint at its tenth timeout in a row; this is
    # about the narrow share alone.
    rig.dispatcher.settings = replace(
        rig.dispatcher.settings, breaker=BreakerRules(after_failures=0)
    )
    first = HeldAnswers()
    rig.transport.handler = first
    results = await rig.services.messages.submit(
        rig.account.id,
        [
            MessageSubmission(event_type="mo_text", payload=msgspec.json.encode(mo_text("x")))
            for _ in range(40)
        ],
    )
    await until(lambda: first.holding == 32)  # the other 8 wait ready, leased
    then = HeldAnswers()
    rig.transport.handler = then
    first.answer.set_result(fail(FailureKind.TIMEOUT))  # 32 timeouts: narrowed to 4
    await until(lambda: then.holding == 4)
    await asyncio.sleep(0.2)
    assert then.most == 4
    then.answer.set_result(respond(200))
    await until(lambda: len(rig.transport.requests) == 40)
    await asyncio.sleep(0.2)
    sent = [r.message_id for r in rig.transport.requests]
    assert len(sent) == 40 and sorted(sent) == sorted(r.message_id for r in results)
    delivered = await rig.services.deliveries.page(
        rig.account.id, state=DeliveryState.DELIVERED, limit=100
    )
    assert len(delivered) == 8  # the 32 that timed out wait for their retry


async def test_an_endpoint_that_fails_everything_is_paused_then_probed(rig: Rig) -> None:
    """Retries due at once (a schedule of zeros) are held while the breaker is open: after the
    third failure nothing goes out until the pause ends, then one probe, a pause twice as
    long, and after a probe that succeeds the endpoint is sent to again. Nothing is
    dead-lettered."""
    rig.dispatcher.settings = replace(
        rig.dispatcher.settings,
        breaker=BreakerRules(after_failures=3, cooldown_ms=5_000, max_cooldown_ms=60_000),
    )
    await rig.services.endpoints.update(
        rig.account.id,
        rig.endpoint.id,
        EndpointUpdate(retry_policy=RetryPolicy(schedule_s=(0.0,) * 5)),
    )
    rig.transport.handler = lambda _request: respond(503)
    await rig.submit_texts(10)

    async def sent_exactly(count: int) -> None:
        await asyncio.wait_for(rig.transport.wait_for_requests(count), 10)
        await asyncio.sleep(0.3)  # time for a retry that should not go out
        assert len(rig.transport.requests) == count

    await asyncio.wait_for(rig.transport.wait_for_requests(3), 10)
    await asyncio.sleep(0.3)
    # The third failure opened it: those of the ten already sending finished, the others went
    # back to the store unsent, with their attempt unused.
    first = len(rig.transport.requests)
    assert 3 <= first <= 10
    rig.clock.advance(4.9)
    rig.dispatcher.wake()
    await sent_exactly(first)  # still paused
    rig.clock.advance(0.1)
    rig.dispatcher.wake()
    await sent_exactly(first + 1)  # the probe fails: paused for 10 s now
    rig.clock.advance(9.9)
    rig.dispatcher.wake()
    await sent_exactly(first + 1)
    rig.transport.handler = lambda _request: respond(200)
    rig.clock.advance(0.1)
    rig.dispatcher.wake()
    # The probe succeeds; the next ones follow without the test's clock moving (no pause).
    await asyncio.wait_for(rig.transport.wait_for_requests(first + 3), 10)
    dead = await rig.services.deliveries.page(rig.account.id, state=DeliveryState.DEAD, limit=100)
    assert dead == []
    delivered = await rig.services.deliveries.page(
        rig.account.id, state=DeliveryState.DELIVERED, limit=100
    )
    assert len(delivered) >= 1
    assert all(d.attempt_count <= 3 for d in delivered)


async def test_an_endpoint_update_keeps_what_the_dispatcher_learnt_about_it(rig: Rig) -> None:
    """Changing an endpoint (here its headers) reloads it: its open breaker, failure streak and
    pacing carry over, so new messages to it still wait for the pause to end."""
    rig.dispatcher.settings = replace(
        rig.dispatcher.settings,
        breaker=BreakerRules(after_failures=3, cooldown_ms=5_000, max_cooldown_ms=60_000),
    )
    rig.transport.handler = lambda _request: respond(503)
    await rig.submit_texts(3)
    await asyncio.wait_for(rig.transport.wait_for_requests(3), 10)
    await asyncio.sleep(0.3)
    await rig.services.endpoints.update(
        rig.account.id, rig.endpoint.id, EndpointUpdate(headers={"x-tenant": "7"})
    )
    await rig.submit_texts(5)
    rig.dispatcher.wake()
    await asyncio.sleep(0.5)
    assert len(rig.transport.requests) == 3
    rig.clock.advance(5)
    rig.dispatcher.wake()
    await asyncio.wait_for(rig.transport.wait_for_requests(4), 10)
    assert rig.transport.requests[-1].headers["x-tenant"] == "7"  # the update is in force
    # The probe failed and the streak (one trip already) opened the breaker again: the others,
    # given send slots a second apart, wait for the longer pause. A fresh streak would have
    # let two more through (three failures to open) on the next slots.
    await asyncio.sleep(2.5)
    assert len(rig.transport.requests) == 4


async def test_a_writer_that_falls_behind_holds_back_new_sends(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results waiting to be written past four flushes' worth take the process's capacity:
    with recording stuck, only so many deliveries go out (each unwritten result is a
    duplicate send should the process die); once it writes again, the rest follow."""
    rig.dispatcher.settings = replace(
        rig.dispatcher.settings, record_batch=2, max_in_flight=4, prefetch=0
    )
    unblocked = asyncio.Event()

    class StuckRecords:
        """The rig's storage, its recording held until ``unblocked`` is set. A stand-in
        rather than a patched method: compiled (postback/native.py), the storage's methods
        are read-only."""

        def __getattr__(self, name: str) -> Any:
            return getattr(rig.storage, name)

        async def record(self, records: list[AttemptRecord]) -> None:
            await unblocked.wait()
            await rig.storage.record(records)

    monkeypatch.setattr(rig.dispatcher, "storage", StuckRecords())
    rig.transport.handler = lambda _request: respond(200)
    await rig.submit_texts(40)
    await asyncio.wait_for(rig.transport.wait_for_requests(8), 10)
    await asyncio.sleep(0.5)
    # Four flushes' worth (8) unwritten, plus at most the four slots: never all 40.
    assert len(rig.transport.requests) <= 8 + 4
    unblocked.set()
    await asyncio.wait_for(rig.transport.wait_for_requests(40), 10)

    async def all_delivered() -> bool:
        page = await rig.services.deliveries.page(
            rig.account.id, state=DeliveryState.DELIVERED, limit=100
        )
        return len(page) == 40

    await wait_until(all_delivered, 10)
    assert len({r.message_id for r in rig.transport.requests}) == 40


async def test_beside_another_holder_the_dispatcher_sends_its_part_of_the_share(rig: Rig) -> None:
    """Another process holds some of the endpoint's deliveries: this dispatcher sends at most
    its part of the share, ceil(32 / 2), until a lease says it is alone again; then all 32."""
    now_ms = int(rig.clock() * 1000)
    others = await rig.storage.ingest(
        rig.account.id,
        [
            NewMessage(id=make_id("msg", now_ms, os.urandom(10)), event_type="mo_text", payload=p)
            for p in [msgspec.json.encode(mo_text("theirs"))] * 5
        ],
        now_ms,
        24 * 3600 * 1000,
        lease=LeaseOffer(
            lease_ms=60_000, total=5, share=32, room={rig.endpoint.id: 5}, holder="hold_other"
        ),
    )
    theirs = [c for r in others for c in r.leased]
    assert len(theirs) == 5 and {c.holders for c in theirs} == {1}

    held = await sends_at_most(rig, 40, 16)
    # The other process finishes what it held: this one is alone with the endpoint.
    await rig.storage.record([delivered_record(c.delivery_id, now_ms) for c in theirs])
    held.answer.set_result(respond(200))
    await until(lambda: held.holding == 0 and len(rig.transport.requests) == 40)

    wide = await sends_at_most(rig, 40, 32)
    wide.answer.set_result(respond(200))


async def test_paced_sends_held_back_by_a_stall_leave_spaced_not_in_a_burst(rig: Rig) -> None:
    """An endpoint limited to 20/s gets send times 50 ms apart. When the process stalls past
    several of them (here the event loop is blocked for 0.4 s), the overdue sends still
    leave at least 1/rate apart, later than planned, instead of all at once."""
    await rig.services.endpoints.update(
        rig.account.id, rig.endpoint.id, EndpointUpdate(rate_limit_per_s=20)
    )
    loop = asyncio.get_running_loop()
    sent_at: list[float] = []

    def record(_request: object) -> AttemptResult:
        sent_at.append(loop.time())
        return respond(200)

    rig.transport.handler = record
    await rig.submit_texts(12)
    await until(lambda: len(sent_at) >= 1)
    time.sleep(0.4)  # noqa: ASYNC251 - the stall itself: eight send times pass, loop blocked
    await until(lambda: len(sent_at) == 12)
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent_at)]
    # asyncio's timers may fire a hair early; a burst would show gaps of ~0.
    assert min(gaps) >= 0.045, [round(g, 4) for g in gaps]
    # And the limit costs nothing beyond itself: 11 gaps of 50 ms after the stall's 0.4 s.
    assert sent_at[-1] - sent_at[0] < 0.4 + 11 * 0.05 + 1.0  # slack for a loaded machine


async def test_the_fast_path_offer_covers_the_endpoints_asked_for_or_the_accounts(
    rig: Rig,
) -> None:
    """``lease_offer(endpoints)`` works out room for those loaded endpoints alone (an ingest
    whose messages all name their callback URL); else for the account's loaded endpoints
    (an ingest is for one account); else for every loaded endpoint."""
    other, _ = await rig.services.endpoints.create(
        rig.account.id, EndpointCreate(url="https://hooks.example.com/other")
    )
    await rig.submit_texts(1)  # both endpoints subscribe to everything: both get loaded
    await until(lambda: len(rig.transport.requests) == 2)
    everything = rig.dispatcher.lease_offer()
    assert everything is not None and set(everything.room) == {rig.endpoint.id, other.id}
    asked = rig.dispatcher.lease_offer({other.id, "ep_not_loaded_here"})
    assert asked is not None and set(asked.room) == {other.id}
    assert asked.room[other.id] == everything.room[other.id] > 0
    assert asked.prefetch == {other.id: everything.prefetch[other.id]}
    ours = rig.dispatcher.lease_offer(account_id=rig.account.id)
    assert ours is not None and ours.room == everything.room
    theirs = rig.dispatcher.lease_offer(account_id="acc_someone_else")
    assert theirs is not None and theirs.room == {} and theirs.total == everything.total
