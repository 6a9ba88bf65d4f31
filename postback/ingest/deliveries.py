"""The delivery log an account reads: deliveries, their attempts, filters and pages."""

from __future__ import annotations

from postback.core.errors import NotFound
from postback.core.model import Attempt, Delivery, DeliveryState
from postback.ingest.context import IngestContext


class DeliveryLog:
    def __init__(self, context: IngestContext) -> None:
        self.context = context

    async def page(
        self,
        account_id: str,
        *,
        state: DeliveryState | None = None,
        endpoint_id: str | None = None,
        message_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        after: str | None = None,
        limit: int = 100,
        event_type: str | None = None,
        batch_id: str | None = None,
        recipient: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Delivery]:
        """Newest first; ``after`` is the last id of the previous page.

        ``batch_id`` and ``recipient`` find batch delivery reports by scanning the account's
        deliveries (no index); ``idempotency_key`` works while keys are kept (24 h).
        """
        return await self.context.storage.list_deliveries(
            account_id,
            state=state,
            endpoint_id=endpoint_id,
            message_id=message_id,
            since=since,
            until=until,
            after=after,
            limit=limit,
            event_type=event_type,
            batch_id=batch_id,
            recipient=recipient,
            idempotency_key=idempotency_key,
        )

    async def get(self, account_id: str, delivery_id: str) -> Delivery:
        delivery = await self.context.storage.get_delivery(account_id, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id}")
        return delivery

    async def attempts(
        self, account_id: str, delivery_id: str, *, after: str | None, limit: int
    ) -> list[Attempt]:
        await self.get(account_id, delivery_id)
        return await self.context.storage.list_attempts(
            account_id, delivery_id, after=after, limit=limit
        )
