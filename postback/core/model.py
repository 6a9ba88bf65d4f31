"""The domain records that flow ingest -> store -> claim -> send -> record.

Plain frozen msgspec Structs: the storage adapters build them, the service and dispatcher read
them. Times are integer milliseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import enum
from typing import Literal

import msgspec

from postback.core.policy import RetryPolicy


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (first try or a scheduled retry)
    DELIVERING = "delivering"  # claimed by a dispatcher, under a lease
    DELIVERED = "delivered"
    DEAD = "dead"  # permanent failure or retries exhausted; replayable


class NoAuth(msgspec.Struct, frozen=True, tag="none", tag_field="type", forbid_unknown_fields=True):
    pass


class BasicAuth(
    msgspec.Struct, frozen=True, tag="basic", tag_field="type", forbid_unknown_fields=True
):
    username: str
    password: str


class BearerAuth(
    msgspec.Struct, frozen=True, tag="bearer", tag_field="type", forbid_unknown_fields=True
):
    """A static token sent as ``Authorization: Bearer`` (GOV.UK Notify's callback scheme)."""

    token: str


# New methods (OAuth 2.0, mutual TLS, SNS) join this union as further tagged Structs.
Auth = NoAuth | BasicAuth | BearerAuth


class Account(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    created_at: int


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account_id: str
    url: str
    description: str = ""
    event_types: tuple[str, ...] | None = None
    """Subscribed event types; None means every event type."""
    retry_policy: RetryPolicy | None = None
    timeout_ms: int | None = None
    rate_limit_per_s: float | None = None
    headers: dict[str, str] = {}
    auth: Auth | None = None
    disabled: bool = False
    is_callback_url: bool = False
    """Made for a message's ``callback_url``: receives only messages that name it."""
    created_at: int = 0
    updated_at: int = 0


class SigningSecret(msgspec.Struct, frozen=True, kw_only=True):
    secret: str
    created_at: int
    expires_at: int | None = None
    """When a rotated-out secret stops signing; None for the current one."""


class Message(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    account_id: str
    event_type: str
    payload: bytes
    """The exact JSON bytes submitted: stored, signed and sent unchanged."""
    idempotency_key: str | None = None
    created_at: int = 0


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    message_id: str
    account_id: str
    endpoint_id: str
    state: DeliveryState
    attempt_count: int = 0
    next_attempt_at: int | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    dead_reason: str | None = None
    created_at: int = 0
    updated_at: int = 0
    event_type: str = ""


AttemptOutcome = Literal["delivered", "retry", "throttled", "permanent"]


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    delivery_id: str
    attempt_number: int
    started_at: int
    duration_ms: float
    outcome: AttemptOutcome
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message to ingest, already validated; ``callback_endpoint_id`` adds a delivery."""

    id: str
    event_type: str
    payload: bytes
    idempotency_key: str | None = None
    callback_endpoint_id: str | None = None


class IngestResult(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    deliveries: list[Delivery]
    duplicate: bool = False
    """True when the idempotency key matched an earlier message: nothing was created."""


class ClaimedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    """What a dispatcher needs to make one attempt."""

    delivery_id: str
    message_id: str
    account_id: str
    endpoint_id: str
    endpoint_updated_at: int
    attempt_count: int
    schedule_base: int
    """``attempt_count`` at the last replay: the retry schedule restarts there."""
    event_type: str
    payload: bytes
    message_created_at: int
    paced: bool = False
    """The endpoint has shared pacing in force (a 429 backoff) beyond its own configuration."""


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One finished attempt and the delivery's resulting state, written together."""

    attempt: Attempt
    delivery_id: str
    state: DeliveryState
    next_attempt_at: int | None
    dead_reason: str | None
    now: int
