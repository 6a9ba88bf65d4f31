"""Retry policies: when to try again, and which failures are worth trying again.

The presets quote the seeds (``shared/seeds``):

* ``sinch``: "The first initial retry will happen 5 seconds after the first try. The next
  attempt is after 10 seconds, then after 20 seconds, after 40 seconds, after 80 seconds and so
  on, doubling on every attempt. The last retry will be at 81920 seconds (or 22 hours 45
  minutes) after the initial failed attempt." The times are measured from the first failure:
  retries at 5, 10, 20, ... 81920 s (5 * 2**k, k = 0..14: 15 retries), so the waits between
  attempts are 5, 5, 10, 20, ... 40960 s and the last retry is 22 h 45 min after the first
  failure, as the seed says. "For other status codes in the 4xx range the callback will not be
  retried" (429 excepted).
* ``notify``: "If Notify sends a ``POST`` request to your service, but the request fails then
  we will retry. We will retry every 5 minutes, up to a maximum of 5 times." What "fails" means
  is Notify's own sender's rule (notifications-api, ``send_delivery_status_to_service``): a
  request is retried when it raised a connection error or a timeout, or when "the response
  status code is 5xx or 429"; any other answer (3xx, 4xx) is final. Its requests time out
  after 5 s.
* ``vibes``: "attempt delivery of the message every five minutes, up to a maximum of five
  retries"; "anything other than 2XX ... will be attempted again"; "a relatively short
  timeout process of two seconds".
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

from postback.core.errors import PostbackError

StatusClass = Literal["3xx", "4xx", "429", "5xx", "timeout", "network"]
"""What a failed attempt can be, for the purpose of deciding whether to retry it."""

MAX_RETRY_DELAY_S = 30 * 86_400.0
"""No wait between two attempts is longer than 30 days (after jitter too): a delivery's next
attempt time must stay a number every database stores (and a retention sweep can reach)."""

ALL_STATUS_CLASSES: tuple[StatusClass, ...] = ("3xx", "4xx", "429", "5xx", "timeout", "network")
# Sinch semantics: "For 5xx the callback will be retried. For 429 the callback will be
# retried and the throughput will be lowered. For other status codes in the 4xx range the
# callback will not be retried." Timeouts and connection errors are "expected to be
# temporary"; 3xx and other 4xx mean the receiver rejected the callback, so retrying would
# only repeat the rejection.
TRANSIENT_STATUS_CLASSES: tuple[StatusClass, ...] = ("429", "5xx", "timeout", "network")


class PolicyError(PostbackError, ValueError):
    """A retry policy description that cannot be used; the message names the field."""


class RetryPolicy(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A retry schedule plus the failure classes it retries.

    Either ``schedule_s`` (explicit delays, one per retry) or the exponential form
    (``initial_s`` * ``factor`` ** k, capped by ``max_delay_s``, ``max_retries`` of them).
    Delays are measured from the previous failed attempt.
    """

    preset: str | None = None
    schedule_s: tuple[float, ...] | None = None
    initial_s: float | None = None
    factor: float = 2.0
    max_retries: int | None = None
    max_delay_s: float | None = None
    jitter: float = 0.0
    retry_statuses: tuple[StatusClass, ...] | None = None
    """Failure classes that are retried; None means the transient ones (Sinch semantics)."""
    timeout_ms: int | None = None
    """A preset's own attempt timeout (vibes: 2 s); an endpoint's ``timeout_ms`` overrides it."""

    @property
    def retry_count(self) -> int:
        """How many retries follow the first attempt before a delivery is dead."""
        if self.schedule_s is not None:
            return len(self.schedule_s)
        return self.max_retries or 0

    def delay_after(self, failed_attempts: int, random_unit: float = 0.5) -> float | None:
        """Seconds to wait after the ``failed_attempts``-th failure, or None when exhausted.

        ``random_unit`` is a number in [0, 1) supplied by the caller (the core draws no
        randomness); 0.5 means "no jitter".
        """
        index = failed_attempts - 1
        if index < 0:
            raise ValueError("failed_attempts starts at 1")
        if index >= self.retry_count:
            return None
        if self.schedule_s is not None:
            base = self.schedule_s[index]
        else:
            assert self.initial_s is not None
            try:
                base = self.initial_s * self.factor**index
            except OverflowError:  # a factor of 1e300 is valid and overflows quickly
                base = math.inf
            if self.max_delay_s is not None:
                base = min(base, self.max_delay_s)
        if self.jitter:
            base *= 1.0 + self.jitter * (2.0 * random_unit - 1.0)
        return min(max(base, 0.0), MAX_RETRY_DELAY_S)

    def schedule(self) -> list[float]:
        """The full list of retry delays without jitter (what ``policies show`` prints)."""
        return [d for n in range(1, self.retry_count + 1) if (d := self.delay_after(n)) is not None]

    def retries(self, status_class: StatusClass) -> bool:
        """Whether a failure of this class is retried (otherwise it is permanent)."""
        retried = TRANSIENT_STATUS_CLASSES if self.retry_statuses is None else self.retry_statuses
        return status_class in retried


PRESETS: dict[str, RetryPolicy] = {
    # Sinch: "The first initial retry will happen 5 seconds after the first try. The next
    # attempt is after 10 seconds, then after 20 seconds, ... doubling on every attempt. The
    # last retry will be at 81920 seconds (or 22 hours 45 minutes) after the initial failed
    # attempt." The seed's times run from the first failure; our delays from the previous one.
    "sinch": RetryPolicy(
        preset="sinch",
        # Waits between attempts whose running total is 5, 10, 20, ... 81920 s.
        schedule_s=(5.0, *(5.0 * 2**k for k in range(14))),
        retry_statuses=TRANSIENT_STATUS_CLASSES,
    ),
    # GOV.UK Notify: "If Notify sends a POST request to your service, but the request fails
    # then we will retry. We will retry every 5 minutes, up to a maximum of 5 times."
    "notify": RetryPolicy(
        preset="notify",
        # "We will retry every 5 minutes, up to a maximum of 5 times."
        schedule_s=(300.0,) * 5,
        # Notify's sender retries "connection errors, timeouts, 5xx and 429" only: a 3xx or
        # 4xx is the service's final answer and is not retried.
        retry_statuses=TRANSIENT_STATUS_CLASSES,
        # Notify's sender waits 5 s for the callback's answer.
        timeout_ms=5000,
    ),
    # Vibes: "anything other than 2XX ... will be attempted again", "every five minutes, up
    # to a maximum of five retries"; "a relatively short timeout process of two seconds".
    "vibes": RetryPolicy(
        preset="vibes",
        schedule_s=(300.0,) * 5,
        # "anything other than 2XX ... will be attempted again": every failure class retries.
        retry_statuses=ALL_STATUS_CLASSES,
        timeout_ms=2000,
    ),
}
DEFAULT_POLICY_NAME = "sinch"


def _check_number(
    value: float | None,
    field: str,
    *,
    minimum: float,
    allow_none: bool,
    maximum: float = math.inf,
) -> None:
    if value is None:
        if not allow_none:
            raise PolicyError(f"retry_policy.{field} is required")
        return
    if not math.isfinite(value) or value < minimum:
        raise PolicyError(f"retry_policy.{field} must be a number >= {minimum:g}, got {value!r}")
    if value > maximum:
        raise PolicyError(f"retry_policy.{field} must be at most {maximum:g} s (30 days)")


def validate_policy(policy: RetryPolicy) -> RetryPolicy:
    """Check a custom policy, returning it; raise PolicyError naming the offending field."""
    if policy.preset is not None:
        if policy.preset not in PRESETS:
            names = ", ".join(sorted(PRESETS))
            raise PolicyError(f"retry_policy.preset must be one of {names}, got {policy.preset!r}")
        if policy.schedule_s is not None or policy.initial_s is not None:
            raise PolicyError("retry_policy: a preset cannot be combined with a custom schedule")
        return policy
    if policy.schedule_s is not None:
        if policy.initial_s is not None or policy.max_retries is not None:
            raise PolicyError("retry_policy: give either schedule_s or initial_s/max_retries")
        if len(policy.schedule_s) > 100:
            raise PolicyError("retry_policy.schedule_s allows at most 100 retries")
        for i, delay in enumerate(policy.schedule_s):
            _check_number(
                delay, f"schedule_s[{i}]", minimum=0, allow_none=False, maximum=MAX_RETRY_DELAY_S
            )
    else:
        _check_number(
            policy.initial_s, "initial_s", minimum=0, allow_none=False, maximum=MAX_RETRY_DELAY_S
        )
        _check_number(policy.factor, "factor", minimum=1, allow_none=False)
        _check_number(
            policy.max_delay_s,
            "max_delay_s",
            minimum=0,
            allow_none=True,
            maximum=MAX_RETRY_DELAY_S,
        )
        if policy.max_retries is None or not 0 <= policy.max_retries <= 100:
            raise PolicyError("retry_policy.max_retries must be an integer from 0 to 100")
    if not 0 <= policy.jitter <= 1:
        raise PolicyError(f"retry_policy.jitter must be between 0 and 1, got {policy.jitter!r}")
    if policy.timeout_ms is not None and not 1 <= policy.timeout_ms <= 60_000:
        raise PolicyError("retry_policy.timeout_ms must be from 1 to 60000")
    return policy


def resolve_policy(policy: RetryPolicy | None) -> RetryPolicy:
    """The effective policy: a preset reference expands to the preset, None to the default."""
    if policy is None:
        return PRESETS[DEFAULT_POLICY_NAME]
    if policy.preset is not None:
        preset = PRESETS[policy.preset]
        # A preset may be narrowed by retry_statuses given alongside it.
        if policy.retry_statuses is not None:
            return msgspec.structs.replace(preset, retry_statuses=policy.retry_statuses)
        return preset
    return policy
