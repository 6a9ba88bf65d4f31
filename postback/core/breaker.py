"""The circuit breaker per endpoint: stop sending to a receiver that fails everything.

Why: a customer whose URL answers 503 (or refuses connections, or times out) to every request
costs the sender an attempt, a retry's scheduling, a claim and the retry for each of its
messages, about twice what a healthy customer's message costs; on a CPU-bound worker that
comes out of every other customer's rate. After ``after_failures`` retryable failures in a
row, the breaker *opens*: the endpoint is paused for a cool-down (5 s, doubling on each
consecutive trip up to ``max_cooldown_ms``), then *half-open*: sent to at one request a second
(``core.throttle.MIN_RATE_PER_S``). One success *closes* it; the rate then climbs back to what
it was, a tenth a second (``core.throttle.recovered``), so a receiver that just came back is
not flooded with its backlog. Another failure opens it again, for twice as long.

What waits meanwhile: deliveries stay pending and due, their attempts unused, exactly as
during a 429's Retry-After pause; nothing is dropped or dead-lettered for the pause itself,
as Hookdeck holds the events of a paused connection. Svix has no breaker and retries each
message on its own schedule: here a message's retries keep their schedule too, and are only
held while the endpoint is paused. An endpoint that never comes back is disabled by its health
rules (``core.health``: 5 days failing) and keeps its deliveries for a replay.

What counts: a failure the policy retries (5xx, timeout, connection error, any class the
policy retries). A 429 has its own backoff (``core.throttle.throttled``); a permanent 4xx is an
answer, the receiver is up; a 2xx (or a receiver's abort-message) closes the breaker. An
attempt that started before the breaker last opened, or in the same millisecond, is ignored:
attempts in flight when it opens all fail together and must not double the cool-down thirty
times over.

Pure: the dispatcher keeps one ``Streak`` per endpoint and asks ``after_attempt`` what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from postback.core.outcome import Outcome

DEFAULT_AFTER_FAILURES = 10
DEFAULT_COOLDOWN_MS = 5_000
"""The first pause: Sinch's first retry comes 5 s after a failure."""
DEFAULT_MAX_COOLDOWN_MS = 60_000
"""The longest pause: a receiver that comes back waits at most a minute to be noticed."""

_FAILURES = frozenset({Outcome.RETRY, Outcome.EXHAUSTED})
_SUCCESSES = frozenset({Outcome.DELIVERED, Outcome.ABORTED})


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerRules:
    """When an endpoint's breaker opens, and for how long."""

    after_failures: int = DEFAULT_AFTER_FAILURES
    """Retryable failures in a row that open the breaker; 0 turns the breaker off."""
    cooldown_ms: int = DEFAULT_COOLDOWN_MS
    max_cooldown_ms: int = DEFAULT_MAX_COOLDOWN_MS

    def cooldown(self, trips: int) -> int:
        """The pause after the ``trips``-th consecutive opening (1, 2, ...): doubling, capped."""
        doublings = min(max(trips - 1, 0), 32)
        return min(self.cooldown_ms << doublings, self.max_cooldown_ms)


@dataclass(frozen=True, slots=True)
class Streak:
    """One endpoint's recent history, as one worker saw it."""

    failures: int = 0
    """Retryable failures in a row (of attempts started since the breaker last opened)."""
    trips: int = 0
    """Times the breaker opened with no success in between."""
    opened_at_ms: int = -1
    """When it last opened; attempts started then or earlier do not count (a probe starts a
    pause later)."""


CLOSED = Streak()


def after_attempt(
    streak: Streak, outcome: Outcome, started_ms: int, now_ms: int, rules: BreakerRules
) -> tuple[Streak, int | None]:
    """The streak after an attempt, and the pause (ms) to start now if the breaker opens."""
    if rules.after_failures <= 0:
        return streak, None
    if outcome in _SUCCESSES:
        return CLOSED, None
    if outcome not in _FAILURES or started_ms <= streak.opened_at_ms:
        return streak, None
    failures = streak.failures + 1
    if failures < rules.after_failures and streak.trips == 0:
        return Streak(failures, 0, streak.opened_at_ms), None
    # Opens: the threshold reached, or a half-open probe failed (any failure after a trip).
    trips = streak.trips + 1
    return Streak(failures, trips, now_ms), rules.cooldown(trips)
