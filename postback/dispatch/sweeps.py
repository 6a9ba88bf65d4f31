"""The retention sweep: finished messages older than the retention period are deleted.

It deletes in small batches, each its own short transaction, so it never holds long locks
and a large backlog drains over several passes without stalling ingest or delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from postback.store.base import Storage, StorageError, StorageUnavailable

log = logging.getLogger("postback.dispatch.sweeps")

BATCH = 500
DAY_MS = 86_400_000


async def sweep_once(storage: Storage, retention_days: float, now_ms: int) -> int:
    """Delete everything that is past retention now; returns how many messages went."""
    before = now_ms - round(retention_days * DAY_MS)
    total = 0
    while True:
        deleted = await storage.purge(before, BATCH)
        total += deleted
        if deleted < BATCH:
            return total
        await asyncio.sleep(0)  # let the API and dispatcher in between batches


async def run_sweeper(
    storage: Storage,
    retention_days: float,
    stop: asyncio.Event,
    *,
    interval_s: float = 3600.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Sweep now and then every ``interval_s`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            deleted = await sweep_once(storage, retention_days, int(clock() * 1000))
            if deleted:
                log.info(
                    "retention: deleted %d messages older than %g days", deleted, retention_days
                )
        except (StorageUnavailable, StorageError) as exc:
            log.warning("retention sweep failed (%s); will try again", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
