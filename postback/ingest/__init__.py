"""Domain operations the API and the CLI call: accounts, keys, endpoints, messages, event types,
batches.

Nothing here speaks HTTP or holds a database driver; storage is reached through
``postback.store.base.Storage``. Build every service of a process at once with ``Services.build``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postback.core.model import MessageSubmission
from postback.core.netguard import Network
from postback.ingest.accounts import AccountService
from postback.ingest.activity import ActivityReports
from postback.ingest.batches import BatchReports
from postback.ingest.context import IngestContext, LocalDispatcher
from postback.ingest.deliveries import DeliveryLog
from postback.ingest.endpoints import EndpointService
from postback.ingest.event_types import EventTypeRegistry
from postback.ingest.health import EndpointHealthService
from postback.ingest.keys import KeyService
from postback.ingest.messages import MessageService
from postback.ingest.operations import OperationalWebhooks
from postback.observe.metrics import Metrics
from postback.store.base import Storage

__all__ = ["MessageSubmission", "Services"]


@dataclass(frozen=True, slots=True)
class Services:
    """One instance of each domain service over one store."""

    context: IngestContext
    accounts: AccountService
    keys: KeyService
    endpoints: EndpointService
    event_types: EventTypeRegistry
    messages: MessageService
    deliveries: DeliveryLog
    batches: BatchReports
    activity: ActivityReports
    health: EndpointHealthService
    operations: OperationalWebhooks

    @property
    def storage(self) -> Storage:
        return self.context.storage

    @property
    def metrics(self) -> Metrics:
        return self.context.metrics

    @classmethod
    def build(
        cls,
        storage: Storage,
        *,
        on_ingest: Callable[[], None] | None = None,
        dispatcher: LocalDispatcher | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        allowed_networks: Sequence[Network] = (),
        guard_destinations: bool = True,
    ) -> Services:
        context = IngestContext(
            storage=storage,
            clock=clock,
            metrics=metrics or Metrics(),
            on_ingest=on_ingest,
            dispatcher=dispatcher,
            allowed_networks=tuple(allowed_networks),
            guard_destinations=guard_destinations,
        )
        endpoints = EndpointService(context)
        event_types = EventTypeRegistry(context)
        messages = MessageService(context, event_types, endpoints)
        operations = OperationalWebhooks(context, endpoints, messages)
        context.announce = operations.announce_many
        return cls(
            context=context,
            accounts=AccountService(context),
            keys=KeyService(context),
            endpoints=endpoints,
            event_types=event_types,
            messages=messages,
            deliveries=DeliveryLog(context),
            batches=BatchReports(context, messages),
            activity=ActivityReports(context, endpoints, messages),
            health=EndpointHealthService(context, endpoints),
            operations=operations,
        )
