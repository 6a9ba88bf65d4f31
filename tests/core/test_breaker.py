"""The circuit breaker per endpoint: when it opens, for how long, what closes it."""

from __future__ import annotations

from postback.core.breaker import CLOSED, BreakerRules, Streak, after_attempt
from postback.core.outcome import Outcome
from postback.core.throttle import MIN_RATE_PER_S, Pacing, broken, recovered, reserve

RULES = BreakerRules(after_failures=3, cooldown_ms=5_000, max_cooldown_ms=60_000)


def fail(streak: Streak, started_ms: int, now_ms: int) -> tuple[Streak, int | None]:
    return after_attempt(streak, Outcome.RETRY, started_ms, now_ms, RULES)


def test_it_opens_after_the_failures_in_a_row_and_doubles_on_each_failed_probe() -> None:
    streak, pause = fail(CLOSED, 0, 10)
    assert pause is None
    streak, pause = after_attempt(streak, Outcome.EXHAUSTED, 10, 20, RULES)
    assert pause is None
    streak, pause = fail(streak, 20, 30)
    assert pause == 5_000 and streak.opened_at_ms == 30
    # Each probe after a pause that fails opens it again, for twice as long, up to the cap.
    pauses = []
    now = 30
    for _ in range(6):
        now += 10_000
        streak, pause = fail(streak, now, now + 5)
        pauses.append(pause)
    assert pauses == [10_000, 20_000, 40_000, 60_000, 60_000, 60_000]


def test_attempts_in_flight_when_it_opened_do_not_open_it_again() -> None:
    streak = CLOSED
    for t in range(3):
        streak, pause = fail(streak, 0, 100 + t)
    assert pause == 5_000 and streak.trips == 1
    # 29 more of the same burst come back failed after it opened: ignored.
    for t in range(29):
        streak, pause = fail(streak, 0, 103 + t)
        assert pause is None
    assert streak.trips == 1
    # The first attempt started after it opened (the probe) decides.
    streak, pause = fail(streak, 5_200, 5_210)
    assert pause == 10_000 and streak.trips == 2


def test_a_success_closes_it_and_an_answer_that_is_no_failure_changes_nothing() -> None:
    streak = CLOSED
    for t in range(2):
        streak, _ = fail(streak, t, t)
    for neutral in (Outcome.THROTTLED, Outcome.PERMANENT):
        assert after_attempt(streak, neutral, 5, 5, RULES) == (streak, None)
    streak, pause = after_attempt(streak, Outcome.DELIVERED, 6, 6, RULES)
    assert streak is CLOSED and pause is None
    # The count starts again from zero: two more failures do not open it.
    for t in range(2):
        streak, pause = fail(streak, 10 + t, 10 + t)
        assert pause is None
    assert after_attempt(streak, Outcome.ABORTED, 20, 20, RULES)[0] is CLOSED


def test_zero_failures_turns_it_off() -> None:
    off = BreakerRules(after_failures=0)
    streak = CLOSED
    for t in range(1_000):
        streak, pause = after_attempt(streak, Outcome.RETRY, t, t, off)
        assert pause is None
    assert streak is CLOSED


def test_an_open_breaker_pauses_then_probes_at_one_a_second_then_climbs_back() -> None:
    pacing = broken(Pacing(), 1_000, 5_000, observed_rate=800, configured_rate=None)
    assert pacing.paused_until_ms == 6_000 and pacing.is_paced(None, 1_000)
    assert pacing.current_rate == MIN_RATE_PER_S and pacing.ceiling == 800
    _, slots = reserve(pacing, 2_000, 2, configured_rate=None)
    assert slots == [6_000, 7_000]  # nothing before the pause ends, then one a second
    # The probe succeeds at 6 s: the climb to the rate it had starts at once, 10 % a second.
    rates = []
    now = 6_000
    while pacing.ceiling is not None:
        pacing = recovered(pacing, now, None)
        rates.append(pacing.current_rate)
        now += 1_000
    assert rates[:3] == [81, 161, 241] and rates[-1] is None
    assert len(rates) == 10


def test_an_open_breaker_keeps_a_configured_rate_below_one_a_second() -> None:
    pacing = broken(Pacing(), 0, 5_000, observed_rate=0, configured_rate=0.5)
    assert pacing.current_rate == 0.5


def test_an_attempt_started_in_the_millisecond_it_opened_is_part_of_the_burst() -> None:
    streak = CLOSED
    for _ in range(3):
        streak, pause = fail(streak, 700, 700)
    assert pause == 5_000
    assert fail(streak, 700, 701) == (streak, None)
