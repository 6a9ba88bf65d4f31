"""What every domain operation needs: the store, the clock, ids, and the save-time SSRF probe."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from postback.core.errors import InvalidInput
from postback.core.ids import MonotonicIds
from postback.core.model import ClaimedDelivery, LeaseOffer
from postback.core.netguard import Network, blocked_reason, literal_address, resolved_blocked
from postback.observe.metrics import Metrics
from postback.store.base import Storage


class LocalDispatcher(Protocol):
    """The dispatcher in this process, for the fast path (``postback.dispatch.loop``)."""

    def lease_offer(
        self, endpoints: Collection[str] | None = None, *, account_id: str | None = None
    ) -> LeaseOffer | None: ...

    def accept(self, leased: list[ClaimedDelivery]) -> None: ...


@dataclass(slots=True, kw_only=True)
class IngestContext:
    """Shared by the services of one process; ``on_ingest`` wakes the local dispatcher."""

    storage: Storage
    clock: Callable[[], float] = time.time
    metrics: Metrics = field(default_factory=Metrics)
    on_ingest: Callable[[], None] | None = None
    dispatcher: LocalDispatcher | None = None
    """When set, new deliveries it has room for are committed leased to it and handed over."""
    allowed_networks: tuple[Network, ...] = ()
    guard_destinations: bool = True
    announce: Callable[[list[tuple[str, dict[str, Any]]]], Awaitable[object]] | None = None
    """Sends operational webhooks (set by ``Services.build``); None where there are none."""
    _ids: dict[str, MonotonicIds] = field(default_factory=dict, init=False, repr=False)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def new_id(self, prefix: str) -> str:
        """Time-ordered, and in creation order within a millisecond: the random part is
        drawn once a millisecond and incremented after (``MonotonicIds``), not a system call
        per id (a batch makes one per message)."""
        ids = self._ids.get(prefix)
        if ids is None:
            ids = self._ids[prefix] = MonotonicIds(prefix)
        return ids.next_from(self.now_ms(), os.urandom)

    def woke(self) -> None:
        if self.on_ingest is not None:
            self.on_ingest()

    async def check_destination(self, url: str, field: str) -> None:
        """The SSRF guard at save time: refuse a URL whose host is, or resolves to, a
        forbidden address (it is checked again at every connect)."""
        if not self.guard_destinations:
            return
        host = urlsplit(url).hostname or ""
        literal = literal_address(host)
        if literal is not None:
            reason = blocked_reason(literal, self.allowed_networks)
            if reason is not None:
                raise InvalidInput(field, f"{host}: {reason}")
            return
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM),
                timeout=3,
            )
        except (OSError, TimeoutError):
            return  # unresolvable now: the connect-time check still applies
        reason = resolved_blocked((str(info[4][0]) for info in infos), self.allowed_networks)
        if reason is not None:
            raise InvalidInput(field, f"{host}: {reason}")
