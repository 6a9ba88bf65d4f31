"""The transport seam: one request in, one uninterpreted AttemptResult out.

A transport never raises for a failed attempt (refused, reset, timeout, any status code): it
reports what happened and the core decides what it means.
"""

from __future__ import annotations

import ssl
from typing import Protocol

import msgspec

from postback.core.model import SNSDestination
from postback.core.outcome import AttemptResult


class OutboundRequest(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    headers: dict[str, str]
    body: bytes
    timeout_s: float
    endpoint_id: str
    message_id: str = ""
    event_type: str = ""
    ssl_context: ssl.SSLContext | None = None
    """Client certificate and extra CAs for mutual TLS; None: the default verified context."""
    sns: SNSDestination | None = None
    """Set when the endpoint publishes to SNS instead of receiving a POST."""


class Transport(Protocol):
    async def send(self, request: OutboundRequest) -> AttemptResult: ...
    async def close(self) -> None: ...
