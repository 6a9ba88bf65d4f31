"""The delivery state machine.

pending --claim--> delivering --2xx--> delivered
                        |--retryable, retries left--> pending (next_attempt_at set)
                        |--permanent or exhausted--> dead --replay--> pending
                        |--'webhook-delivery: abort-message'--> aborted
delivering --lease expired (worker died)--> claimable again, same webhook-id
"""

from __future__ import annotations

import msgspec

from postback.core.model import DeliveryState
from postback.core.outcome import AttemptResult, Outcome, decide
from postback.core.policy import RetryPolicy


class Settlement(msgspec.Struct, frozen=True, kw_only=True):
    outcome: Outcome
    state: DeliveryState
    next_attempt_at: int | None
    dead_reason: str | None


def settle(
    result: AttemptResult,
    policy: RetryPolicy,
    attempt_number: int,
    now_ms: int,
    random_unit: float = 0.5,
) -> Settlement:
    """Where a delivery goes after its ``attempt_number``-th attempt (1-based) ended so."""
    decision = decide(result, policy, attempt_number, random_unit)
    if decision.outcome is Outcome.DELIVERED:
        return Settlement(
            outcome=decision.outcome,
            state=DeliveryState.DELIVERED,
            next_attempt_at=None,
            dead_reason=None,
        )
    if decision.outcome is Outcome.ABORTED:
        return Settlement(
            outcome=decision.outcome,
            state=DeliveryState.ABORTED,
            next_attempt_at=None,
            dead_reason=None,
        )
    if decision.next_delay_s is None:
        return Settlement(
            outcome=decision.outcome,
            state=DeliveryState.DEAD,
            next_attempt_at=None,
            dead_reason=decision.dead_reason,
        )
    return Settlement(
        outcome=decision.outcome,
        state=DeliveryState.PENDING,
        next_attempt_at=now_ms + round(decision.next_delay_s * 1000),
        dead_reason=None,
    )
