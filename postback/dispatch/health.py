"""Endpoint health as the dispatcher records attempts, and what follows from it.

The dispatcher calls ``observe`` once per finished attempt (a dict lookup and a few integer
updates) and ``flush`` after each batch of records is written. ``flush`` merges the deltas into
the stored health rows in one transaction (``Storage.update_health``), using the pure rules of
``postback.core.health``; then it acts on what they decided: disables endpoints, logs one line
per change, counts it, and announces it through the operational webhooks.

Successes alone are written at most once a second (``SUCCESSES_EVERY_S``): with a thousand
customers a record flush touched hundreds of health rows that only moved a counter and a
timestamp, ~5 µs of the writer per delivery. A failure, an answer that disables, or a success
of an endpoint last seen failing is written with the next flush, as before (that endpoint's
delta only: a few failing customers do not bring the others' successes forward).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from postback.core.errors import StorageError
from postback.core.health import (
    Change,
    HealthDelta,
    HealthRules,
    HealthState,
    decide,
    immediate_disable_reason,
    iso,
    parse_control,
)
from postback.core.lifecycle import Settlement
from postback.core.model import ClaimedDelivery, DeliveryState
from postback.core.outcome import AttemptResult
from postback.observe.metrics import Metrics
from postback.store.base import Storage

log = logging.getLogger("postback.dispatch.health")

ACCOUNT_RULES_TTL_S = 60.0
SUCCESSES_EVERY_S = 1.0


OperationalEvent = tuple[str, dict[str, Any]]
"""(event type, data) of an operational webhook (``postback.ingest.operations``)."""
Announce = Callable[[list[OperationalEvent]], Awaitable[object]]


class HealthKeeper:
    """Per-endpoint deltas since the last flush, and the decisions taken at each flush."""

    def __init__(
        self,
        storage: Storage,
        metrics: Metrics,
        *,
        rules: HealthRules | None = None,
        announce: Announce | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.metrics = metrics
        self.rules = rules or HealthRules()
        self.announce = announce
        self.clock = clock
        self._deltas: dict[str, HealthDelta] = {}
        self._accounts: dict[str, str] = {}
        self._account_rules: dict[str, tuple[float, HealthRules]] = {}
        self._dead: list[OperationalEvent] = []
        self._urgent: set[str] = set()
        """Endpoints whose delta may change their status: written with the next flush."""
        self._unhealthy: set[str] = set()
        """Endpoints whose health, as last written here, had a failure streak."""
        self._written_at = float("-inf")

    def observe(
        self,
        item: ClaimedDelivery,
        settlement: Settlement,
        result: AttemptResult,
        finished_ms: int,
    ) -> None:
        state = settlement.state
        if state is DeliveryState.DEAD:
            self._dead.append(
                (
                    "delivery.dead",
                    {
                        "account_id": item.account_id,
                        "endpoint_id": item.endpoint_id,
                        "delivery_id": item.delivery_id,
                        "message_id": item.message_id,
                        "event_type": item.event_type,
                        "reason": settlement.dead_reason or "",
                        "attempts": item.attempt_count + 1,
                        "last_status_code": result.status_code,
                    },
                )
            )
        delta = self._deltas.get(item.endpoint_id)
        if delta is None:
            delta = self._deltas[item.endpoint_id] = HealthDelta()
            self._accounts[item.endpoint_id] = item.account_id
        control = parse_control(result.control)
        # An aborted message is a deliberate answer from a live receiver, not a failure.
        succeeded = state is DeliveryState.DELIVERED or state is DeliveryState.ABORTED
        disable_reason = immediate_disable_reason(result.status_code, control)
        if not succeeded or disable_reason is not None or item.endpoint_id in self._unhealthy:
            self._urgent.add(item.endpoint_id)
        delta.observe(
            succeeded=succeeded,
            dead=state is DeliveryState.DEAD,
            at_ms=finished_ms,
            duration_ms=result.duration_ms,
            disable_reason=disable_reason,
        )

    async def flush(self, *, force: bool = False) -> float | None:
        """Write the deltas; on a storage error keep them for the next flush.

        Returns None, or the seconds after which successes held back (not ``force``) are due:
        the caller must flush again by then."""
        if self._dead:
            dead, self._dead = self._dead, []
            await self._announce(dead)
        if not self._deltas:
            return None
        wait_s = self._written_at + SUCCESSES_EVERY_S - self.clock()
        if wait_s <= 0 or force:
            self._written_at = self.clock()
            everything, self._deltas = self._deltas, {}
            await self._write(everything)
            return SUCCESSES_EVERY_S if self._deltas else None  # kept after a storage error
        if self._urgent:
            urgent = {e: self._deltas.pop(e) for e in self._urgent if e in self._deltas}
            await self._write(urgent)
        return wait_s if self._deltas else None

    async def _write(self, deltas: dict[str, HealthDelta]) -> None:
        """Write ``deltas`` (taken out of ``self._deltas``); on a storage error put them back."""
        self._urgent.difference_update(deltas)
        accounts = {e: self._accounts.pop(e) for e in deltas}
        now_ms = int(self.clock() * 1000)
        try:
            rules = {e: await self._rules_for(accounts[e], now_ms) for e in deltas}

            def update(
                before: HealthState,
            ) -> tuple[HealthState, tuple[list[Change], str | None, HealthState]]:
                e = before.endpoint_id
                after, changes, reason = decide(before, deltas[e], rules[e], now_ms)
                return after, (changes, reason, after)

            decided = await self.storage.update_health(list(deltas), update)
        except StorageError as exc:
            log.warning("endpoint health not recorded yet (%s); will retry", exc)
            for endpoint_id, delta in deltas.items():
                self._deltas.setdefault(endpoint_id, delta)  # newer ones are lost: counts only
                self._accounts.setdefault(endpoint_id, accounts[endpoint_id])
                self._urgent.add(endpoint_id)
            return
        events: list[OperationalEvent] = []
        for endpoint_id, (changes, reason, health) in decided.items():
            if health.consecutive_failures:
                self._unhealthy.add(endpoint_id)
            else:
                self._unhealthy.discard(endpoint_id)
            for change in changes:
                event = await self._act(
                    change, endpoint_id, accounts[endpoint_id], reason, health, now_ms
                )
                if event is not None:
                    events.append(event)
        await self._announce(events)

    async def _announce(self, events: list[OperationalEvent]) -> None:
        if not events or self.announce is None:
            return
        try:
            await self.announce(events)
        except Exception:
            # The log lines and metrics above stand; an operator endpoint can be replayed to.
            log.exception("could not send %d operational events", len(events))

    async def _act(
        self,
        change: Change,
        endpoint_id: str,
        account_id: str,
        reason: str | None,
        health: HealthState,
        now_ms: int,
    ) -> OperationalEvent | None:
        fields = {
            "event": f"endpoint_{change.value}",
            "endpoint_id": endpoint_id,
            "account_id": account_id,
            "consecutive_failures": health.consecutive_failures,
        }
        if change is Change.DISABLED:
            try:
                disabled_account = await self.storage.disable_endpoint(
                    endpoint_id, reason or "", now_ms
                )
            except StorageError as exc:
                log.warning("could not disable endpoint %s (%s)", endpoint_id, exc)
                return None
            if disabled_account is None:
                return None  # deleted or disabled meanwhile: nothing to announce
            log.info("endpoint disabled: %s", reason, extra={**fields, "reason": reason})
        elif change is Change.FAILING:
            log.info(
                "endpoint failing: %d consecutive failed attempts",
                health.consecutive_failures,
                extra=fields,
            )
        else:
            log.info("endpoint recovered", extra=fields)
        self.metrics.endpoint_change(change.value)
        data: dict[str, Any] = {"account_id": account_id, "endpoint_id": endpoint_id}
        if change is Change.DISABLED:
            data.update(
                reason=reason or "",
                disabled_at=iso(now_ms),
                failing_since=iso(health.failing_since),
                consecutive_failures=health.consecutive_failures,
            )
        elif change is Change.FAILING:
            data.update(
                consecutive_failures=health.consecutive_failures,
                failing_since=iso(health.failing_since or now_ms),
                last_success_at=iso(health.last_success_at),
            )
        else:
            data.update(last_success_at=iso(health.last_success_at))
        return f"endpoint.{change.value}", data

    async def _rules_for(self, account_id: str, now_ms: int) -> HealthRules:
        cached = self._account_rules.get(account_id)
        if cached is not None and now_ms / 1000 - cached[0] < ACCOUNT_RULES_TTL_S:
            return cached[1]
        seconds = await self.storage.account_disable_after(account_id)
        rules = self.rules
        if seconds is not None:
            rules = HealthRules(
                disable_after_ms=seconds * 1000,
                dead_limit=self.rules.dead_limit,
                failing_after=self.rules.failing_after,
            )
        self._account_rules[account_id] = (now_ms / 1000, rules)
        return rules
