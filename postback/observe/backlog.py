"""The periodic query behind the database-wide gauges (backlog, oldest pending, top-N).

Run by every process that serves ``/metrics``: one cheap read per interval (each count walks a
partial index), never one per scrape or per delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from postback.core.errors import StorageError
from postback.core.health import Backlog, EndpointBacklog
from postback.observe.metrics import BacklogSnapshot, Metrics

log = logging.getLogger("postback.observe.backlog")


class BacklogSource(Protocol):
    """The three reads behind the gauges (``postback.store.base.Storage`` has them)."""

    async def backlog(self, now: int) -> Backlog: ...
    async def busiest_endpoints(self, now: int, limit: int) -> list[EndpointBacklog]: ...
    async def failing_endpoints(self, limit: int) -> list[tuple[str, int]]: ...


TOP_ENDPOINTS = 10
"""Per-endpoint series are kept for at most this many busiest plus this many failing endpoints:
at most 2 x TOP_ENDPOINTS ``endpoint_id`` values per series, whatever the fleet's size."""


async def poll_once(
    storage: BacklogSource, metrics: Metrics, *, top: int = TOP_ENDPOINTS, now_ms: int
) -> BacklogSnapshot:
    snapshot = BacklogSnapshot(
        backlog=await storage.backlog(now_ms),
        busiest=await storage.busiest_endpoints(now_ms, top) if top else [],
        failing=await storage.failing_endpoints(top) if top else [],
        now_ms=now_ms,
    )
    metrics.set_snapshot(snapshot)
    return snapshot


async def run_backlog_poller(
    storage: BacklogSource,
    metrics: Metrics,
    stop: asyncio.Event,
    *,
    interval_s: float = 15.0,
    top: int = TOP_ENDPOINTS,
    clock: Callable[[], float] = time.time,
) -> None:
    while not stop.is_set():
        try:
            await poll_once(storage, metrics, top=top, now_ms=int(clock() * 1000))
        except StorageError as exc:
            log.warning("backlog gauges not refreshed (%s); will try again", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
