"""Endpoint health as the API shows it, and re-enabling a disabled endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from postback.core.health import Backlog, HealthState
from postback.core.model import Endpoint
from postback.ingest.context import IngestContext
from postback.ingest.endpoints import EndpointService


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    """One endpoint's stored health and its backlog right now."""

    endpoint: Endpoint
    health: HealthState
    backlog: Backlog
    now_ms: int


class EndpointHealthService:
    def __init__(self, context: IngestContext, endpoints: EndpointService) -> None:
        self.context = context
        self.endpoints = endpoints

    async def probe(self, now_ms: int) -> None:
        """One small write: raises unless the database is reachable and writable (readiness)."""
        await self.context.storage.probe(now_ms)

    async def report(self, account_id: str, endpoint_id: str) -> HealthReport:
        endpoint = await self.endpoints.get(account_id, endpoint_id)
        return (await self.reports([endpoint]))[endpoint.id]

    async def reports(self, endpoints: Sequence[Endpoint]) -> dict[str, HealthReport]:
        """Reports for a page of endpoints: two queries, whatever the page size."""
        if not endpoints:
            return {}
        ids = [e.id for e in endpoints]
        now = self.context.now_ms()
        health = await self.context.storage.health_states(ids)
        backlog = await self.context.storage.endpoint_backlog(ids, now)
        return {
            e.id: HealthReport(
                endpoint=e,
                health=health.get(e.id) or HealthState(endpoint_id=e.id),
                backlog=backlog.get(e.id) or Backlog(),
                now_ms=now,
            )
            for e in endpoints
        }

    async def enable(
        self, account_id: str, endpoint_id: str, *, replay: bool = False
    ) -> tuple[Endpoint, list[str]]:
        """Enable a disabled endpoint with a fresh failure streak; with ``replay``, also send
        again what was held or died since the streak that disabled it began."""
        endpoint = await self.endpoints.get(account_id, endpoint_id)
        health = (await self.context.storage.health_states([endpoint_id])).get(endpoint_id)
        endpoint = await self.endpoints.set_enabled(endpoint)
        replayed: list[str] = []
        if replay and health is not None:
            since = health.failing_since or health.disabled_at
            if since is not None:
                replayed = await self.context.storage.replay_dead_since(
                    endpoint_id, since, self.context.now_ms()
                )
                self.context.woke()
        return endpoint, replayed
