"""Operational webhooks: Postback telling the platform's operators about itself.

The operator registers endpoints with the admin token (``/v1/operational-endpoints``). They
belong to one internal account, ``OPERATIONS_ACCOUNT_ID``, created on first use; an event is an
ordinary message of that account, so it is stored, signed, retried and dead-lettered by the
same engine as any callback. Events about the operations account itself are never announced
(a failing operator endpoint must not feed itself).

    delivery.dead        a delivery was dead-lettered
    endpoint.failing     an endpoint failed ``failing_after`` attempts in a row
    endpoint.recovered   a failing endpoint answered successfully again
    endpoint.disabled    an endpoint was disabled (410, 'webhook-delivery: disable', a long
                         failure, too many dead deliveries)
    endpoint.enabled     a disabled endpoint was enabled again
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import msgspec

from postback.core.errors import NotFound, StorageError
from postback.core.event_schemas import OPERATIONAL_SCHEMAS
from postback.core.health import iso
from postback.core.model import Account, Endpoint, MessageSubmission
from postback.core.validation import MAX_BATCH
from postback.core.wire import EndpointCreate
from postback.ingest.context import IngestContext
from postback.ingest.endpoints import EndpointService
from postback.ingest.messages import MessageService

log = logging.getLogger("postback.ingest.operations")

OPERATIONS_ACCOUNT_ID = "acc_postback_operations"
"""The internal account that owns the operational endpoints (it has no usable API key)."""

OPERATIONAL_EVENT_TYPES = tuple(OPERATIONAL_SCHEMAS)
ENDPOINTS_TTL_S = 10.0
"""How long "there are no operational endpoints" is believed before asking again."""

_encode = msgspec.json.Encoder().encode


def operational_payload(event_type: str, data: dict[str, Any], now_ms: int) -> bytes:
    """The JSON an operational endpoint receives (schemas in ``core/event_schemas.py``)."""
    return _encode({"type": event_type, "timestamp": iso(now_ms), "data": data})


class OperationalWebhooks:
    def __init__(
        self, context: IngestContext, endpoints: EndpointService, messages: MessageService
    ) -> None:
        self.context = context
        self.endpoints = endpoints
        self.messages = messages
        self._account_ready = False
        self._has_endpoints: tuple[float, bool] | None = None

    async def _ensure_account(self) -> None:
        if self._account_ready:
            return
        account = Account(
            id=OPERATIONS_ACCOUNT_ID, name="Postback operations", created_at=self.context.now_ms()
        )
        # No API key: the account is reached only through the admin token. A failure means
        # another process created it meanwhile.
        if await self.context.storage.account(OPERATIONS_ACCOUNT_ID) is None:
            with contextlib.suppress(StorageError):
                await self.context.storage.create_account(account)
        self._account_ready = True

    async def register(
        self, url: str, event_types: list[str] | None, description: str = ""
    ) -> tuple[Endpoint, str]:
        """An operator endpoint and its signing secret (shown once, like any endpoint's)."""
        await self._ensure_account()
        endpoint, secret = await self.endpoints.create(
            OPERATIONS_ACCOUNT_ID,
            EndpointCreate(url=url, description=description, event_types=event_types),
        )
        self._has_endpoints = None
        return endpoint, secret

    async def endpoints_page(self) -> list[Endpoint]:
        await self._ensure_account()
        return await self.endpoints.page(OPERATIONS_ACCOUNT_ID, None, 1000)

    async def get(self, endpoint_id: str) -> Endpoint:
        return await self.endpoints.get(OPERATIONS_ACCOUNT_ID, endpoint_id)

    async def delete(self, endpoint_id: str) -> None:
        await self.endpoints.delete(OPERATIONS_ACCOUNT_ID, endpoint_id)
        self._has_endpoints = None

    async def _anyone_listening(self) -> bool:
        now = self.context.clock()
        if self._has_endpoints is None or now - self._has_endpoints[0] > ENDPOINTS_TTL_S:
            listening = bool(
                await self.context.storage.list_endpoints(
                    OPERATIONS_ACCOUNT_ID, after=None, limit=1
                )
            )
            self._has_endpoints = (now, listening)
        return self._has_endpoints[1]

    async def announce_many(self, events: list[tuple[str, dict[str, Any]]]) -> int:
        """Send events to the operational endpoints in one transaction; returns how many were
        sent (none when no one listens; never those about the operations account itself)."""
        for event_type, _data in events:
            if event_type not in OPERATIONAL_SCHEMAS:
                raise NotFound(f"no operational event type {event_type}")
        wanted = [(t, d) for t, d in events if d.get("account_id") != OPERATIONS_ACCOUNT_ID]
        if not wanted or not await self._anyone_listening():
            return 0
        now = self.context.now_ms()
        sent = 0
        for start in range(0, len(wanted), MAX_BATCH):
            chunk = wanted[start : start + MAX_BATCH]
            await self.messages.submit(
                OPERATIONS_ACCOUNT_ID,
                [
                    MessageSubmission(event_type=t, payload=operational_payload(t, d, now))
                    for t, d in chunk
                ],
            )
            sent += len(chunk)
        return sent
