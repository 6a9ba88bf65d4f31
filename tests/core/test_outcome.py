"""Outcome classification for every status class, and the delivery state machine."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from postback.core.lifecycle import settle
from postback.core.model import DeliveryState
from postback.core.outcome import (
    AttemptResult,
    FailureKind,
    Outcome,
    decide,
    parse_retry_after,
    status_class,
)
from postback.core.policy import PRESETS, RetryPolicy

SINCH = PRESETS["sinch"]
NOTIFY = PRESETS["notify"]
VIBES = PRESETS["vibes"]


def http(code: int, retry_after: float | None = None) -> AttemptResult:
    return AttemptResult(status_code=code, retry_after_s=retry_after)


TIMEOUT = AttemptResult(status_code=None, failure=FailureKind.TIMEOUT, error="no response")
REFUSED = AttemptResult(status_code=None, failure=FailureKind.NETWORK, error="refused")


P, R, T, D = Outcome.PERMANENT, Outcome.RETRY, Outcome.THROTTLED, Outcome.DELIVERED


@pytest.mark.parametrize(
    ("result", "sinch", "notify", "vibes"),
    [
        (http(200), D, D, D),
        (http(204), D, D, D),
        (http(299), D, D, D),
        # Notify's sender retries "connection errors, timeouts, 5xx and 429" only; Vibes
        # retries "anything other than 2XX".
        (http(301), P, P, R),
        (http(302), P, P, R),
        (http(400), P, P, R),
        (http(401), P, P, R),
        (http(404), P, P, R),
        (http(408), P, P, R),
        (http(410), P, P, R),
        (http(429), T, T, T),
        (http(500), R, R, R),
        (http(502), R, R, R),
        (http(503), R, R, R),
        (TIMEOUT, R, R, R),
        (REFUSED, R, R, R),
    ],
)
def test_outcome_table(
    result: AttemptResult, sinch: Outcome, notify: Outcome, vibes: Outcome
) -> None:
    assert decide(result, SINCH, 1).outcome is sinch
    assert decide(result, NOTIFY, 1).outcome is notify
    assert decide(result, VIBES, 1).outcome is vibes


@pytest.mark.parametrize("result", [http(500), http(429), TIMEOUT, REFUSED])
def test_the_last_attempt_of_an_exhausted_delivery_says_so(result: AttemptResult) -> None:
    # Retries 1..5 are followed by another try; the sixth failure has none left.
    assert decide(result, NOTIFY, 5).outcome in (Outcome.RETRY, Outcome.THROTTLED)
    last = settle(result, NOTIFY, 6, 0)
    assert last.outcome is Outcome.EXHAUSTED and last.state is DeliveryState.DEAD


def test_status_classes() -> None:
    assert status_class(http(200)) is None
    assert status_class(http(301)) == "3xx"
    assert status_class(http(418)) == "4xx"
    assert status_class(http(429)) == "429"
    assert status_class(http(599)) == "5xx"
    assert status_class(TIMEOUT) == "timeout"
    assert status_class(REFUSED) == "network"


def test_blocked_destination_is_permanent_under_any_policy() -> None:
    blocked = AttemptResult(status_code=None, failure=FailureKind.BLOCKED, error="loopback")
    for policy in (SINCH, NOTIFY):
        decision = decide(blocked, policy, 1)
        assert decision.outcome is Outcome.PERMANENT
        assert decision.dead_reason == "blocked destination: loopback"


def test_retry_after_longer_than_schedule_wins_shorter_does_not() -> None:
    assert decide(http(429, retry_after=60), SINCH, 1).next_delay_s == 60
    assert decide(http(429, retry_after=1), SINCH, 1).next_delay_s == 5
    assert decide(http(429), SINCH, 3).next_delay_s == 10


def test_permanent_and_exhausted_reasons() -> None:
    assert decide(http(404), SINCH, 1).dead_reason == "permanent failure: HTTP 404"
    exhausted = decide(http(500), SINCH, 16)
    assert exhausted.next_delay_s is None
    assert exhausted.dead_reason == "retries exhausted after 16 attempts: HTTP 500"
    assert decide(TIMEOUT, RetryPolicy(schedule_s=()), 1).dead_reason == (
        "retries exhausted after 1 attempts: timeout: no response"
    )


def test_parse_retry_after() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120
    when = format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True)
    assert parse_retry_after(when, now) == pytest.approx(90, abs=1)
    past = format_datetime(datetime.fromtimestamp(now - 90, UTC), usegmt=True)
    assert parse_retry_after(past, now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("99999999", now) == 86_400


def test_a_whole_sinch_run_without_sleeping() -> None:
    """22 h 45 min of retries, walked with time as a number."""
    now = 0
    attempt = 1
    times = []
    while True:
        settlement = settle(http(503), SINCH, attempt, now)
        if settlement.state is DeliveryState.DEAD:
            break
        assert settlement.state is DeliveryState.PENDING
        assert settlement.next_attempt_at is not None
        times.append(settlement.next_attempt_at - now)
        now = settlement.next_attempt_at
        attempt += 1
    assert attempt == 16  # the first try plus 15 retries
    assert times[0] == 5_000 and times[-1] == 40_960_000
    assert sum(times) == 81_920_000  # the last retry 22 h 45 min after the first failure
    assert settlement.dead_reason == "retries exhausted after 16 attempts: HTTP 503"


def test_settle_delivered_and_permanent() -> None:
    ok = settle(http(204), SINCH, 1, 1000)
    assert (ok.state, ok.next_attempt_at, ok.outcome) == (
        DeliveryState.DELIVERED,
        None,
        Outcome.DELIVERED,
    )
    gone = settle(http(410), SINCH, 1, 1000)
    assert gone.state is DeliveryState.DEAD and gone.outcome is Outcome.PERMANENT


def test_an_attempt_records_exactly_the_outcomes() -> None:
    from typing import get_args

    from postback.core.model import AttemptOutcome

    assert set(get_args(AttemptOutcome)) == {o.value for o in Outcome}
