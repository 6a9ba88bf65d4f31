"""Messages: validated, then stored with their deliveries in one transaction; replay of dead ones."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar, cast

from postback.core.errors import Conflict, IdempotencyConflict, InvalidInput, NotFound
from postback.core.fanout import known_targets
from postback.core.idempotency import request_fingerprint
from postback.core.model import (
    Delivery,
    DeliveryState,
    Endpoint,
    IngestResult,
    Message,
    MessageSubmission,
    NewMessage,
    SigningSecret,
)
from postback.core.payloads import PayloadInvalid, PayloadValidator
from postback.core.validation import (
    MAX_BATCH,
    MAX_PAYLOAD_BYTES,
    check_event_type,
    check_url,
    new_signing_secret,
)
from postback.ingest.context import IngestContext
from postback.ingest.endpoints import EndpointService
from postback.ingest.event_types import EventTypeRegistry

IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000
T = TypeVar("T")

CALLBACK_ENDPOINT_TTL_S = 10.0
"""How long a callback URL's endpoint id is reused without asking the store again."""


def _item_path(field_prefix: str, index: int) -> str:
    """Where a batch item's fields are named in errors: ``$[3].`` (nothing for one message)."""
    return f"{field_prefix}[{index}]." if field_prefix else ""


async def _every(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Await all at once; if any failed, raise the first failure in their order (the first
    message's), after all have ended, so none is left running unobserved."""
    outcomes = await asyncio.gather(*awaitables, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return cast(list[T], outcomes)


class MessageService:
    def __init__(
        self, context: IngestContext, event_types: EventTypeRegistry, endpoints: EndpointService
    ) -> None:
        self.context = context
        self.event_types = event_types
        self.endpoints = endpoints
        self._callback_ids: dict[tuple[str, str], tuple[str, float]] = {}
        self._callback_creating: dict[tuple[str, str], asyncio.Task[str]] = {}
        """Callback URLs whose endpoint is being looked up or created: concurrent batches
        naming the same new URL wait for one write, not one each."""
        self._valid_urls: set[str] = set()
        """Callback URLs ``check_url`` accepted: a platform's batches name the same customer
        URLs over and over, and parsing each again was 8 % of the event loop (1,000 URLs)."""

    async def submit(
        self, account_id: str, submissions: list[MessageSubmission], *, field_prefix: str = ""
    ) -> list[IngestResult]:
        """Validate every message first (all or nothing), then store them in one transaction."""
        return await self.submit_many(
            [(account_id, sub) for sub in submissions], field_prefix=field_prefix
        )

    async def submit_many(
        self, items: list[tuple[str, MessageSubmission]], *, field_prefix: str = ""
    ) -> list[IngestResult]:
        """Messages for one or many accounts (a platform's batch), answered in input order.

        Every message is validated before anything is stored; then each account's messages are
        stored in one transaction (a batch spanning accounts is one transaction per account).
        """
        if len(items) > MAX_BATCH:
            raise InvalidInput(field_prefix or "$", f"at most {MAX_BATCH} messages per batch")
        for i, (account_id, sub) in enumerate(items):
            at = _item_path(field_prefix, i)
            validator = self.event_types.cached_validator(account_id, sub.event_type)
            if validator is None or sub.target_endpoint_id is not None:
                await self._check(account_id, sub, at)
            else:
                # The usual case, without a coroutine per message: a platform's batches name
                # the same few event types, whose validators are compiled already.
                self._check_shape(sub, at)
                self._check_content(validator, sub, at)
        callback_endpoints = await self._callback_endpoints(items, field_prefix)
        by_account: dict[str, list[tuple[int, NewMessage]]] = {}
        for i, (account_id, sub) in enumerate(items):
            by_account.setdefault(account_id, []).append(
                (
                    i,
                    NewMessage(
                        id=self.context.new_id("msg"),
                        event_type=sub.event_type,
                        payload=sub.payload,
                        idempotency_key=sub.idempotency_key,
                        callback_endpoint_id=sub.target_endpoint_id
                        or callback_endpoints.get((account_id, sub.callback_url or "")),
                        fanout=sub.fanout,
                        ordering_key=sub.ordering_key,
                        fingerprint=(
                            request_fingerprint(
                                sub.event_type, sub.payload, sub.callback_url, sub.fanout
                            )
                            if sub.idempotency_key is not None and sub.refuse_reuse
                            else None
                        ),
                    ),
                )
            )
        results: list[IngestResult | None] = [None] * len(items)
        for account_id, numbered in by_account.items():
            dispatcher = self.context.dispatcher
            messages = [m for _, m in numbered]
            try:
                stored = await self.context.storage.ingest(
                    account_id,
                    messages,
                    self.context.now_ms(),
                    IDEMPOTENCY_WINDOW_MS,
                    lease=(
                        dispatcher.lease_offer(known_targets(messages), account_id=account_id)
                        if dispatcher is not None
                        else None
                    ),
                )
            except IdempotencyConflict as exc:
                i = numbered[exc.index][0]  # the position in the whole batch
                at = _item_path(field_prefix, i)
                raise IdempotencyConflict(exc.key, i, f"{at}idempotency_key") from None
            for (i, _), result in zip(numbered, stored, strict=True):
                results[i] = result
            self.context.metrics.ingested(sum(not r.duplicate for r in stored))
            if dispatcher is not None:
                leased = [item for r in stored for item in r.leased]
                if leased:
                    dispatcher.accept(leased)
            if any(len(r.leased) < len(r.deliveries) for r in stored if not r.duplicate):
                self.context.woke()
        return [r for r in results if r is not None]

    async def _check(self, account_id: str, sub: MessageSubmission, at: str) -> None:
        self._check_shape(sub, at)
        validator = await self.event_types.validator(account_id, sub.event_type, f"{at}event_type")
        self._check_content(validator, sub, at)
        if sub.target_endpoint_id is not None:
            await self.endpoints.get(account_id, sub.target_endpoint_id)

    def _check_shape(self, sub: MessageSubmission, at: str) -> None:
        check_event_type(sub.event_type, f"{at}event_type")
        if len(sub.payload) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(f"{at}payload", f"payload exceeds {MAX_PAYLOAD_BYTES} bytes")
        if not sub.payload.lstrip()[:1] == b"{":
            raise InvalidInput(f"{at}payload", "payload must be a JSON object")

    def _check_content(self, validator: PayloadValidator, sub: MessageSubmission, at: str) -> None:
        try:
            validator.check(sub.payload)
        except PayloadInvalid as exc:
            raise InvalidInput(
                f"{at}payload{exc.path[1:]}",
                f"payload does not match event type {sub.event_type}: {exc.message} "
                f"(rule: {exc.rule})",
            ) from None
        if sub.idempotency_key is not None and not 1 <= len(sub.idempotency_key) <= 255:
            raise InvalidInput(f"{at}idempotency_key", "idempotency_key must be 1-255 chars")
        if sub.callback_url is not None and sub.callback_url not in self._valid_urls:
            check_url(sub.callback_url, f"{at}callback_url")
            if len(self._valid_urls) >= 100_000:
                self._valid_urls.clear()
            self._valid_urls.add(sub.callback_url)

    async def _callback_endpoints(
        self, items: list[tuple[str, MessageSubmission]], field_prefix: str
    ) -> dict[tuple[str, str], str]:
        """The endpoint id of every callback URL the messages name (account, URL).

        A per-message callback URL gets an endpoint of its own with the account defaults. Its
        id is remembered for a few seconds: a platform sending thousands of messages to the
        same customer URLs would otherwise write (and probe DNS) once per URL per batch. The
        new URLs of a batch are checked all at once, and only then created, all at once: one
        after the other, a first batch naming 500 new customer URLs waited for 500 lookups
        and 500 commits in a row, and one URL the guard refuses now refuses the batch before
        any endpoint is created for it.
        """
        found: dict[tuple[str, str], str] = {}
        new: dict[tuple[str, str], str] = {}  # (account, URL) -> the field of its first message
        now_s = self.context.clock()
        for i, (account_id, sub) in enumerate(items):
            if sub.callback_url is None:
                continue
            key = (account_id, sub.callback_url)
            if key in found or key in new:
                continue
            known = self._callback_ids.get(key)
            if known is not None and known[1] > now_s:
                found[key] = known[0]
            else:
                new[key] = f"{_item_path(field_prefix, i)}callback_url"
        if not new:
            return found
        await _every(self.context.check_destination(url, field) for (_, url), field in new.items())
        created = await _every(asyncio.shield(self._creating(key)) for key in new)
        found.update(zip(new, created, strict=True))
        return found

    def _creating(self, key: tuple[str, str]) -> asyncio.Task[str]:
        """The one task that looks up or creates this callback URL's endpoint; it runs to its
        end even if the request that started it goes away, and remembers the id."""
        task = self._callback_creating.get(key)
        if task is None:
            task = asyncio.ensure_future(self._store_callback_endpoint(*key))
            self._callback_creating[key] = task
            task.add_done_callback(lambda done: self._created(key, done))
        return task

    def _created(self, key: tuple[str, str], task: asyncio.Task[str]) -> None:
        self._callback_creating.pop(key, None)
        if not task.cancelled():
            task.exception()  # its waiters raise it; retrieved here in case none is left

    async def _store_callback_endpoint(self, account_id: str, url: str) -> str:
        now = self.context.now_ms()
        template = Endpoint(
            id=self.context.new_id("ep"),
            account_id=account_id,
            url=url,
            description="created for a message's callback_url",
            event_types=(),
            is_callback_url=True,
            created_at=now,
            updated_at=now,
        )
        secret = SigningSecret(secret=new_signing_secret(), created_at=now)
        endpoint = await self.context.storage.callback_endpoint(account_id, url, template, secret)
        if len(self._callback_ids) >= 100_000:
            self._callback_ids.clear()
        self._callback_ids[account_id, url] = (
            endpoint.id,
            self.context.clock() + CALLBACK_ENDPOINT_TTL_S,
        )
        return endpoint.id

    async def get(self, account_id: str, message_id: str) -> tuple[Message, list[Delivery]]:
        message = await self.context.storage.get_message(account_id, message_id)
        if message is None:
            raise NotFound(f"no message {message_id}")
        deliveries = await self.context.storage.list_deliveries(
            account_id, message_id=message_id, limit=1000
        )
        return message, deliveries

    async def replay_delivery(self, account_id: str, delivery_id: str) -> str:
        delivery = await self.context.storage.get_delivery(account_id, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id}")
        if delivery.state is not DeliveryState.DEAD:
            raise Conflict(f"delivery {delivery_id} is {delivery.state}; only dead ones replay")
        replayed = await self.context.storage.replay(
            account_id, self.context.now_ms(), delivery_id=delivery_id
        )
        if not replayed:
            raise Conflict(f"delivery {delivery_id} cannot be replayed: its endpoint was deleted")
        self.context.woke()
        return replayed[0]

    async def replay(
        self,
        account_id: str,
        *,
        endpoint_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> list[str]:
        if endpoint_id is not None:
            await self.endpoints.get(account_id, endpoint_id)
        replayed = await self.context.storage.replay(
            account_id, self.context.now_ms(), endpoint_id=endpoint_id, since=since, until=until
        )
        if replayed:
            self.context.woke()
        return replayed
