"""The storage interface: every durable operation Postback performs, and nothing else.

Adapters translate these calls into SQL for one engine; they make no policy decisions
(retry timing, classification and fan-out rules come in from the caller or are plain SQL
filters). Driver exceptions are translated into the types below at the seam.

    StorageError            any storage failure (see the tree in ``postback.core.errors``)
    +-- SchemaMismatch      the database was not migrated, or was migrated by a newer Postback
    +-- StorageUnavailable  the database cannot be reached right now; try again later
        +-- StorageFull     the disk is full (SQLITE_FULL, PostgreSQL disk_full)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Protocol, TypeVar

from postback.core.errors import SchemaMismatch, StorageError, StorageFull, StorageUnavailable
from postback.core.health import Backlog, EndpointBacklog, HealthState
from postback.core.model import (
    Account,
    AccountActivity,
    ActivityPoint,
    ApiKey,
    Attempt,
    AttemptRecord,
    BatchRecord,
    ClaimedDelivery,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointHealth,
    EventTypeDefinition,
    IngestResult,
    LeaseOffer,
    LiveTotals,
    Message,
    NewMessage,
    RecipientStatus,
    SigningSecret,
)
from postback.core.throttle import Pacing

T = TypeVar("T")

__all__ = ["SchemaMismatch", "Storage", "StorageError", "StorageFull", "StorageUnavailable"]


class Storage(Protocol):
    async def open(self, *, migrate: bool = True) -> None:
        """Connect; apply pending migrations when ``migrate`` (else refuse an old schema)."""

    async def close(self) -> None: ...

    def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when another process stores due work (a no-op where polling suffices)."""

    # Accounts and API keys (keys are kept as hashes; ``ApiKey`` never holds the key)
    async def create_account(
        self, account: Account, key: ApiKey | None = None, key_hash: str | None = None
    ) -> bool:
        """Store the account (and its first key, if given) in one transaction; False, and
        nothing stored, when another account already has its ``external_id``."""

    async def account(self, ref: str) -> Account | None:
        """The account whose id, or else whose ``external_id``, is ``ref``."""

    async def list_accounts(
        self, *, query: str | None, after: str | None, limit: int
    ) -> list[Account]:
        """By id; ``query`` (lowercase) is part of the name or of the external id."""

    async def create_api_key(self, key: ApiKey, key_hash: str) -> None: ...
    async def live_key(self, key_hash: str, now: int) -> tuple[ApiKey, Account | None] | None:
        """The key with this hash if it works at ``now``, with its account (None: platform)."""

    async def get_api_key(self, key_id: str) -> ApiKey | None: ...
    async def list_api_keys(
        self, account_id: str | None, *, after: str | None, limit: int
    ) -> list[ApiKey]:
        """Every key (``account_id`` None) or one account's, revoked ones included, by id."""

    async def revoke_api_key(self, key_id: str, at: int) -> bool:
        """The key stops working at ``at``; False when it is unknown or already stops earlier."""

    async def rotate_api_key(
        self, key_id: str, new: ApiKey, new_hash: str, old_revoked_at: int
    ) -> bool:
        """Store ``new`` and revoke ``key_id`` at ``old_revoked_at``, in one transaction;
        False, and nothing stored, when ``key_id`` is unknown or already revoked."""

    # Endpoints
    async def create_endpoint(self, endpoint: Endpoint, secret: SigningSecret) -> None: ...
    async def get_endpoint(self, account_id: str | None, endpoint_id: str) -> Endpoint | None:
        """One live endpoint; ``account_id`` None only for the dispatcher."""

    async def list_endpoints(
        self, account_id: str, *, after: str | None, limit: int
    ) -> list[Endpoint]: ...
    async def update_endpoint(self, endpoint: Endpoint) -> bool: ...
    async def delete_endpoint(self, account_id: str, endpoint_id: str, now: int) -> bool:
        """Remove an endpoint; its undelivered deliveries become dead ("endpoint deleted")."""

    async def callback_endpoint(
        self, account_id: str, url: str, template: Endpoint, secret: SigningSecret
    ) -> Endpoint:
        """The account's endpoint for a per-message ``callback_url``, created on first use."""

    async def signing_secrets(self, endpoint_id: str, now: int) -> list[SigningSecret]:
        """Secrets that sign right now, newest first."""

    async def rotate_secret(
        self, account_id: str, endpoint_id: str, new: SigningSecret, old_expires_at: int
    ) -> bool: ...

    # Messages and deliveries
    async def ingest(
        self,
        account_id: str,
        messages: list[NewMessage],
        now: int,
        idempotency_window_ms: int,
        *,
        lease: LeaseOffer | None = None,
    ) -> list[IngestResult]:
        """Store messages and their deliveries in one transaction, committed on return.

        With ``lease``, deliveries the local dispatcher can take at once (see
        ``core.fanout.lease_counts``) are committed already leased and returned in ``leased``.
        """

    async def get_message(self, account_id: str, message_id: str) -> Message | None: ...
    async def get_delivery(self, account_id: str, delivery_id: str) -> Delivery | None: ...
    async def list_deliveries(
        self,
        account_id: str,
        *,
        message_id: str | None = None,
        state: DeliveryState | None = None,
        endpoint_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
        after: str | None = None,
        limit: int = 100,
        event_type: str | None = None,
        batch_id: str | None = None,
        recipient: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Delivery]:
        """Newest first; ``after`` is the last id of the previous page. ``batch_id`` and
        ``recipient`` match batch delivery reports (their ordering key); ``idempotency_key``
        finds messages for as long as their keys are kept."""

    async def list_attempts(
        self, account_id: str, delivery_id: str, *, after: str | None, limit: int
    ) -> list[Attempt]: ...

    # Dispatch
    async def claim(
        self,
        now: int,
        limit: int,
        lease_ms: int,
        *,
        exclude_endpoints: Collection[str] = (),
        allowance: Mapping[str, int] | None = None,
        per_endpoint: int = 1_000_000,
        own_in_flight: Mapping[str, int] | None = None,
        prefetch: int = 0,
        reserves: Mapping[str, int] | None = None,
        holder: str = "",
        own_sending: Mapping[str, int] | None = None,
    ) -> list[ClaimedDelivery]:
        """Move up to ``limit`` due deliveries to ``delivering`` under a lease held by
        ``holder``.

        Endpoint by endpoint (those with due work, oldest first), as many as
        ``core.fanout.fleet_room`` allows: ``allowance[endpoint]`` (else ``per_endpoint`` plus
        the reserve) while no other holder has any of it in flight, else at most the caller's
        part of the share (``per_endpoint`` split among the holders) plus its reserve
        (``reserves[endpoint]``, else ``prefetch``), minus what the caller still sends or
        holds ready of its own part of what the store counts in flight
        (``own_sending[endpoint]``, else ``own_in_flight[endpoint]``). None for
        ``exclude_endpoints``, disabled or 429-paused ones; each delivery carries how many
        holders its endpoint has. The cost never grows with rows that cannot be taken.
        """

    async def record(self, records: list[AttemptRecord]) -> None:
        """Store finished attempts and their deliveries' new states, in one transaction."""

    async def release(self, delivery_ids: Collection[str], due_at: int) -> None:
        """Hand claimed deliveries back unattempted, due at ``due_at`` (shutdown, a pause)."""

    async def pace(self, endpoint_id: str, update: Callable[[Pacing], tuple[Pacing, T]]) -> T:
        """Apply ``update`` to the endpoint's shared pacing state atomically, across processes."""

    async def expire_leases(self, now: int) -> int:
        """Deliveries whose worker vanished become claimable again; returns how many."""

    async def renew_leases(self, delivery_ids: Collection[str], lease_until: int) -> None:
        """Extend the leases of deliveries a live worker still holds (those still
        ``delivering``), so leases can be short: a dead worker's work waits only that long."""

    async def next_due_at(self, exclude_endpoints: Collection[str] = ()) -> int | None:
        """When the next claim could find work (to sleep exactly until then)."""

    async def replay(
        self,
        account_id: str,
        now: int,
        *,
        delivery_id: str | None = None,
        endpoint_id: str | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> list[str]:
        """Dead deliveries back to pending, due now; returns their ids."""

    async def purge(self, before: int, limit: int) -> int:
        """Delete up to ``limit`` finished messages created before ``before`` (with their
        deliveries and attempts) in one short transaction; returns how many messages went."""

    async def create_event_type(self, account_id: str, definition: EventTypeDefinition) -> bool:
        """Register a custom event type; False when the account already has one by that name."""

    async def event_types(self, account_id: str) -> list[EventTypeDefinition]: ...
    async def event_type(self, account_id: str, name: str) -> EventTypeDefinition | None: ...

    async def update_batch(
        self,
        account_id: str,
        batch: BatchRecord,
        recipients: list[str],
        updates: list[RecipientStatus],
    ) -> tuple[BatchRecord, dict[str, tuple[str | None, int | None]]]:
        """Create the batch on first use (later calls keep its settings), add recipients,
        apply status updates in order; return the batch as stored and every recipient's
        latest (status, code), None for recipients not heard of yet."""

    async def batch_statuses(
        self, account_id: str, batch_id: str
    ) -> tuple[BatchRecord, dict[str, tuple[str | None, int | None]]] | None: ...

    async def mark_batch_reported(self, account_id: str, batch_id: str) -> bool:
        """waiting -> sent; False when another process got there first."""

    async def due_batch_reports(self, now: int, limit: int) -> list[tuple[str, str]]:
        """(account_id, batch_id) of batches whose report deadline passed unreported."""

    async def count_by_state(self, account_id: str | None) -> dict[str, int]: ...

    # What the operator dashboard and the customer portal show (postback/ui)
    async def account_activity(
        self, since: int, limit: int, account_id: str | None = None
    ) -> list[AccountActivity]:
        """Accounts with the most backlog + dead letters first; attempts counted since ``since``."""

    async def endpoint_health(
        self, since: int, now: int, limit: int, account_id: str | None = None
    ) -> list[EndpointHealth]:
        """Live endpoints with the most failed attempts since ``since`` first."""

    async def live_totals(self, since: int) -> LiveTotals:
        """Pending and in-flight deliveries of every account, attempts since ``since``."""

    async def dead_letters(
        self, *, before: str | None, limit: int, account_id: str | None = None
    ) -> list[Delivery]:
        """Dead deliveries across accounts (or of one), newest first."""

    async def endpoint_activity(
        self, endpoint_id: str, since: int, bucket_ms: int
    ) -> list[ActivityPoint]:
        """Attempts and failures per ``bucket_ms`` since ``since``; empty buckets are absent."""

    # Operations: backlog, endpoint health, auto-disable, readiness
    async def backlog(self, now: int) -> Backlog:
        """Deliveries by state, fleet-wide (for the gauges; read periodically, not per request)."""

    async def busiest_endpoints(self, now: int, limit: int) -> list[EndpointBacklog]:
        """The ``limit`` endpoints with the most pending deliveries."""

    async def failing_endpoints(self, limit: int) -> list[tuple[str, int]]:
        """(endpoint_id, consecutive failures) of the ``limit`` endpoints failing longest."""

    async def endpoint_backlog(
        self, endpoint_ids: Collection[str], now: int
    ) -> dict[str, Backlog]: ...
    async def health_states(self, endpoint_ids: Collection[str]) -> dict[str, HealthState]:
        """Stored health of these endpoints (absent: never attempted)."""

    async def update_health(
        self,
        endpoint_ids: Collection[str],
        update: Callable[[HealthState], tuple[HealthState, T]],
    ) -> dict[str, T]:
        """Apply ``update`` to each endpoint's health row (created empty on first use) in one
        transaction, rows locked, so concurrent workers' flushes apply one after the other."""

    async def disable_endpoint(self, endpoint_id: str, reason: str, now: int) -> str | None:
        """Disable an enabled endpoint and turn its pending deliveries dead ("endpoint
        disabled: <reason>", replayable). Returns its account id, None if it was not enabled."""

    async def account_disable_after(self, account_id: str) -> int | None:
        """The account's auto-disable period in seconds (None: the process default)."""

    async def set_account_disable_after(self, account_id: str, seconds: int | None) -> bool:
        """False when there is no such account."""

    async def replay_dead_since(self, endpoint_id: str, dead_since: int, now: int) -> list[str]:
        """The endpoint's deliveries that went dead at or after ``dead_since``, pending again."""

    async def probe(self, now: int) -> None:
        """One small write: raises unless the database is reachable and writable."""
