"""The domain records that flow ingest -> store -> claim -> send -> record.

Plain frozen msgspec Structs: the storage adapters build them, the service and dispatcher read
them. Times are integer milliseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Literal

import msgspec

from postback.core.policy import RetryPolicy

# Headers Postback sets itself: a customer's custom header may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "host",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "authorization",
        "x-sinch-webhook-signature",
        "x-sinch-webhook-signature-nonce",
        "x-sinch-webhook-signature-timestamp",
        "x-sinch-webhook-signature-algorithm",
    }
)

SignatureScheme = Literal["standard-webhooks", "sinch"]
"""How callbacks are signed: Standard Webhooks (default) or the scheme Sinch's SDKs verify."""


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (first try or a scheduled retry)
    DELIVERING = "delivering"  # claimed by a dispatcher, under a lease
    DELIVERED = "delivered"
    DEAD = "dead"  # permanent failure or retries exhausted; replayable
    ABORTED = "aborted"  # the receiver answered 'webhook-delivery: abort-message'; final


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


class OAuth2Auth(
    msgspec.Struct, frozen=True, tag="oauth2", tag_field="type", forbid_unknown_fields=True
):
    """OAuth 2.0 (RFC 6749): a token from the customer's token URL, sent as a bearer token.

    ``client_credentials`` (section 4.4) or ``password`` (section 4.3, Sinch's "username,
    password and the URL to fetch OAuth access token").
    """

    token_url: str
    client_id: str
    client_secret: str
    grant: Literal["client_credentials", "password"] = "client_credentials"
    scope: str | None = None
    username: str | None = None
    password: str | None = None


Auth = NoAuth | BasicAuth | BearerAuth | OAuth2Auth
"""How Postback authenticates to an endpoint; independent of signing, which is always on."""


class ClientTLS(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Mutual TLS: our client certificate (PEM pair or PKCS#12 keystore) and trusted CAs."""

    cert_pem: str | None = None
    key_pem: str | None = None
    pkcs12_base64: str | None = None
    pkcs12_password: str | None = None
    ca_bundle_pem: str | None = None
    """Extra CAs to trust for the endpoint's server certificate (the system ones still apply)."""


class SNSDestination(
    msgspec.Struct, frozen=True, tag="sns", tag_field="type", forbid_unknown_fields=True
):
    """Publish to an AWS SNS topic instead of POSTing (Sinch's "Callback using AWS SNS")."""

    topic_arn: str
    region: str
    access_key_id: str
    secret_access_key: str
    endpoint_url: str | None = None
    """Override of https://sns.<region>.amazonaws.com (a VPC endpoint, a local stand-in)."""


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """One of the platform's customers; ``external_id`` is the platform's own id for it
    (unique, usable wherever the account id is)."""

    id: str
    name: str
    created_at: int
    external_id: str | None = None


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as stored, without the key: only its hash is kept, beside it.

    ``account_id`` None: a platform key, which acts on every account. ``revoked_at``: the key
    stops working at that time (a rotation may leave the old key a grace period).
    """

    id: str
    account_id: str | None
    name: str
    prefix: str
    """The key's first characters, to recognise it in a listing."""
    last4: str
    created_at: int
    revoked_at: int | None = None

    @property
    def platform(self) -> bool:
        return self.account_id is None

    def live(self, now: int) -> bool:
        return self.revoked_at is None or self.revoked_at > now


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
    tls: ClientTLS | None = None
    destination: SNSDestination | None = None
    """Set for SNS endpoints; ``url`` then shows the topic ARN."""
    signature_scheme: SignatureScheme = "standard-webhooks"
    disabled: bool = False
    is_callback_url: bool = False
    """Made for a message's ``callback_url``: receives only messages that name it."""
    created_at: int = 0
    updated_at: int = 0


# Who writes which Endpoint field: the one table the API structs (core/wire.py), the ingest
# service and the row mapping are derived from or checked against
# (tests/core/test_endpoint_fields.py). A new field is one line in Endpoint, one here, and
# (for a column of its own) a migration; the failing test names anything else to touch.
ENDPOINT_SETTINGS: tuple[str, ...] = (
    "url",
    "description",
    "event_types",
    "retry_policy",
    "timeout_ms",
    "rate_limit_per_s",
    "headers",
    "auth",
    "tls",
    "destination",
    "disabled",
)
"""Set by the customer on create and changeable later (``EndpointCreate``, ``EndpointUpdate``)."""
ENDPOINT_CREATE_ONLY: tuple[str, ...] = ("signature_scheme",)
"""Set on create and fixed afterwards: receivers verify with the scheme they were given."""
ENDPOINT_WRITE_ONLY: frozenset[str] = frozenset({"auth", "tls", "destination"})
"""Settings holding credentials: answered as summaries without their secrets, stored sealed."""
ENDPOINT_SYSTEM: tuple[str, ...] = (
    "id",
    "account_id",
    "is_callback_url",
    "created_at",
    "updated_at",
)
"""Set by Postback itself, never by a request."""


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


AttemptOutcome = Literal["delivered", "retry", "throttled", "permanent", "exhausted", "aborted"]
"""The values of ``core.outcome.Outcome``, as stored on an attempt (pinned equal by a test).

TODO(issue 8): type ``Attempt.outcome`` as ``Outcome`` and drop this once the dispatcher
passes the enum itself (dispatch/loop.py passes ``.value`` today)."""


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
    """A message to ingest, already validated.

    ``callback_endpoint_id`` (a per-message ``callback_url``) replaces the account's subscribed
    endpoints for this message, as Sinch's per-batch callback_url does, unless ``fanout``: then
    it adds a delivery beside theirs.
    """

    id: str
    event_type: str
    payload: bytes
    idempotency_key: str | None = None
    callback_endpoint_id: str | None = None
    fanout: bool = False
    ordering_key: str | None = None
    """Deliveries sharing a key go to an endpoint one after the other, in submission order."""
    fingerprint: str | None = None
    """Of the request, stored with the idempotency key: a reuse must match it (core/idempotency)."""


class MessageSubmission(msgspec.Struct, frozen=True, kw_only=True):
    event_type: str
    payload: bytes
    idempotency_key: str | None = None
    callback_url: str | None = None
    """Sinch's per-batch override: this message goes here instead of the account's endpoints."""
    fanout: bool = False
    """With ``callback_url``: deliver to the subscribed endpoints too."""
    ordering_key: str | None = None
    target_endpoint_id: str | None = None
    """Deliver to this one endpoint of the account only (a test event from the portal)."""
    refuse_reuse: bool = True
    """A reused idempotency key must come with the same request (core/idempotency.py);
    False for Postback's own submissions whose racing producers share one key on purpose."""


class EndpointLoad(msgspec.Struct, frozen=True):
    """What the store knows of an endpoint at ingest time, to decide the fast path."""

    in_flight: int
    """Deliveries of this endpoint in flight anywhere in the fleet."""
    paced: bool
    """A rate limit or a 429 pause applies: its sends need slots from the shared pacing."""
    other_holders: int = 0
    """Other processes holding some of its deliveries (distinct lease holders)."""


class LeaseOffer(msgspec.Struct, frozen=True):
    """How much just-ingested work the local dispatcher can take at once (the fast path)."""

    lease_ms: int
    total: int
    """Free in-flight slots of the dispatcher."""
    share: int
    """The per-endpoint in-flight share (fleet-wide)."""
    own: Mapping[str, int] = {}
    """Per endpoint, deliveries the store counts as in flight that are the dispatcher's own
    (already within ``room``): not counted twice."""
    sending: Mapping[str, int] = {}
    """Per endpoint, of ``own``, those still being sent or held ready (``fleet_room``);
    absent: all of them."""
    room: Mapping[str, int] = {}
    """Endpoints the dispatcher has loaded: how many more it can hold for each. Others get
    none: their configuration (a rate limit, say) is not known here yet."""
    prefetch: Mapping[str, int] = {}
    """Per endpoint, how far beyond its part of the share the dispatcher leases ahead (see
    ``fleet_room`` and ``reserve_size``); absent: none."""
    holder: str = ""
    """Who the leases are for (the dispatcher's holder id, stored with each lease)."""


class IngestResult(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    deliveries: list[Delivery]
    duplicate: bool = False
    """True when the idempotency key matched an earlier message: nothing was created."""
    leased: list[ClaimedDelivery] = []
    """Deliveries committed already leased to the local dispatcher (the fast path)."""


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
    holders: int = 1
    """Processes holding the endpoint's deliveries when this one was leased, its own included:
    the dispatcher sends at most its part of the endpoint's share (``core.fanout.part``)."""


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One finished attempt and the delivery's resulting state, written together."""

    attempt: Attempt
    delivery_id: str
    state: DeliveryState
    next_attempt_at: int | None
    dead_reason: str | None
    now: int


class EventTypeDefinition(msgspec.Struct, frozen=True, kw_only=True):
    """A custom event type of one account: its name and the JSON Schema of its payloads."""

    name: str
    schema: str
    """The JSON Schema, as JSON text."""
    description: str = ""
    created_at: int = 0


class BatchRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A batch whose recipient status updates Postback turns into delivery reports."""

    batch_id: str
    mode: str
    kind: str = "sms"
    client_reference: str | None = None
    callback_url: str | None = None
    expected_recipients: int = 0
    report_deadline: int = 0
    report_state: str = "waiting"
    """waiting (a batch report is still to be sent), sent, or none (no batch report)."""
    created_at: int = 0


class RecipientStatus(msgspec.Struct, frozen=True, kw_only=True):
    recipient: str
    status: str
    code: int


class AccountActivity(msgspec.Struct, frozen=True, kw_only=True):
    """One account as the operator sees it: work waiting, dead letters, recent attempts."""

    account_id: str
    name: str
    backlog: int
    """Deliveries pending or in flight."""
    oldest_pending_at: int | None
    """When the oldest pending delivery was created (its age is how far behind the account is)."""
    dead: int
    delivered: int
    """Attempts that delivered, since the window's start."""
    failed: int
    """Attempts that did not (retry, throttled or permanent), since the window's start."""


class EndpointHealth(msgspec.Struct, frozen=True, kw_only=True):
    """One endpoint's recent attempts, backlog and pacing: what its health is judged from."""

    endpoint_id: str
    account_id: str
    url: str
    disabled: bool
    attempts: int
    failures: int
    last_status_code: int | None
    backlog: int
    paced_rate: float | None
    """Requests per second after a 429 lowered it (None: not lowered)."""
    paused_until: int | None
    """A 429's Retry-After holds the endpoint until then."""


class LiveTotals(msgspec.Struct, frozen=True, kw_only=True):
    """Every account's work right now, and the attempts of the last window (the live counters)."""

    pending: int
    delivering: int
    delivered: int
    """Attempts that delivered, since the window's start."""
    failed: int
    """Attempts that did not, since the window's start."""


class ActivityPoint(msgspec.Struct, frozen=True, kw_only=True):
    """Attempts to one endpoint in one time bucket (for the throughput and failure plots)."""

    bucket_start: int
    attempts: int
    failures: int


def static_headers(endpoint: Endpoint, user_agent: str) -> dict[str, str]:
    """Headers that are the same on every attempt to this endpoint.

    The endpoint's custom headers go first so that ours (content-type, user-agent,
    authorization, and the webhook-* headers added per attempt) always win.
    """
    own = RESERVED_HEADERS if endpoint.auth is not None else RESERVED_HEADERS - {"authorization"}
    headers = {k: v for k, v in endpoint.headers.items() if k.lower() not in own}
    headers["content-type"] = "application/json"
    headers["user-agent"] = user_agent
    return headers
