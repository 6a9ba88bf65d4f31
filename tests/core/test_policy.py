"""Retry schedules for every preset and the custom forms, with time as a number."""

from __future__ import annotations

import math

import pytest

from postback.core.policy import (
    ALL_STATUS_CLASSES,
    PRESETS,
    PolicyError,
    RetryPolicy,
    resolve_policy,
    validate_policy,
)


def test_sinch_retries_at_5s_doubling_to_81920s_after_the_first_failure() -> None:
    schedule = PRESETS["sinch"].schedule()
    # Seed: "The first initial retry will happen 5 seconds after the first try. The next
    # attempt is after 10 seconds, then after 20 seconds ... The last retry will be at 81920
    # seconds (or 22 hours 45 minutes) after the initial failed attempt."
    retry_times = [sum(schedule[: i + 1]) for i in range(len(schedule))]
    assert retry_times == [5 * 2**k for k in range(15)]
    assert retry_times[-1] == 81920 == 22 * 3600 + 45 * 60 + 20
    assert schedule[:4] == [5, 5, 10, 20] and schedule[-1] == 40960
    assert PRESETS["sinch"].retry_count == 15


@pytest.mark.parametrize("name", ["notify", "vibes"])
def test_notify_and_vibes_retry_every_five_minutes_five_times(name: str) -> None:
    assert PRESETS[name].schedule() == [300.0] * 5


def test_vibes_retries_every_failure_notify_only_transient_ones() -> None:
    assert all(PRESETS["vibes"].retries(c) for c in ALL_STATUS_CLASSES)
    # Notify's sender: "connection errors, timeouts, 5xx and 429"; 3xx and 4xx are final.
    retried = [c for c in ALL_STATUS_CLASSES if PRESETS["notify"].retries(c)]
    assert sorted(retried) == sorted(["network", "timeout", "5xx", "429"])


def test_vibes_has_a_two_second_timeout_notify_five() -> None:
    assert PRESETS["vibes"].timeout_ms == 2000
    assert PRESETS["notify"].timeout_ms == 5000


@pytest.mark.parametrize(
    ("status_class", "retried"),
    [
        ("5xx", True),
        ("429", True),
        ("timeout", True),
        ("network", True),
        ("4xx", False),
        ("3xx", False),
    ],
)
def test_sinch_retries_only_transient_failures(status_class: str, retried: bool) -> None:
    assert PRESETS["sinch"].retries(status_class) is retried  # type: ignore[arg-type]


def test_exhausted_after_the_last_retry() -> None:
    policy = PRESETS["sinch"]
    assert policy.delay_after(15) == 40960
    assert policy.delay_after(16) is None
    with pytest.raises(ValueError):
        policy.delay_after(0)


def test_custom_explicit_schedule() -> None:
    policy = validate_policy(RetryPolicy(schedule_s=(1, 30, 300)))
    assert policy.schedule() == [1, 30, 300]
    assert policy.delay_after(4) is None


def test_custom_exponential_with_cap_and_jitter() -> None:
    policy = validate_policy(
        RetryPolicy(initial_s=2, factor=3, max_retries=5, max_delay_s=50, jitter=0.1)
    )
    assert [policy.delay_after(n) for n in range(1, 6)] == pytest.approx(
        [2, 6, 18, 50, 50], rel=0.11
    )
    # random_unit 0 and ~1 are the jitter's bounds: -10% and +10%.
    assert policy.delay_after(1, random_unit=0.0) == pytest.approx(1.8)
    assert policy.delay_after(1, random_unit=0.999) == pytest.approx(2.2, rel=1e-3)
    assert policy.schedule() == [2, 6, 18, 50, 50]


def test_retry_statuses_override_and_preset_narrowing() -> None:
    custom = validate_policy(RetryPolicy(schedule_s=(1,), retry_statuses=("5xx", "4xx")))
    assert custom.retries("4xx") and not custom.retries("timeout")
    narrowed = resolve_policy(RetryPolicy(preset="notify", retry_statuses=("5xx",)))
    assert narrowed.schedule() == [300.0] * 5 and not narrowed.retries("4xx")
    assert resolve_policy(None) is PRESETS["sinch"]
    assert resolve_policy(RetryPolicy(preset="vibes")) is PRESETS["vibes"]


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (RetryPolicy(preset="sms"), "retry_policy.preset"),
        (RetryPolicy(preset="sinch", schedule_s=(1,)), "retry_policy"),
        (RetryPolicy(schedule_s=(1, -2)), "retry_policy.schedule_s[1]"),
        (RetryPolicy(schedule_s=(math.nan,)), "retry_policy.schedule_s[0]"),
        (RetryPolicy(schedule_s=(1,), initial_s=1), "retry_policy"),
        (RetryPolicy(initial_s=1, factor=0.5, max_retries=3), "retry_policy.factor"),
        (RetryPolicy(initial_s=1, max_retries=101), "retry_policy.max_retries"),
        (RetryPolicy(initial_s=1), "retry_policy.max_retries"),
        (RetryPolicy(initial_s=math.inf, max_retries=1), "retry_policy.initial_s"),
        (RetryPolicy(schedule_s=(1,), jitter=2), "retry_policy.jitter"),
        (RetryPolicy(schedule_s=(1,) * 101), "retry_policy.schedule_s"),
    ],
)
def test_invalid_policies_name_the_field(policy: RetryPolicy, field: str) -> None:
    with pytest.raises(PolicyError) as error:
        validate_policy(policy)
    assert str(error.value).startswith(field)
