"""Request and response bodies of the HTTP API: what goes over the wire, in both directions.

The server (``postback.api``) decodes requests and encodes responses with these Structs; the
Python client (``postback.Client``) returns them; ``ingest`` takes the endpoint requests as
its input. They live in the core so the client needs nothing of the server's.
Responses never carry credentials: ``auth`` comes back as its type (and Basic username) only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from postback.core.health import LATENCY_BOUNDS_MS, WINDOW_MS, Backlog, HealthState
from postback.core.model import (
    Account,
    ApiKey,
    Attempt,
    Auth,
    ClientTLS,
    Delivery,
    Endpoint,
    EventTypeDefinition,
    SignatureScheme,
    SNSDestination,
)
from postback.core.policy import RetryPolicy
from postback.core.reports import MessageKind, RecipientUpdate, ReportMode

_UNSET = msgspec.UNSET

UnsetType = msgspec.UnsetType


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as RFC 3339 UTC with milliseconds, e.g. 2026-01-02T03:04:05.678Z."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def to_ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


class Request(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class AccountCreate(Request):
    name: str
    external_id: str | None = None
    """The platform's own id for this customer: unique, usable wherever the account id is."""
    create_key: bool = True
    """Also make an account key (a platform acting with its platform key needs none)."""


class AccountCreated(msgspec.Struct, kw_only=True):
    id: str
    name: str
    external_id: str | None
    api_key: str | None
    """Shown once: only its hash is stored. None when ``create_key`` was false."""
    created_at: str


class AccountOut(msgspec.Struct, kw_only=True):
    id: str
    name: str
    external_id: str | None
    created_at: str

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            name=account.name,
            external_id=account.external_id,
            created_at=iso(account.created_at) or "",
        )


class AccountPage(msgspec.Struct, kw_only=True):
    data: list[AccountOut]
    next_cursor: str | None


class KeyCreate(Request):
    platform: bool = False
    """A platform key acts on every account (admin token only)."""
    account: str | None = None
    """The account (id or external id) of an account key; an account key's own by default."""
    name: str = ""


class KeyRotate(Request):
    grace_s: int = 0
    """How long the old key keeps working (at most 7 days)."""


class KeyOut(msgspec.Struct, kw_only=True):
    """A key as listed: never the key itself, only how to recognise it."""

    id: str
    platform: bool
    account_id: str | None
    name: str
    prefix: str
    last4: str
    created_at: str
    revoked_at: str | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            platform=key.platform,
            account_id=key.account_id,
            name=key.name,
            prefix=key.prefix,
            last4=key.last4,
            created_at=iso(key.created_at) or "",
            revoked_at=iso(key.revoked_at),
        )


class KeyCreated(KeyOut, kw_only=True):
    key: str
    """Shown once: only its hash is stored."""


class KeyPage(msgspec.Struct, kw_only=True):
    data: list[KeyOut]
    next_cursor: str | None


class EndpointCreate(Request):
    url: str | None = None
    """The callback URL; omitted for an SNS destination."""
    description: str = ""
    event_types: list[str] | None = None
    """Event types to receive; omitted or null means all."""
    retry_policy: RetryPolicy | None = None
    timeout_ms: int | None = None
    rate_limit_per_s: float | None = None
    headers: dict[str, str] = {}
    auth: Auth | None = None
    """Write-only credentials: {"type": "basic"|"bearer"|"oauth2", ...}."""
    tls: ClientTLS | None = None
    """Mutual TLS: client certificate and key (PEM) or a PKCS#12 keystore; extra CAs."""
    destination: SNSDestination | None = None
    """{"type": "sns", ...}: publish to an AWS SNS topic instead of POSTing."""
    signing_secret: str | None = None
    """Standard Webhooks: ``whsec_<base64>``; Sinch scheme: any string. Generated if omitted."""
    signature_scheme: SignatureScheme = "standard-webhooks"
    disabled: bool = False


class EndpointUpdate(Request):
    url: str | UnsetType = _UNSET
    description: str | UnsetType = _UNSET
    event_types: list[str] | UnsetType | None = _UNSET
    retry_policy: RetryPolicy | UnsetType | None = _UNSET
    timeout_ms: int | UnsetType | None = _UNSET
    rate_limit_per_s: float | UnsetType | None = _UNSET
    headers: dict[str, str] | UnsetType = _UNSET
    auth: Auth | UnsetType | None = _UNSET
    tls: ClientTLS | UnsetType | None = _UNSET
    destination: SNSDestination | UnsetType | None = _UNSET
    disabled: bool | UnsetType = _UNSET


class TLSSummary(msgspec.Struct, kw_only=True):
    client_certificate: bool
    extra_ca: bool


class DestinationSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    topic_arn: str
    region: str
    endpoint_url: str | None = None


class AuthSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What an auth method is, without its secrets (credentials are write-only)."""

    type: str
    username: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    grant: str | None = None
    scope: str | None = None


class EndpointOut(msgspec.Struct, kw_only=True):
    id: str
    url: str
    description: str
    event_types: list[str] | None
    retry_policy: RetryPolicy | None
    timeout_ms: int | None
    rate_limit_per_s: float | None
    headers: dict[str, str]
    auth: AuthSummary | None
    tls: TLSSummary | None
    destination: DestinationSummary | None
    signature_scheme: str
    disabled: bool
    kind: Literal["endpoint", "callback_url"]
    created_at: str
    updated_at: str
    signing_secret: str | UnsetType = _UNSET
    """Only in the answer to the create call."""

    @classmethod
    def of(cls, endpoint: Endpoint, signing_secret: str | None = None) -> EndpointOut:
        auth = None
        if endpoint.auth is not None:
            a = endpoint.auth
            auth = AuthSummary(
                type=str(type(a).__struct_config__.tag),
                username=getattr(a, "username", None),
                token_url=getattr(a, "token_url", None),
                client_id=getattr(a, "client_id", None),
                grant=getattr(a, "grant", None),
                scope=getattr(a, "scope", None),
            )
        tls = None
        if endpoint.tls is not None:
            tls = TLSSummary(
                client_certificate=bool(endpoint.tls.cert_pem or endpoint.tls.pkcs12_base64),
                extra_ca=bool(endpoint.tls.ca_bundle_pem),
            )
        destination = None
        if endpoint.destination is not None:
            d = endpoint.destination
            destination = DestinationSummary(
                type="sns", topic_arn=d.topic_arn, region=d.region, endpoint_url=d.endpoint_url
            )
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            event_types=None if endpoint.event_types is None else list(endpoint.event_types),
            retry_policy=endpoint.retry_policy,
            timeout_ms=endpoint.timeout_ms,
            rate_limit_per_s=endpoint.rate_limit_per_s,
            headers=endpoint.headers,
            auth=auth,
            tls=tls,
            destination=destination,
            signature_scheme=endpoint.signature_scheme,
            disabled=endpoint.disabled,
            kind="callback_url" if endpoint.is_callback_url else "endpoint",
            created_at=iso(endpoint.created_at) or "",
            updated_at=iso(endpoint.updated_at) or "",
            signing_secret=_UNSET if signing_secret is None else signing_secret,
        )


class SecretOut(msgspec.Struct, kw_only=True):
    key: str
    """The newest secret (the one a receiver should switch to)."""
    active: list[SecretInfo]


class SecretInfo(msgspec.Struct, kw_only=True):
    key: str
    created_at: str
    expires_at: str | None


class SecretRotate(Request):
    key: str | None = None
    """The new secret (``whsec_…``); generated when omitted."""


class MessageCreate(Request):
    event_type: str
    payload: msgspec.Raw
    """Any JSON object; stored and sent byte for byte as submitted."""
    idempotency_key: str | None = None
    callback_url: str | None = None
    """Deliver this message here instead of to the account's endpoints (Sinch's override)."""
    fanout: bool = False
    """With ``callback_url``: deliver to the account's subscribed endpoints as well."""
    account: str | None = None
    """Platform keys: the account (id or external id) this message belongs to."""


class DeliveryBrief(msgspec.Struct, kw_only=True):
    id: str
    endpoint_id: str
    state: str


class MessageAccepted(msgspec.Struct, kw_only=True):
    id: str
    deliveries: list[DeliveryBrief]
    duplicate: bool = False
    """True when the idempotency key matched an earlier message; nothing new was created."""


class BatchAccepted(msgspec.Struct, kw_only=True):
    data: list[MessageAccepted]


class DeliveryOut(msgspec.Struct, kw_only=True):
    id: str
    message_id: str
    endpoint_id: str
    event_type: str
    state: str
    attempt_count: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    dead_reason: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            message_id=d.message_id,
            endpoint_id=d.endpoint_id,
            event_type=d.event_type,
            state=d.state.value,
            attempt_count=d.attempt_count,
            next_attempt_at=iso(d.next_attempt_at) if d.state == "pending" else None,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            dead_reason=d.dead_reason,
            created_at=iso(d.created_at) or "",
            updated_at=iso(d.updated_at) or "",
        )


class MessageOut(msgspec.Struct, kw_only=True):
    id: str
    event_type: str
    payload: msgspec.Raw
    created_at: str
    deliveries: list[DeliveryOut]


class AttemptOut(msgspec.Struct, kw_only=True):
    id: str
    delivery_id: str
    attempt_number: int
    started_at: str
    duration_ms: float
    outcome: str
    status_code: int | None
    error: str | None
    response_body: str | None

    @classmethod
    def of(cls, a: Attempt) -> AttemptOut:
        return cls(
            id=a.id,
            delivery_id=a.delivery_id,
            attempt_number=a.attempt_number,
            started_at=iso(a.started_at) or "",
            duration_ms=a.duration_ms,
            outcome=a.outcome,
            status_code=a.status_code,
            error=a.error,
            response_body=a.response_body,
        )


class ReplayRequest(Request):
    endpoint_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class ReplayResult(msgspec.Struct, kw_only=True):
    replayed: int
    delivery_ids: list[str]


class EndpointPage(msgspec.Struct, kw_only=True):
    data: list[EndpointOut]
    next_cursor: str | None


class DeliveryPage(msgspec.Struct, kw_only=True):
    data: list[DeliveryOut]
    next_cursor: str | None


class AttemptPage(msgspec.Struct, kw_only=True):
    data: list[AttemptOut]
    next_cursor: str | None


class ErrorDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: str
    message: str
    field: str | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    error: ErrorDetail


class Health(msgspec.Struct, kw_only=True):
    status: str
    version: str


class EventTypeCreate(Request):
    name: str
    schema: dict[str, Any]
    """A JSON Schema (draft 2020-12) every payload of this type must meet."""
    description: str = ""


class EventTypeOut(msgspec.Struct, kw_only=True):
    name: str
    description: str
    schema: dict[str, Any]
    built_in: bool
    created_at: str | None

    @classmethod
    def of(cls, definition: EventTypeDefinition, built_in: bool) -> EventTypeOut:
        return cls(
            name=definition.name,
            description=definition.description,
            schema=msgspec.json.decode(definition.schema),
            built_in=built_in,
            created_at=iso(definition.created_at) if definition.created_at else None,
        )


class EventTypeList(msgspec.Struct, kw_only=True):
    data: list[EventTypeOut]


class RecipientStatusRequest(Request):
    """Raw per-recipient status updates of one batch, and how the customer wants reports."""

    delivery_report: ReportMode
    type: MessageKind = "sms"
    recipients: list[str] = []
    """The batch's recipients: a batch report waits until all of them are final."""
    statuses: list[RecipientUpdate] = []
    callback_url: str | None = None
    client_reference: str | None = None
    report_deadline_s: int = 86_400
    """Send the batch report after this long even if some recipients are not final yet."""


class RecipientStatusAccepted(msgspec.Struct, kw_only=True):
    batch_id: str
    delivery_report: str
    messages: list[MessageAccepted]
    final_recipients: int
    known_recipients: int
    batch_report_sent: bool


class PortalSessionOut(msgspec.Struct, kw_only=True):
    """A link to one account's customer portal; whoever opens it first sees that account."""

    url: str
    expires_at: str
    """The link stops opening after this (the browser session it starts lasts longer)."""


# -- operations: endpoint health, re-enabling, operational endpoints ---------------------------


class RecentCounts(msgspec.Struct, kw_only=True):
    since: str | None
    """Start of the counting window (the previous one-hour bucket; see docs/operations.md)."""
    successes: int
    failures: int


class LatencySummary(msgspec.Struct, kw_only=True):
    """Attempt durations in the window, as the upper bound of their bucket (ms)."""

    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None


class BacklogOut(msgspec.Struct, kw_only=True):
    pending: int
    due: int
    delivering: int
    dead: int
    oldest_pending_age_s: float


class EndpointHealthOut(msgspec.Struct, kw_only=True):
    endpoint_id: str
    status: Literal["healthy", "failing", "disabled", "unknown"]
    """unknown: never attempted; failing: the last attempt failed."""
    disabled: bool
    disabled_reason: str | None
    disabled_at: str | None
    recent: RecentCounts
    consecutive_failures: int
    consecutive_dead_deliveries: int
    failing_since: str | None
    last_success_at: str | None
    last_failure_at: str | None
    latency: LatencySummary
    backlog: BacklogOut

    @classmethod
    def of(cls, endpoint: Endpoint, h: HealthState, b: Backlog, now: int) -> EndpointHealthOut:
        successes, failures = h.recent(now)
        if endpoint.disabled:
            status: Literal["healthy", "failing", "disabled", "unknown"] = "disabled"
        elif h.consecutive_failures:
            status = "failing"
        elif h.last_success_at is None:
            status = "unknown"
        else:
            status = "healthy"
        window = h.window_start - WINDOW_MS if h.window_start else None
        return cls(
            endpoint_id=endpoint.id,
            status=status,
            disabled=endpoint.disabled,
            disabled_reason=h.disabled_reason if endpoint.disabled else None,
            disabled_at=iso(h.disabled_at) if endpoint.disabled else None,
            recent=RecentCounts(since=iso(window), successes=successes, failures=failures),
            consecutive_failures=h.consecutive_failures,
            consecutive_dead_deliveries=h.consecutive_dead,
            failing_since=iso(h.failing_since),
            last_success_at=iso(h.last_success_at),
            last_failure_at=iso(h.last_failure_at),
            latency=LatencySummary(
                p50_ms=_finite(h.latency_percentile_ms(0.5, now)),
                p90_ms=_finite(h.latency_percentile_ms(0.9, now)),
                p99_ms=_finite(h.latency_percentile_ms(0.99, now)),
            ),
            backlog=BacklogOut(
                pending=b.pending,
                due=b.due,
                delivering=b.delivering,
                dead=b.dead,
                oldest_pending_age_s=b.oldest_pending_age_s(now),
            ),
        )


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: "slower than the last bound" is shown as that bound, doubled."""
    if value is None or value != float("inf"):
        return value
    return float(LATENCY_BOUNDS_MS[-1] * 2)


class EndpointWithHealth(EndpointOut, kw_only=True):
    health: EndpointHealthOut


class EndpointHealthPage(msgspec.Struct, kw_only=True):
    data: list[EndpointWithHealth]
    next_cursor: str | None


class EndpointEnable(Request):
    replay: bool = False
    """Also replay what was held or dead-lettered since the failure streak began."""


class EndpointEnabled(msgspec.Struct, kw_only=True):
    endpoint: EndpointOut
    replayed: int
    delivery_ids: list[str]


class OperationalEndpointCreate(Request):
    url: str
    description: str = ""
    event_types: list[str] | None = None
    """Operational event types to receive (delivery.dead, endpoint.failing,
    endpoint.recovered, endpoint.disabled, endpoint.enabled); omitted or null: all."""


class AccountSettings(Request):
    disable_after_s: int | None
    """Auto-disable this account's endpoints after this long failing (seconds); 0: never;
    null: the server's default (POSTBACK_DISABLE_AFTER_SECONDS)."""


class AccountSettingsOut(msgspec.Struct, kw_only=True):
    id: str
    disable_after_s: int | None
