"""Per-endpoint send pacing: a configured rate limit plus AIMD backoff on 429.

Sinch: "For 429 the callback will be retried and the throughput will be lowered." We lower it
multiplicatively (halve the current rate), honour Retry-After by pausing the endpoint, and
recover additively on success, the way TCP congestion control does, so a receiver that is
briefly overloaded is not hammered and a healthy one gets back to full speed in seconds.
The clock is passed in; nothing here sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIN_RATE_PER_S = 1.0
RECOVERY_INTERVAL_S = 1.0
RECOVERY_FRACTION = 0.1  # each second of success adds 10% of the pre-throttle rate


@dataclass(slots=True)
class Throttle:
    """Pacing state of one endpoint. ``configured_rate`` None means no limit of its own."""

    configured_rate: float | None
    current_rate: float | None = None
    paused_until: float = 0.0
    ceiling: float | None = None
    _next_slot: float = 0.0
    _window_start: float = 0.0
    _window_count: int = 0
    _last_recovery: float = 0.0
    _recent_rate: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.current_rate = self.configured_rate

    def reconfigure(self, configured_rate: float | None) -> None:
        """Apply a changed endpoint limit without forgetting an active 429 backoff."""
        if configured_rate == self.configured_rate:
            return
        self.configured_rate = configured_rate
        if self.ceiling is None:
            self.current_rate = configured_rate
        elif configured_rate is not None and self.current_rate is not None:
            self.current_rate = min(self.current_rate, configured_rate)

    def reserve(self, now: float) -> float:
        """Take the next send slot; return how many seconds to wait before sending."""
        self._count(now)
        start = max(now, self.paused_until)
        if self.current_rate is None:
            return start - now
        slot = max(start, self._next_slot)
        self._next_slot = slot + 1.0 / self.current_rate
        return slot - now

    def on_throttled(self, now: float, retry_after_s: float | None) -> None:
        """A 429: halve the rate (from what we were actually sending) and maybe pause."""
        observed = max(self._recent_rate, self._window_count / max(now - self._window_start, 1e-3))
        base = self.current_rate if self.current_rate is not None else observed
        if self.ceiling is None:
            self.ceiling = self.configured_rate if self.configured_rate is not None else base
        self.current_rate = max(MIN_RATE_PER_S, min(base, observed or base) / 2.0)
        pause = retry_after_s if retry_after_s is not None else 1.0 / self.current_rate
        self.paused_until = max(self.paused_until, now + pause)
        self._next_slot = max(self._next_slot, self.paused_until)
        self._last_recovery = now

    def on_success(self, now: float) -> None:
        """A 2xx: after a backoff, climb back towards the ceiling step by step."""
        if self.ceiling is None or self.current_rate is None:
            return
        if now - self._last_recovery < RECOVERY_INTERVAL_S:
            return
        self._last_recovery = now
        self.current_rate += max(MIN_RATE_PER_S, self.ceiling * RECOVERY_FRACTION)
        if self.current_rate >= self.ceiling:
            self.current_rate = self.configured_rate
            self.ceiling = None

    def is_paused(self, now: float) -> bool:
        return now < self.paused_until

    def _count(self, now: float) -> None:
        if now - self._window_start >= 1.0:
            elapsed = now - self._window_start
            self._recent_rate = self._window_count / elapsed if elapsed < 2.0 else 0.0
            self._window_start = now
            self._window_count = 0
        self._window_count += 1
