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

import msgspec

from postback.core.policy import RetryPolicy, StatusClass


class Outcome(enum.StrEnum):
    """What happened to an attempt, as recorded on it."""

    DELIVERED = "delivered"
    RETRY = "retry"
    THROTTLED = "throttled"  # retried, and the endpoint's send rate is lowered
    PERMANENT = "permanent"  # a failure the policy does not retry: the delivery is dead
    EXHAUSTED = "exhausted"  # a retryable failure with no retry left: the last attempt, dead
    ABORTED = "aborted"  # the receiver answered 'webhook-delivery: abort-message'


class FailureKind(enum.StrEnum):
    """Why an attempt produced no HTTP response at all."""

    TIMEOUT = "timeout"
    NETWORK = "network"  # refused, reset, DNS failure, connection closed mid-response
    BLOCKED = "blocked"  # the destination is a forbidden address (SSRF guard): never sent


class AttemptResult(msgspec.Struct, frozen=True, kw_only=True):
    """The raw result of one try, as a transport reports it (no interpretation yet)."""

    status_code: int | None
    failure: FailureKind | None = None
    error: str | None = None
    retry_after_s: float | None = None
    duration_ms: float = 0.0
    response_body: str | None = None
    control: str | None = None
    """The receiver's ``webhook-delivery`` response header, as sent (see core/health.py)."""


def status_class(result: AttemptResult) -> StatusClass | None:
    """The failure class of a result, or None when it is a success (2xx)."""
    if result.failure is FailureKind.TIMEOUT:
        # No answer in time. Sinch: "schedule a retry if the error is expected to be
        # temporary"; Vibes keeps "a relatively short timeout process of two seconds" and
        # tells receivers to "avoid timeouts (and retries)": a timeout is retried.
        return "timeout"
    if result.failure is not None or result.status_code is None:
        # Refused, reset, DNS failure: no HTTP answer at all, temporary like a timeout.
        return "network"
    code = result.status_code
    if 200 <= code <= 299:
        # RFC 9110 section 15.3: "the client's request was successfully received, understood,
        # and accepted." Sinch: "a response code within the 2xx success range".
        return None
    if code == 429:
        # Sinch: "For 429 the callback will be retried and the throughput will be lowered."
        # (RFC 6585 section 4: "the user has sent too many requests in a given amount of
        # time"); the Retry-After it may carry is honoured in ``decide``.
        return "429"
    if 500 <= code <= 599:
        # Sinch: "For 5xx the callback will be retried." RFC 9110 section 15.6: "the server
        # is aware that it has erred or is incapable of performing the requested method".
        return "5xx"
    if 400 <= code <= 499:
        # Sinch: "For other status codes in the 4xx range the callback will not be retried"
        # ("A 4xx status counts as a permanent failure ... except for 429"). RFC 9110 section
        # 15.5: "the client seems to have erred", so the same request would fail again.
        # 410 Gone is one of them (section 15.5.11: "no longer available at the origin server
        # and ... likely to be permanent"), and so is 408 Request Timeout: permanent under
        # Sinch's rule unless the policy retries 4xx (Notify and Vibes retry every non-2xx).
        return "4xx"
    # 3xx: RFC 9110 section 15.4, "Automatic redirection needs to be done with care for
    # methods not known to be safe" (a POST is not): redirects are not followed, which would
    # let a receiver bounce signed payloads to a third party. Not 2xx, so not delivered;
    # retried only if the policy says 3xx. A 1xx never reaches us as a final answer.
    return "3xx"


class Decision(msgspec.Struct, frozen=True, kw_only=True):
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
    if result.control is not None and result.control.strip().lower() == "abort-message":
        # Svix's receiver control: the receiver does not want this message, ever. It decided;
        # that is neither a failure to retry nor a dead letter to alert about.
        return Decision(outcome=Outcome.ABORTED, next_delay_s=None)
    if not policy.retries(cls):
        # The policy decides what is permanent: Sinch's 3xx and other 4xx, nothing under
        # Notify ("If ... the request fails then we will retry") and Vibes.
        return Decision(
            outcome=Outcome.PERMANENT,
            next_delay_s=None,
            dead_reason=f"permanent failure: {describe(result)}",
        )
    delay = policy.delay_after(failed_attempts, random_unit)
    if delay is None:
        # No retry follows, so the attempt is recorded as the final one it was, not "retry".
        return Decision(
            outcome=Outcome.EXHAUSTED,
            next_delay_s=None,
            dead_reason=f"retries exhausted after {failed_attempts} attempts: {describe(result)}",
        )
    if cls == "429":
        # RFC 9110 section 10.2.3: Retry-After indicates "how long the user agent ought to
        # wait before making a follow-up request"; never sooner than our own schedule.
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
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit, not to float
        seconds = float(value)
    else:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now_s
    return min(max(seconds, 0.0), 86_400.0)
