"""The event-type registry: built-in types plus each account's own, with compiled validators."""

from __future__ import annotations

from typing import Any

import msgspec

from postback.core.errors import Conflict, InvalidInput
from postback.core.event_schemas import BUILT_IN_SCHEMAS
from postback.core.model import EventTypeDefinition
from postback.core.payloads import PayloadValidator, SchemaInvalid
from postback.core.validation import check_event_type
from postback.ingest.context import IngestContext


class EventTypeRegistry:
    def __init__(self, context: IngestContext) -> None:
        self.context = context
        # Event types never change once created, so compiled validators are kept for good.
        self._validators: dict[tuple[str, str], PayloadValidator] = {}

    async def create(
        self, account_id: str, name: str, schema: dict[str, Any], description: str = ""
    ) -> EventTypeDefinition:
        check_event_type(name, "name")
        if name in BUILT_IN_SCHEMAS:
            raise Conflict(f"{name} is a built-in event type")
        try:
            PayloadValidator(schema)
        except SchemaInvalid as exc:
            raise InvalidInput("schema", str(exc)) from None
        definition = EventTypeDefinition(
            name=name,
            schema=msgspec.json.encode(schema).decode(),
            description=description[:500],
            created_at=self.context.now_ms(),
        )
        if not await self.context.storage.create_event_type(account_id, definition):
            raise Conflict(f"event type {name} already exists (event types cannot be changed)")
        return definition

    async def all(self, account_id: str) -> list[EventTypeDefinition]:
        built_in = [
            EventTypeDefinition(
                name=name,
                schema=msgspec.json.encode(schema).decode(),
                description=str(schema.get("title", "")),
            )
            for name, schema in BUILT_IN_SCHEMAS.items()
        ]
        return built_in + await self.context.storage.event_types(account_id)

    def cached_validator(self, account_id: str, name: str) -> PayloadValidator | None:
        """The compiled schema if it is at hand (no coroutine, no read): see ``validator``."""
        return self._validators.get(("", name) if name in BUILT_IN_SCHEMAS else (account_id, name))

    async def validator(self, account_id: str, name: str, field: str) -> PayloadValidator:
        """The compiled schema of an event type this account may send; unknown types refused."""
        key = ("", name) if name in BUILT_IN_SCHEMAS else (account_id, name)
        validator = self._validators.get(key)
        if validator is None:
            if name in BUILT_IN_SCHEMAS:
                validator = PayloadValidator(BUILT_IN_SCHEMAS[name])
            else:
                definition = await self.context.storage.event_type(account_id, name)
                if definition is None:
                    raise InvalidInput(
                        field,
                        f"unknown event type {name!r}: register it with POST /v1/event-types "
                        "or use a built-in one (GET /v1/event-types)",
                    )
                validator = PayloadValidator(msgspec.json.decode(definition.schema))
            self._validators[key] = validator
        return validator
