"""Pacing: exact GCRA slots for a configured rate, AIMD backoff on 429, time as a number."""

from __future__ import annotations

from postback.core.throttle import Pacing, SendRateMeter, recovered, reserve, throttled


def test_configured_rate_spaces_slots_exactly() -> None:
    pacing, slots = reserve(Pacing(), 10_000, 5, configured_rate=50)
    assert slots == [10_000, 10_020, 10_040, 10_060, 10_080]
    pacing, more = reserve(pacing, 10_000, 2, configured_rate=50)
    assert more == [10_100, 10_120]  # a second reservation continues where the first ended
    _, later = reserve(pacing, 20_000, 1, configured_rate=50)
    assert later == [20_000]  # idle time does not bank a burst


def test_unlimited_endpoint_sends_at_once() -> None:
    pacing, slots = reserve(Pacing(), 5_000, 3, configured_rate=None)
    assert slots == [5_000, 5_000, 5_000] and pacing == Pacing()
    assert not Pacing().is_paced(None, 5_000)


def test_429_halves_the_rate_and_pauses_for_retry_after() -> None:
    pacing = throttled(Pacing(), 1_000, retry_after_s=2.0, observed_rate=0, configured_rate=40)
    assert pacing.current_rate == 20 and pacing.ceiling == 40
    assert pacing.paused_until_ms == 3_000
    _, slots = reserve(pacing, 1_500, 2, configured_rate=40)
    assert slots == [3_000, 3_050]  # nothing before the pause ends, then at the halved rate
    again = throttled(pacing, 1_600, retry_after_s=None, observed_rate=0, configured_rate=40)
    assert again.current_rate == 10 and again.ceiling == 40


def test_429_on_an_unlimited_endpoint_uses_the_observed_rate() -> None:
    pacing = throttled(Pacing(), 0, retry_after_s=None, observed_rate=300, configured_rate=None)
    assert pacing.current_rate == 150 and pacing.ceiling == 300
    assert pacing.is_paced(None, 0)


def test_recovery_is_gradual_and_returns_to_normal() -> None:
    pacing = throttled(Pacing(), 0, retry_after_s=None, observed_rate=0, configured_rate=100)
    assert recovered(pacing, 500, 100) == pacing  # at most one step a second
    rates = []
    now = 0
    while pacing.ceiling is not None:
        now += 1_000
        pacing = recovered(pacing, now, 100)
        rates.append(pacing.current_rate)
    assert rates[:3] == [60, 70, 80]  # +10% of the ceiling per second
    assert pacing.current_rate is None and pacing.rate(100) == 100
    assert now == 5_000


def test_send_rate_meter() -> None:
    meter = SendRateMeter()
    for i in range(100):
        meter.sent(i * 10)  # 100 sends over one second
    meter.sent(1_000)
    assert 95 <= meter.rate(1_000) <= 105


def test_send_rate_meter_sees_a_burst_sooner_over_a_shorter_span() -> None:
    meter = SendRateMeter()
    for i in range(400):
        meter.sent(i // 4)  # 4,000 a second, for the first 100 ms of a window
    assert meter.rate(100) <= 405  # over a whole second: a tenth of the pace
    assert 3_900 <= meter.rate(100, least_ms=100) <= 4_100
