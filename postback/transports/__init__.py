"""Transports: how one attempt reaches a customer (HTTP today; SNS joins behind the same seam)."""

from __future__ import annotations

from postback.transports.base import OutboundRequest, Transport

__all__ = ["OutboundRequest", "Transport"]
