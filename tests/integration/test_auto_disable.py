"""Auto-disable over a simulated week, on SQLite and PostgreSQL: the dispatcher's health keeper
with the real storage and operational webhooks, and time passed in (nothing sleeps)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postback.core.health import DAY_MS, HealthRules
from postback.core.lifecycle import Settlement
from postback.core.model import ClaimedDelivery, DeliveryState
from postback.core.outcome import AttemptResult, Outcome
from postback.core.wire import EndpointCreate
from postback.dispatch.health import HealthKeeper
from postback.ingest import Services
from postback.ingest.operations import OPERATIONS_ACCOUNT_ID
from postback.observe.metrics import Metrics
from postback.store import open_storage
from postback.store.base import Storage
from tests.support.payloads import ANY_OBJECT
from tests.support.postgres import fresh_schema
from tests.support.processes import TEST_ALLOWED, TEST_SEALER

HOUR_MS = 3_600_000


@pytest.fixture(params=["sqlite", "postgres"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "sqlite":
        store = open_storage(f"sqlite:///{tmp_path / 'week.db'}", TEST_SEALER)
        await store.open()
        yield store
        await store.close()
        return
    async with fresh_schema() as url:
        store = open_storage(url, TEST_SEALER)
        await store.open()
        yield store
        await store.close()


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def failed_attempt(endpoint_id: str, account_id: str, n: int) -> ClaimedDelivery:
    return ClaimedDelivery(
        delivery_id=f"dlv_{n}",
        message_id=f"msg_{n}",
        account_id=account_id,
        endpoint_id=endpoint_id,
        endpoint_updated_at=0,
        attempt_count=0,
        schedule_base=0,
        event_type="t",
        payload=b"{}",
        message_created_at=0,
    )


START = 1_800_000_000_000


def services_at(storage: Storage, start: int) -> tuple[Clock, Services]:
    """Services on ``storage`` whose clock stands at ``start`` (ms) until a test moves it."""
    clock = Clock(start)
    return clock, Services.build(storage, clock=clock, allowed_networks=TEST_ALLOWED)


RETRY = Settlement(
    outcome=Outcome.RETRY, state=DeliveryState.PENDING, next_attempt_at=0, dead_reason=None
)


async def test_a_week_of_failures_disables_after_five_days_and_operators_hear_once(
    storage: Storage,
) -> None:
    start = START
    clock, services = services_at(storage, start)
    await services.operations.register("http://127.0.0.1:9/ops", None)
    account, _ = await services.accounts.create("week")
    await services.event_types.create(account.id, "t", ANY_OBJECT)
    hasty, _ = await services.accounts.create("hasty")
    assert await services.accounts.set_disable_after(hasty.id, 86_400)  # one day
    slow, _ = await services.endpoints.create(
        account.id, EndpointCreate(url="http://127.0.0.1:9/slow")
    )
    quick, _ = await services.endpoints.create(
        hasty.id, EndpointCreate(url="http://127.0.0.1:9/quick")
    )
    metrics = Metrics()
    keeper = HealthKeeper(
        storage,
        metrics,
        rules=HealthRules(),  # 5 days, "failing" after 5 attempts
        announce=services.operations.announce_many,
        clock=clock,
    )
    disabled_at: dict[str, int] = {}
    for hour in range(7 * 24):
        clock.ms = start + hour * HOUR_MS
        for endpoint, acct in ((slow, account), (quick, hasty)):
            keeper.observe(
                failed_attempt(endpoint.id, acct.id, hour),
                RETRY,
                AttemptResult(status_code=503, duration_ms=40.0),
                clock.ms,
            )
        await keeper.flush()
        for endpoint, acct in ((slow, account), (quick, hasty)):
            stored = await storage.get_endpoint(acct.id, endpoint.id)
            assert stored is not None
            if stored.disabled and endpoint.id not in disabled_at:
                disabled_at[endpoint.id] = clock.ms
    assert disabled_at == {slow.id: start + 5 * DAY_MS, quick.id: start + DAY_MS}
    health = (await storage.health_states([slow.id]))[slow.id]
    assert health.disabled_reason is not None and "120 h" in health.disabled_reason
    assert health.failing_since == start

    # The operators' account got one failing and one disabled event per endpoint.
    announced = []
    for delivery in await storage.list_deliveries(OPERATIONS_ACCOUNT_ID, limit=100):
        message = await storage.get_message(OPERATIONS_ACCOUNT_ID, delivery.message_id)
        assert message is not None
        announced.append(json.loads(message.payload))
    kinds = sorted((e["type"], e["data"]["endpoint_id"]) for e in announced)
    assert kinds == sorted(
        [
            ("endpoint.failing", slow.id),
            ("endpoint.failing", quick.id),
            ("endpoint.disabled", slow.id),
            ("endpoint.disabled", quick.id),
        ]
    )
    text = metrics.render()[0].decode()
    assert 'postback_endpoint_state_changes_total{change="disabled"} 2.0' in text

    # Re-enabled: a fresh streak, so the next failure does not disable it again at once.
    endpoint, _ = await services.health.enable(account.id, slow.id)
    assert not endpoint.disabled
    clock.ms += HOUR_MS
    keeper.observe(
        failed_attempt(slow.id, account.id, 999), RETRY, AttemptResult(status_code=503), clock.ms
    )
    await keeper.flush()
    stored = await storage.get_endpoint(account.id, slow.id)
    assert stored is not None and not stored.disabled
    report = await services.health.report(account.id, slow.id)
    assert report.health.failing_since == clock.ms and report.health.consecutive_failures == 1


async def test_successes_alone_are_written_once_a_second_and_a_failure_or_recovery_at_once(
    storage: Storage,
) -> None:
    clock, services = services_at(storage, START)
    account, _ = await services.accounts.create("steady")
    await services.event_types.create(account.id, "t", ANY_OBJECT)
    endpoint, _ = await services.endpoints.create(
        account.id, EndpointCreate(url="http://127.0.0.1:9/steady")
    )
    keeper = HealthKeeper(storage, Metrics(), clock=clock)
    delivered = Settlement(
        outcome=Outcome.DELIVERED,
        state=DeliveryState.DELIVERED,
        next_attempt_at=0,
        dead_reason=None,
    )

    async def stored_successes() -> int:
        states = await storage.health_states([endpoint.id])
        return states[endpoint.id].successes if endpoint.id in states else 0

    def attempt(n: int, settlement: Settlement, status: int) -> None:
        keeper.observe(
            failed_attempt(endpoint.id, account.id, n),
            settlement,
            AttemptResult(status_code=status, duration_ms=5.0),
            clock.ms,
        )

    attempt(1, delivered, 200)
    assert await keeper.flush() is None  # the first write is not held back
    assert await stored_successes() == 1
    clock.ms += 200
    attempt(2, delivered, 200)
    later = await keeper.flush()
    assert later is not None and 0.79 < later <= 0.8  # a second after the last write
    assert await stored_successes() == 1
    clock.ms += 800
    assert await keeper.flush() is None
    assert await stored_successes() == 2

    clock.ms += 100
    attempt(3, RETRY, 503)  # a failure is written at once
    assert await keeper.flush() is None
    health = (await storage.health_states([endpoint.id]))[endpoint.id]
    assert health.consecutive_failures == 1
    clock.ms += 100
    attempt(4, delivered, 200)  # and so is the recovery of an endpoint last seen failing
    assert await keeper.flush() is None
    health = (await storage.health_states([endpoint.id]))[endpoint.id]
    assert health.consecutive_failures == 0 and health.successes == 3

    # A failing customer's failures do not bring the others' successes forward.
    other, _ = await services.endpoints.create(
        account.id, EndpointCreate(url="http://127.0.0.1:9/other")
    )
    clock.ms += 100
    attempt(5, delivered, 200)
    keeper.observe(
        failed_attempt(other.id, account.id, 6),
        RETRY,
        AttemptResult(status_code=503, duration_ms=5.0),
        clock.ms,
    )
    assert await keeper.flush() is not None
    states = await storage.health_states([endpoint.id, other.id])
    assert states[other.id].consecutive_failures == 1 and states[endpoint.id].successes == 3
    assert await keeper.flush(force=True) is None  # shutdown writes what is held back
    assert await stored_successes() == 4
