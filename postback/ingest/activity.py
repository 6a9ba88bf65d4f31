"""What the operator dashboard and the customer portal show: activity, health, dead letters.

Read-only views over storage, plus replay of many dead deliveries at once. Times are windows
ending now (``window_ms``); the plots' series are dense (empty buckets are zeros).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from postback.core.errors import Conflict, InvalidInput, NotFound
from postback.core.model import (
    AccountActivity,
    ActivityPoint,
    Delivery,
    EndpointHealth,
    LiveTotals,
)
from postback.ingest.context import IngestContext
from postback.ingest.endpoints import EndpointService
from postback.ingest.messages import MessageService

Health = Literal["disabled", "failing", "paced", "healthy", "idle"]

FAILING_SHARE = 0.5
"""An endpoint is failing when at least half of its recent attempts did not deliver."""
MAX_POINTS = 240


def health_of(endpoint: EndpointHealth) -> Health:
    """One word for an endpoint's state, worst first: an operator sorts by it."""
    if endpoint.disabled:
        return "disabled"
    if endpoint.attempts and endpoint.failures / endpoint.attempts >= FAILING_SHARE:
        return "failing"
    if endpoint.paced_rate is not None or endpoint.paused_until is not None:
        return "paced"  # a 429 lowered its rate or paused it, or its circuit breaker opened
    return "healthy" if endpoint.attempts else "idle"


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    replayed: list[str]
    refused: dict[str, str]
    """Delivery id -> why it was not replayed (not dead, endpoint deleted, not found)."""


class ActivityReports:
    def __init__(
        self, context: IngestContext, endpoints: EndpointService, messages: MessageService
    ) -> None:
        self.context = context
        self.endpoints = endpoints
        self.messages = messages

    async def accounts(
        self, window_ms: int, limit: int = 200, account_id: str | None = None
    ) -> list[AccountActivity]:
        since = self.context.now_ms() - window_ms
        return await self.context.storage.account_activity(since, limit, account_id)

    async def live_totals(self, window_ms: int) -> LiveTotals:
        """Every node's work right now (from storage) and the attempts of the last window;
        cheap enough to poll every few seconds (no scan of finished deliveries)."""
        return await self.context.storage.live_totals(self.context.now_ms() - window_ms)

    async def endpoint_health(
        self, window_ms: int, limit: int = 200, account_id: str | None = None
    ) -> list[EndpointHealth]:
        now = self.context.now_ms()
        return await self.context.storage.endpoint_health(now - window_ms, now, limit, account_id)

    async def dead_letters(
        self, *, before: str | None = None, limit: int = 100, account_id: str | None = None
    ) -> list[Delivery]:
        return await self.context.storage.dead_letters(
            before=before, limit=limit, account_id=account_id
        )

    async def endpoint_series(
        self, account_id: str | None, endpoint_id: str, window_ms: int, bucket_ms: int
    ) -> list[ActivityPoint]:
        """Attempts and failures per bucket over the window, oldest first, zeros included.

        ``account_id`` None (the operator) reaches any account's endpoint.
        """
        if bucket_ms <= 0 or window_ms <= 0 or window_ms // bucket_ms > MAX_POINTS:
            raise InvalidInput("bucket", f"at most {MAX_POINTS} buckets per plot")
        if account_id is not None:
            await self.endpoints.get(account_id, endpoint_id)
        now = self.context.now_ms()
        first = (now - window_ms) // bucket_ms
        last = now // bucket_ms
        found = {
            p.bucket_start: p
            for p in await self.context.storage.endpoint_activity(
                endpoint_id, first * bucket_ms, bucket_ms
            )
        }
        return [
            found.get(
                b * bucket_ms, ActivityPoint(bucket_start=b * bucket_ms, attempts=0, failures=0)
            )
            for b in range(first, last + 1)
        ]

    async def replay(self, targets: list[tuple[str, str]]) -> ReplayOutcome:
        """Replay each ``(account_id, delivery_id)``; one that cannot go is reported, not fatal."""
        replayed: list[str] = []
        refused: dict[str, str] = {}
        for account_id, delivery_id in targets:
            try:
                replayed.append(await self.messages.replay_delivery(account_id, delivery_id))
            except (Conflict, NotFound) as exc:
                refused[delivery_id] = str(exc)
        return ReplayOutcome(replayed=replayed, refused=refused)
