"""Endpoint health and auto-disable: pure rules, time passed in.

The dispatcher folds each finished attempt into an in-memory ``HealthDelta`` per endpoint
(``observe``), and at every record flush merges the deltas into the stored ``HealthState``
rows (``merge``) under a row lock. What changed between the stored row before and after
(``changes``) and whether the endpoint must be disabled (``disable_reason``) are decided here,
so a simulated week of failures is tested without a clock or a database.

Why each rule:

* A **410 Gone** answer disables at once: Standard Webhooks, "Endpoint removal: ... if the
  consumer returns a 410 Gone the producer should disable the endpoint and stop sending".
* A **``webhook-delivery: disable``** response header disables at once, and
  **``webhook-delivery: abort-message``** stops retrying that one message (the receiver took a
  decision; it is recorded as ``aborted``, not as a failure). These are Svix's receiver
  controls; the header is read case-insensitively.
* **Continuous failure for ``disable_after_ms``** (default 5 days, as Svix): no attempt to the
  endpoint succeeded since ``failing_since``. One success ends the streak.
* **``dead_limit`` consecutive dead deliveries** (off unless configured): a receiver that
  takes nothing, even where each delivery's own retries are short.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

DAY_MS = 86_400_000
DEFAULT_DISABLE_AFTER_MS = 5 * DAY_MS
DEFAULT_FAILING_AFTER = 5
"""Consecutive failed attempts after which ``endpoint.failing`` is announced."""

WINDOW_MS = 3_600_000
"""Length of one counting bucket. "Recent" means the current bucket plus the previous one,
i.e. the last one to two hours, without keeping per-attempt history."""

LATENCY_BOUNDS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
"""Upper bounds of the attempt latency buckets; one more bucket counts anything slower."""
_BUCKETS = len(LATENCY_BOUNDS_MS) + 1
EMPTY_BUCKETS: tuple[int, ...] = (0,) * _BUCKETS

DISABLE_HEADER = "webhook-delivery"


class Control(enum.StrEnum):
    """What a receiver asked for in its answer (beyond the status code)."""

    DISABLE = "disable"
    ABORT_MESSAGE = "abort-message"


def parse_control(value: str | None) -> Control | None:
    """The ``webhook-delivery`` response header; unknown values are ignored."""
    if not value:
        return None
    try:
        return Control(value.strip().lower())
    except ValueError:
        return None


def immediate_disable_reason(status_code: int | None, control: Control | None) -> str | None:
    """The reason an answer disables its endpoint at once, or None."""
    if control is Control.DISABLE:
        return "the receiver answered 'webhook-delivery: disable'"
    if status_code == 410:
        # Standard Webhooks: 410 Gone means the endpoint was removed on purpose.
        return "the receiver answered 410 Gone"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthRules:
    """When an endpoint is announced failing and when it is disabled."""

    disable_after_ms: int = DEFAULT_DISABLE_AFTER_MS
    """0: never disabled for continuous failure."""
    dead_limit: int = 0
    """Consecutive dead deliveries that disable; 0: off."""
    failing_after: int = DEFAULT_FAILING_AFTER


class HealthState(msgspec.Struct, frozen=True, kw_only=True):
    """What is kept per endpoint (one row), updated as attempts are recorded."""

    endpoint_id: str
    window_start: int = 0
    successes: int = 0
    failures: int = 0
    prev_successes: int = 0
    prev_failures: int = 0
    latency: tuple[int, ...] = (0,) * _BUCKETS
    """Attempt durations of the current and previous bucket, counted per LATENCY_BOUNDS_MS."""
    prev_latency: tuple[int, ...] = (0,) * _BUCKETS
    consecutive_failures: int = 0
    consecutive_dead: int = 0
    failing_since: int | None = None
    """When the first failure of the current streak happened; None while healthy."""
    last_success_at: int | None = None
    last_failure_at: int | None = None
    failing_announced: bool = False
    """``endpoint.failing`` was announced for this streak (so it is announced once)."""
    disabled_reason: str | None = None
    disabled_at: int | None = None
    updated_at: int = 0

    def recent(self, now_ms: int) -> tuple[int, int]:
        """(successes, failures) in the current and previous bucket, as of ``now_ms``."""
        rolled = roll(self, now_ms)
        return (
            rolled.successes + rolled.prev_successes,
            rolled.failures + rolled.prev_failures,
        )

    def latency_percentile_ms(self, q: float, now_ms: int) -> float | None:
        """The upper bound of the bucket holding the ``q`` quantile (0..1); None without data."""
        rolled = roll(self, now_ms)
        counts = [a + b for a, b in zip(rolled.latency, rolled.prev_latency, strict=True)]
        total = sum(counts)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for i, count in enumerate(counts):
            seen += count
            if seen >= rank and count:
                return float(LATENCY_BOUNDS_MS[i]) if i < len(LATENCY_BOUNDS_MS) else float("inf")
        return float("inf")


def roll(health: HealthState, now_ms: int) -> HealthState:
    """Move the counting buckets forward to the bucket holding ``now_ms``."""
    start = now_ms - now_ms % WINDOW_MS
    if start <= health.window_start:
        return health
    if start - health.window_start == WINDOW_MS:
        return msgspec.structs.replace(
            health,
            window_start=start,
            prev_successes=health.successes,
            prev_failures=health.failures,
            prev_latency=health.latency,
            successes=0,
            failures=0,
            latency=(0,) * _BUCKETS,
        )
    return msgspec.structs.replace(
        health,
        window_start=start,
        prev_successes=0,
        prev_failures=0,
        prev_latency=(0,) * _BUCKETS,
        successes=0,
        failures=0,
        latency=(0,) * _BUCKETS,
    )


def latency_bucket(duration_ms: float) -> int:
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        if duration_ms <= bound:
            return i
    return len(LATENCY_BOUNDS_MS)


@dataclass(slots=True)
class HealthDelta:
    """What one process saw of one endpoint since its last flush, in the order it happened.

    Only what a merge needs: counts, and what came after the last success (the part of the
    batch that continues the stored streak, or starts a new one).
    """

    successes: int = 0
    failures: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * _BUCKETS)
    last_success_at: int | None = None
    last_failure_at: int | None = None
    trailing_failures: int = 0
    trailing_first_failure_at: int | None = None
    trailing_dead: int = 0
    any_success: bool = False
    disable_reason: str | None = None
    """An answer that disables at once (410, ``webhook-delivery: disable``)."""
    first_at: int = 0

    def observe(
        self,
        *,
        succeeded: bool,
        dead: bool,
        at_ms: int,
        duration_ms: float,
        disable_reason: str | None = None,
    ) -> None:
        """Fold one finished attempt in (``succeeded`` also for an aborted message: the
        receiver answered on purpose)."""
        if not self.first_at:
            self.first_at = at_ms
        self.latency[latency_bucket(duration_ms)] += 1
        if succeeded:
            self.successes += 1
            self.any_success = True
            if self.last_success_at is None or at_ms > self.last_success_at:
                self.last_success_at = at_ms
            self.trailing_failures = 0
            self.trailing_first_failure_at = None
            self.trailing_dead = 0
        else:
            self.failures += 1
            self.last_failure_at = at_ms
            self.trailing_failures += 1
            if self.trailing_first_failure_at is None:
                self.trailing_first_failure_at = at_ms
            if dead:
                self.trailing_dead += 1
        if disable_reason is not None and self.disable_reason is None:
            self.disable_reason = disable_reason


def merge(health: HealthState, delta: HealthDelta, now_ms: int) -> HealthState:
    """The stored health after ``delta`` (the same rule whichever process flushes first)."""
    h = roll(health, now_ms)
    latency = tuple(a + b for a, b in zip(h.latency, delta.latency, strict=True))
    if delta.any_success:
        consecutive = delta.trailing_failures
        failing_since = delta.trailing_first_failure_at
        consecutive_dead = delta.trailing_dead
        announced = h.failing_announced and consecutive > 0
    else:
        consecutive = h.consecutive_failures + delta.trailing_failures
        failing_since = (
            h.failing_since if h.failing_since is not None else delta.trailing_first_failure_at
        )
        consecutive_dead = h.consecutive_dead + delta.trailing_dead
        announced = h.failing_announced
    last_success = max(filter(None, (h.last_success_at, delta.last_success_at)), default=None)
    last_failure = max(filter(None, (h.last_failure_at, delta.last_failure_at)), default=None)
    return msgspec.structs.replace(
        h,
        successes=h.successes + delta.successes,
        failures=h.failures + delta.failures,
        latency=latency,
        consecutive_failures=consecutive,
        consecutive_dead=consecutive_dead,
        failing_since=failing_since,
        last_success_at=last_success,
        last_failure_at=last_failure,
        failing_announced=announced,
        updated_at=now_ms,
    )


class Change(enum.StrEnum):
    """What an operator is told about (log line, metric, operational webhook)."""

    FAILING = "failing"
    RECOVERED = "recovered"
    DISABLED = "disabled"


def disable_reason(
    health: HealthState, delta: HealthDelta | None, rules: HealthRules, now_ms: int
) -> str | None:
    """Why the endpoint must be disabled now, or None."""
    if delta is not None and delta.disable_reason is not None:
        return delta.disable_reason
    if health.consecutive_failures == 0 or health.failing_since is None:
        return None
    if rules.disable_after_ms > 0 and now_ms - health.failing_since >= rules.disable_after_ms:
        hours = (now_ms - health.failing_since) / 3_600_000
        return (
            f"every attempt failed for {hours:.0f} h "
            f"({health.consecutive_failures} attempts; the limit is "
            f"{rules.disable_after_ms / 3_600_000:.0f} h)"
        )
    if rules.dead_limit > 0 and health.consecutive_dead >= rules.dead_limit:
        return f"{health.consecutive_dead} consecutive dead deliveries"
    return None


def decide(
    before: HealthState, delta: HealthDelta, rules: HealthRules, now_ms: int
) -> tuple[HealthState, list[Change], str | None]:
    """Merge ``delta``; return the new health, what to announce, and a disable reason."""
    after = merge(before, delta, now_ms)
    changes: list[Change] = []
    if before.failing_announced and delta.any_success and after.consecutive_failures == 0:
        changes.append(Change.RECOVERED)
    if not after.failing_announced and after.consecutive_failures >= rules.failing_after > 0:
        after = msgspec.structs.replace(after, failing_announced=True)
        changes.append(Change.FAILING)
    reason = None
    if before.disabled_at is None:
        reason = disable_reason(after, delta, rules, now_ms)
        if reason is not None:
            after = msgspec.structs.replace(after, disabled_reason=reason, disabled_at=now_ms)
            changes.append(Change.DISABLED)
    return after, changes, reason


def fresh_streak(health: HealthState, now_ms: int) -> HealthState:
    """After a re-enable: counters kept, streak and disable forgotten."""
    return msgspec.structs.replace(
        health,
        consecutive_failures=0,
        consecutive_dead=0,
        failing_since=None,
        failing_announced=False,
        disabled_reason=None,
        disabled_at=None,
        updated_at=now_ms,
    )


# -- backlog (read from the deliveries, never stored) ---------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Backlog:
    """Deliveries by state, fleet-wide or for one endpoint, as one periodic query sees them."""

    pending: int = 0
    due: int = 0
    delivering: int = 0
    dead: int = 0
    oldest_pending_created_at: int | None = None
    oldest_due_at: int | None = None

    def oldest_pending_age_s(self, now_ms: int) -> float:
        if self.oldest_pending_created_at is None:
            return 0.0
        return max(now_ms - self.oldest_pending_created_at, 0) / 1000

    def due_lag_s(self, now_ms: int) -> float:
        if self.oldest_due_at is None:
            return 0.0
        return max(now_ms - self.oldest_due_at, 0) / 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointBacklog:
    endpoint_id: str
    pending: int = 0
    due: int = 0
    oldest_pending_created_at: int | None = None


def iso(ms: int | None) -> str | None:
    """RFC 3339 UTC with milliseconds, as in every payload Postback writes itself."""
    if ms is None:
        return None
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
