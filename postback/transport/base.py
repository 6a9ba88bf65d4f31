"""The transport seam: one request in, one uninterpreted AttemptResult out.

A transport never raises for a failed attempt (refused, reset, timeout, any status code): it
reports what happened and the core decides what it means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from postback.core.outcome import AttemptResult


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    timeout_s: float
    endpoint_id: str
    """Connections are pooled per endpoint: a TLS handshake costs ~10 keep-alive requests."""


class Transport(Protocol):
    async def send(self, request: OutboundRequest) -> AttemptResult: ...
    async def close(self) -> None: ...
