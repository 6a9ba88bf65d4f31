"""Per-endpoint send pacing: a configured rate limit plus AIMD backoff on 429.

Sinch: "For 429 the callback will be retried and the throughput will be lowered." We lower it
multiplicatively (halve the rate we were sending at), honour Retry-After by pausing the
endpoint, and recover additively on success, the way TCP congestion control does, so a
briefly overloaded receiver is not hammered and a healthy one is back to full speed in seconds.

The state is a frozen ``Pacing`` value and every rule is a pure function of it and the time
passed in. Storage keeps one ``Pacing`` per endpoint and applies these functions atomically,
so the limit holds across every worker of a fleet, not per worker: send slots are handed out
GCRA-style (each reservation moves ``next_slot_ms`` on by 1/rate), which makes the limit exact
with no bursts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MIN_RATE_PER_S = 1.0
RECOVERY_INTERVAL_MS = 1000
RECOVERY_FRACTION = 0.1
"""Each second without a 429 adds 10% of the pre-backoff rate back."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Pacing:
    """One endpoint's shared pacing state."""

    current_rate: float | None = None
    """Rate in force while backing off from a 429; None: the configured rate (or no limit)."""
    ceiling: float | None = None
    """The rate recovery climbs back to; None when not backing off."""
    paused_until_ms: int = 0
    next_slot_ms: int = 0
    last_change_ms: int = 0

    def rate(self, configured_rate: float | None) -> float | None:
        """Sends per second allowed now; None means unlimited."""
        return self.current_rate if self.current_rate is not None else configured_rate

    def is_paced(self, configured_rate: float | None, now_ms: int) -> bool:
        """Whether sends must take slots from this state (else an endpoint sends freely)."""
        return (
            configured_rate is not None
            or self.current_rate is not None
            or self.paused_until_ms > now_ms
        )


def reserve(
    pacing: Pacing, now_ms: int, count: int, configured_rate: float | None
) -> tuple[Pacing, list[int]]:
    """Hand out ``count`` send times (ms), spaced 1/rate apart, none before a pause ends."""
    start = max(now_ms, pacing.paused_until_ms)
    rate = pacing.rate(configured_rate)
    if rate is None:
        return pacing, [start] * count
    interval = 1000.0 / rate
    first = max(float(start), float(pacing.next_slot_ms))
    slots = [math.ceil(first + i * interval) for i in range(count)]
    return replace(pacing, next_slot_ms=math.ceil(first + count * interval)), slots


def throttled(
    pacing: Pacing,
    now_ms: int,
    retry_after_s: float | None,
    observed_rate: float,
    configured_rate: float | None,
) -> Pacing:
    """A 429: halve the rate we were sending at, and pause for Retry-After (or one interval).

    ``observed_rate`` is what this worker measured itself sending; it stands in for the rate
    of an endpoint that had no limit until now.
    """
    base = _sending_at(pacing, observed_rate, configured_rate)
    # Halved, but not below MIN_RATE_PER_S, and never above the rate it slows down from (an
    # endpoint configured below MIN_RATE_PER_S stays at its own limit).
    new_rate = min(base, max(MIN_RATE_PER_S, base / 2.0))
    pause_ms = round((retry_after_s if retry_after_s is not None else 1.0 / new_rate) * 1000)
    return _backed_off(pacing, now_ms, pause_ms, new_rate, base)


def broken(
    pacing: Pacing,
    now_ms: int,
    cooldown_ms: int,
    observed_rate: float,
    configured_rate: float | None,
) -> Pacing:
    """The endpoint's circuit breaker opened (``core.breaker``): pause for the cool-down, then
    send at ``MIN_RATE_PER_S`` (half-open) until a success starts the climb back."""
    base = _sending_at(pacing, observed_rate, configured_rate)
    return _backed_off(pacing, now_ms, cooldown_ms, min(base, MIN_RATE_PER_S), base)


def _sending_at(pacing: Pacing, observed_rate: float, configured_rate: float | None) -> float:
    """The rate a backoff slows down from: the one in force, else (an endpoint with no limit)
    what this worker measured itself sending."""
    base = pacing.rate(configured_rate)
    return base if base is not None else max(observed_rate, MIN_RATE_PER_S * 2)


def _backed_off(pacing: Pacing, now_ms: int, pause_ms: int, rate: float, base: float) -> Pacing:
    """Paused for ``pause_ms``, then sending at ``rate``; recovery climbs back to the rate
    before the first backoff (``base`` if this is the first)."""
    paused_until = max(pacing.paused_until_ms, now_ms + pause_ms)
    return Pacing(
        current_rate=rate,
        ceiling=pacing.ceiling if pacing.ceiling is not None else base,
        paused_until_ms=paused_until,
        next_slot_ms=max(pacing.next_slot_ms, paused_until),
        last_change_ms=now_ms,
    )


def recovered(pacing: Pacing, now_ms: int, configured_rate: float | None) -> Pacing:
    """A 2xx: after a backoff, climb one step towards the ceiling (at most once a second)."""
    if pacing.ceiling is None or pacing.current_rate is None:
        return pacing
    if now_ms - pacing.last_change_ms < RECOVERY_INTERVAL_MS:
        return pacing
    rate = pacing.current_rate + max(MIN_RATE_PER_S, pacing.ceiling * RECOVERY_FRACTION)
    if rate >= pacing.ceiling:
        # Back to normal: the configured limit (or none) applies again.
        return replace(pacing, current_rate=None, ceiling=None, last_change_ms=now_ms)
    if configured_rate is not None:
        rate = min(rate, configured_rate)
    return replace(pacing, current_rate=rate, last_change_ms=now_ms)


@dataclass(slots=True)
class SendRateMeter:
    """How fast this worker has been sending to one endpoint (for a 429 on an unlimited one)."""

    window_start_ms: int = 0
    count: int = 0
    last_rate: float = 0.0

    def sent(self, now_ms: int) -> None:
        elapsed = now_ms - self.window_start_ms
        if elapsed >= 1000:
            self.last_rate = self.count * 1000 / elapsed if elapsed < 2000 else 0.0
            self.window_start_ms = now_ms
            self.count = 0
        self.count += 1

    def rate(self, now_ms: int, least_ms: int = 1000) -> float:
        """Sends per second: the last whole window's, or the current one's if higher, counted
        over at least ``least_ms`` (a shorter span reacts sooner to a burst, less steadily)."""
        elapsed = max(now_ms - self.window_start_ms, 1)
        return max(self.last_rate, self.count * 1000 / max(elapsed, least_ms))
