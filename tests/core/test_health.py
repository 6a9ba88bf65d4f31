"""Endpoint health and auto-disable rules, with time passed in (a week simulated, not slept)."""

from __future__ import annotations

import msgspec
import pytest

from postback.core.health import (
    DAY_MS,
    WINDOW_MS,
    Change,
    Control,
    HealthDelta,
    HealthRules,
    HealthState,
    decide,
    fresh_streak,
    immediate_disable_reason,
    parse_control,
)
from postback.core.lifecycle import settle
from postback.core.model import DeliveryState
from postback.core.outcome import AttemptResult, Outcome
from postback.core.policy import RetryPolicy, resolve_policy

T0 = 1_700_000_000_000
HOUR = 3_600_000


def one(
    *, ok: bool, at: int, dead: bool = False, ms: float = 20.0, reason: str | None = None
) -> HealthDelta:
    delta = HealthDelta()
    delta.observe(succeeded=ok, dead=dead, at_ms=at, duration_ms=ms, disable_reason=reason)
    return delta


def run(
    health: HealthState, deltas: list[tuple[int, HealthDelta]], rules: HealthRules
) -> tuple[HealthState, list[tuple[int, Change]]]:
    seen: list[tuple[int, Change]] = []
    for at, delta in deltas:
        health, changes, _reason = decide(health, delta, rules, at)
        seen += [(at, c) for c in changes]
    return health, seen


def test_a_week_of_hourly_failures_disables_after_exactly_five_days() -> None:
    rules = HealthRules()  # 5 days, failing after 5
    hours = [(T0 + h * HOUR, one(ok=False, at=T0 + h * HOUR)) for h in range(7 * 24)]
    health, seen = run(HealthState(endpoint_id="ep"), hours, rules)
    assert seen[0] == (T0 + 4 * HOUR, Change.FAILING)  # the 5th consecutive failure
    disabled = [at for at, c in seen if c is Change.DISABLED]
    assert disabled == [T0 + 5 * DAY_MS]  # once, at the first attempt 5 days into the streak
    assert health.disabled_at == T0 + 5 * DAY_MS
    assert health.disabled_reason is not None and "120 h" in health.disabled_reason
    assert health.failing_since == T0
    assert health.consecutive_failures == 7 * 24


def test_one_success_a_day_keeps_an_endpoint_enabled_all_week() -> None:
    deltas = []
    for h in range(7 * 24):
        at = T0 + h * HOUR
        deltas.append((at, one(ok=h % 24 == 23, at=at)))
    health, seen = run(HealthState(endpoint_id="ep"), deltas, HealthRules())
    assert Change.DISABLED not in [c for _, c in seen]
    # failing announced each day, recovered each day
    assert [c for _, c in seen].count(Change.FAILING) == 7
    assert [c for _, c in seen].count(Change.RECOVERED) == 7
    assert health.consecutive_failures == 0 and health.failing_since is None


def test_a_shorter_account_period_and_zero_meaning_never() -> None:
    hours = [(T0 + h * HOUR, one(ok=False, at=T0 + h * HOUR)) for h in range(49)]
    _, seen = run(HealthState(endpoint_id="ep"), hours, HealthRules(disable_after_ms=DAY_MS))
    assert [at for at, c in seen if c is Change.DISABLED] == [T0 + DAY_MS]
    _, seen = run(HealthState(endpoint_id="ep"), hours, HealthRules(disable_after_ms=0))
    assert Change.DISABLED not in [c for _, c in seen]


def test_consecutive_dead_deliveries_disable_when_configured() -> None:
    rules = HealthRules(dead_limit=3, disable_after_ms=0)
    deltas = [(T0 + i, one(ok=False, dead=True, at=T0 + i)) for i in range(3)]
    health, seen = run(HealthState(endpoint_id="ep"), deltas, rules)
    assert seen[-1] == (T0 + 2, Change.DISABLED)
    assert health.disabled_reason == "3 consecutive dead deliveries"
    # a delivered one in between resets the count
    deltas = [
        (T0, one(ok=False, dead=True, at=T0)),
        (T0 + 1, one(ok=False, dead=True, at=T0 + 1)),
        (T0 + 2, one(ok=True, at=T0 + 2)),
        (T0 + 3, one(ok=False, dead=True, at=T0 + 3)),
    ]
    _, seen = run(HealthState(endpoint_id="ep"), deltas, rules)
    assert Change.DISABLED not in [c for _, c in seen]


def test_410_and_the_disable_header_disable_at_once() -> None:
    assert immediate_disable_reason(410, None) == "the receiver answered 410 Gone"
    assert "webhook-delivery: disable" in (immediate_disable_reason(200, Control.DISABLE) or "")
    assert immediate_disable_reason(404, None) is None
    assert immediate_disable_reason(500, Control.ABORT_MESSAGE) is None
    delta = one(ok=False, at=T0, reason=immediate_disable_reason(410, None))
    health, changes, reason = decide(HealthState(endpoint_id="ep"), delta, HealthRules(), T0)
    assert changes == [Change.DISABLED] and reason == "the receiver answered 410 Gone"
    # already disabled: not decided a second time (another worker's flush)
    _, changes, reason = decide(health, delta, HealthRules(), T0 + 1)
    assert Change.DISABLED not in changes and reason is None


def test_the_control_header_is_parsed_strictly() -> None:
    assert parse_control("disable") is Control.DISABLE
    assert parse_control(" Abort-Message ") is Control.ABORT_MESSAGE
    assert parse_control("stop") is None and parse_control(None) is None


def test_abort_message_ends_the_delivery_as_aborted_not_dead() -> None:
    policy = resolve_policy(RetryPolicy(preset="sinch"))
    aborted = settle(AttemptResult(status_code=500, control="abort-message"), policy, 1, T0)
    assert aborted.outcome is Outcome.ABORTED and aborted.state is DeliveryState.ABORTED
    assert aborted.dead_reason is None and aborted.next_attempt_at is None
    # a 2xx with the header was delivered: there is nothing to abort
    done = settle(AttemptResult(status_code=200, control="abort-message"), policy, 1, T0)
    assert done.state is DeliveryState.DELIVERED
    # without it, the same 500 is retried
    retried = settle(AttemptResult(status_code=500), policy, 1, T0)
    assert retried.state is DeliveryState.PENDING


def test_a_fresh_streak_after_re_enable() -> None:
    hours = [(T0 + h * HOUR, one(ok=False, at=T0 + h * HOUR)) for h in range(6 * 24)]
    health, _ = run(HealthState(endpoint_id="ep"), hours, HealthRules())
    assert health.disabled_at is not None
    later = T0 + 6 * DAY_MS
    health = fresh_streak(health, later)
    assert health.failing_since is None and health.disabled_at is None
    # the next failure starts a new 5-day clock instead of disabling at once
    health, changes, _ = decide(health, one(ok=False, at=later), HealthRules(), later)
    assert Change.DISABLED not in changes and health.failing_since == later


def test_merging_a_batch_keeps_only_what_followed_its_last_success() -> None:
    delta = HealthDelta()
    for at, ok in ((1, False), (2, False), (3, True), (4, False), (5, False)):
        delta.observe(succeeded=ok, dead=False, at_ms=T0 + at, duration_ms=10)
    start = HealthState(endpoint_id="ep", consecutive_failures=9, failing_since=T0 - 5)
    health, _, _ = decide(start, delta, HealthRules(), T0 + 6)
    assert health.consecutive_failures == 2 and health.failing_since == T0 + 4
    assert health.last_success_at == T0 + 3 and health.last_failure_at == T0 + 5
    assert health.recent(T0 + 6) == (1, 4)


def test_recent_counts_roll_over_and_latency_percentiles() -> None:
    delta = HealthDelta()
    for ms in [30] * 50 + [400] * 40 + [20_000] * 10:
        delta.observe(succeeded=True, dead=False, at_ms=T0, duration_ms=ms)
    health, _, _ = decide(HealthState(endpoint_id="ep"), delta, HealthRules(), T0)
    assert health.latency_percentile_ms(0.5, T0) == 50
    assert health.latency_percentile_ms(0.9, T0) == 500
    assert health.latency_percentile_ms(0.99, T0) == 30_000
    assert health.recent(T0 + WINDOW_MS) == (100, 0)  # previous bucket still counts
    assert health.recent(T0 + 2 * WINDOW_MS) == (0, 0)  # two buckets later: gone
    assert health.latency_percentile_ms(0.5, T0 + 3 * WINDOW_MS) is None


@pytest.mark.parametrize("code", [410])
def test_gone_is_a_permanent_failure(code: int) -> None:
    result = settle(
        AttemptResult(status_code=code), resolve_policy(RetryPolicy(preset="sinch")), 1, T0
    )
    assert result.state is DeliveryState.DEAD


def test_health_is_a_plain_record() -> None:
    health = HealthState(endpoint_id="ep", consecutive_failures=2)
    assert msgspec.json.decode(msgspec.json.encode(health), type=HealthState) == health
