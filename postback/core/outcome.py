"""Outcome classification: what one attempt's result means for the delivery.

Sinch's callback documentation (``shared/seeds``) is the reference: "The REST API expects the
receiving server to respond with a response code within the 2xx success range. For 5xx the
callback will be retried. For 429 the callback will be retried and the throughput will be
lowered. For other status codes in the 4xx range the callback will not be retried."
Whether a class is retried is finally up to the endpoint's RetryPolicy (Notify and Vibes
retry every non-2xx), so this module only names the class; ``decide`` applies the policy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from postback.core.policy import RetryPolicy, StatusClass


class Outcome(enum.StrEnum):
    """What happened to an attempt, as recorded on it."""

    DELIVERED = "delivered"
    RETRY = "retry"
    THROTTLED = "throttled"  # retried, and the endpoint's send rate is lowered
    PERMANENT = "permanent"


class FailureKind(enum.StrEnum):
    """Why an attempt produced no HTTP response at all."""

    TIMEOUT = "timeout"
    NETWORK = "network"  # refused, reset, DNS failure, connection closed mid-response
    BLOCKED = "blocked"  # the destination is a forbidden address (SSRF guard): never sent


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptResult:
    """The raw result of one try, as a transport reports it (no interpretation yet)."""

    status_code: int | None
    failure: FailureKind | None = None
    error: str | None = None
    retry_after_s: float | None = None
    duration_ms: float = 0.0
    response_body: str | None = None


def status_class(result: AttemptResult) -> StatusClass | None:
    """The failure class of a result, or None when it is a success (2xx)."""
    if result.failure is FailureKind.TIMEOUT:
        return "timeout"
    if result.failure is not None or result.status_code is None:
        return "network"
    code = result.status_code
    if 200 <= code <= 299:
        return None
    if code == 429:
        return "429"
    if 500 <= code <= 599:
        return "5xx"
    if 400 <= code <= 499:
        # 408 Request Timeout is a 4xx; Sinch's rule ("other status codes in the 4xx range
        # ... not retried") treats it as permanent, and so do we unless the policy says 4xx.
        return "4xx"
    # 1xx never reaches us as a final answer; 3xx because redirects are not followed
    # (following them would let a receiver bounce signed payloads to a third party).
    return "3xx"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What to do with a delivery after an attempt."""

    outcome: Outcome
    next_delay_s: float | None
    """Seconds until the next try; None when the delivery is finished (delivered or dead)."""
    dead_reason: str | None = None


def describe(result: AttemptResult) -> str:
    """A short human reason for a failed attempt, used as the dead-letter reason."""
    if result.failure is FailureKind.TIMEOUT:
        return "timeout" + (f": {result.error}" if result.error else "")
    if result.failure is not None or result.status_code is None:
        return "connection error" + (f": {result.error}" if result.error else "")
    return f"HTTP {result.status_code}"


def decide(
    result: AttemptResult,
    policy: RetryPolicy,
    failed_attempts: int,
    random_unit: float = 0.5,
) -> Decision:
    """Apply ``policy`` to an attempt's result.

    ``failed_attempts`` counts failures including this one. A 429's Retry-After, when longer
    than the schedule's next delay, is honoured (RFC 9110 section 10.2.3: the receiver tells us
    how long to wait).
    """
    if result.failure is FailureKind.BLOCKED:
        # Not the receiver's fault and not transient: no policy may retry into a blocked
        # network; the customer must change the URL (then replay).
        return Decision(
            outcome=Outcome.PERMANENT,
            next_delay_s=None,
            dead_reason=f"blocked destination: {result.error}",
        )
    cls = status_class(result)
    if cls is None:
        return Decision(outcome=Outcome.DELIVERED, next_delay_s=None)
    if not policy.retries(cls):
        return Decision(
            outcome=Outcome.PERMANENT,
            next_delay_s=None,
            dead_reason=f"permanent failure: {describe(result)}",
        )
    delay = policy.delay_after(failed_attempts, random_unit)
    if delay is None:
        return Decision(
            outcome=Outcome.THROTTLED if cls == "429" else Outcome.RETRY,
            next_delay_s=None,
            dead_reason=f"retries exhausted after {failed_attempts} attempts: {describe(result)}",
        )
    if cls == "429":
        if result.retry_after_s is not None:
            delay = max(delay, result.retry_after_s)
        return Decision(outcome=Outcome.THROTTLED, next_delay_s=delay)
    return Decision(outcome=Outcome.RETRY, next_delay_s=delay)


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 section 10.2.3).

    Either delay-seconds or an HTTP-date; anything unparseable is ignored. Capped at one day
    so a hostile receiver cannot park a delivery forever.
    """
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    if value.isdigit():
        seconds = float(value)
    else:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now_s
    return min(max(seconds, 0.0), 86_400.0)
