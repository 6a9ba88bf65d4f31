"""Domain operations behind the HTTP API and the CLI: validate, then call storage.

The API adapter decodes JSON into the Structs of ``postback.api.schemas`` and calls these;
they raise ``InvalidInput`` (naming the field) or ``NotFound``, never an HTTP type.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from postback.core import signing
from postback.core.event_schemas import BUILT_IN_SCHEMAS
from postback.core.ids import make_id
from postback.core.model import (
    RESERVED_HEADERS,
    Account,
    Auth,
    BasicAuth,
    BatchRecord,
    BearerAuth,
    ClientTLS,
    Delivery,
    DeliveryState,
    Endpoint,
    EventTypeDefinition,
    IngestResult,
    Message,
    NewMessage,
    NoAuth,
    OAuth2Auth,
    RecipientStatus,
    SignatureScheme,
    SigningSecret,
    SNSDestination,
)
from postback.core.netguard import Network, blocked_reason, first_blocked, literal_address
from postback.core.payloads import PayloadInvalid, PayloadValidator, SchemaInvalid
from postback.core.policy import PolicyError, RetryPolicy, validate_policy
from postback.core.reports import (
    KNOWN_STATUSES,
    BatchInfo,
    MessageKind,
    RecipientUpdate,
    ReportMode,
    batch_report,
    is_final,
    recipient_report,
    sends_recipient_report,
    wants_batch_report,
)
from postback.observe.metrics import Metrics
from postback.store.base import Storage
from postback.transports.tls import TLSConfigError, client_ssl_context

IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000
SECRET_OVERLAP_MS = 24 * 3600 * 1000
"""After a rotation the old secret keeps signing beside the new one for this long."""
MAX_BATCH = 1000
MAX_PAYLOAD_BYTES = 1024 * 1024
API_KEY_PREFIX = "pbk_"

_BATCH_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]{0,127}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")


class InvalidInput(ValueError):
    """Input that cannot be accepted; ``field`` is the JSON path of the offending value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class NotFound(LookupError):
    """No such object in this account (another account's ids are not found either)."""


class Conflict(Exception):
    """The request is valid but the object's state forbids it."""


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_signing_secret() -> str:
    return signing.secret_from_key(secrets.token_bytes(24))


def check_url(url: str, field: str = "url") -> str:
    if len(url) > 2048:
        raise InvalidInput(field, "URL is longer than 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(field, f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(field, "URL must start with http:// or https://")
    if not parts.hostname:
        raise InvalidInput(field, "URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(field, "put credentials in `auth`, not in the URL")
    if port == 0:
        raise InvalidInput(field, "URL port must be from 1 to 65535")
    if parts.fragment:
        raise InvalidInput(field, "URL must not have a #fragment")
    return url


def check_event_type(name: str, field: str = "event_type") -> str:
    if not _EVENT_TYPE.match(name):
        raise InvalidInput(
            field,
            "event type must be 1-128 characters of letters, digits and _ . : - / "
            f"starting with a letter or digit, got {name!r}",
        )
    return name


def check_headers(
    headers: dict[str, str], *, auth_set: bool, field: str = "headers"
) -> dict[str, str]:
    """Custom headers; Postback's own may not be overridden (Authorization only when the
    endpoint has no auth method: then a custom scheme is the customer's business)."""
    if len(headers) > 50:
        raise InvalidInput(field, "at most 50 custom headers")
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise InvalidInput(f"{field}.{name}", "not a valid HTTP header name")
        lowered = name.lower()
        if lowered in RESERVED_HEADERS and (lowered != "authorization" or auth_set):
            raise InvalidInput(
                f"{field}.{name}", f"{name} is set by Postback and cannot be overridden"
            )
        if any(c in value for c in "\r\n\0") or len(value) > 4096:
            raise InvalidInput(f"{field}.{name}", "header value must be one line, ≤ 4096 chars")
    return headers


def check_auth(auth: Auth | None) -> Auth | None:
    if isinstance(auth, NoAuth):
        return None
    if isinstance(auth, BasicAuth):
        if not auth.username or ":" in auth.username:
            raise InvalidInput("auth.username", "username must be non-empty and contain no ':'")
        if any(c in auth.username + auth.password for c in "\r\n"):
            raise InvalidInput("auth", "credentials must not contain line breaks")
    if isinstance(auth, BearerAuth) and (not auth.token or any(c in auth.token for c in " \r\n\t")):
        raise InvalidInput("auth.token", "token must be non-empty with no whitespace")
    if isinstance(auth, OAuth2Auth):
        check_url(auth.token_url, "auth.token_url")
        if not auth.client_id:
            raise InvalidInput("auth.client_id", "client_id is required")
        if auth.grant == "password" and not (auth.username and auth.password is not None):
            raise InvalidInput("auth.username", "the password grant needs username and password")
    return auth


_TOPIC_ARN = re.compile(
    r"^arn:aws[a-z-]*:sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,256}(\.fifo)?)$"
)


def check_destination_config(destination: SNSDestination) -> str:
    """An SNS destination; returns the topic ARN, which the endpoint shows as its URL."""
    match = _TOPIC_ARN.match(destination.topic_arn)
    if match is None:
        raise InvalidInput(
            "destination.topic_arn", "expected arn:aws:sns:<region>:<account>:<topic name>"
        )
    if match.group(1) != destination.region:
        raise InvalidInput(
            "destination.region", f"topic is in {match.group(1)}, not {destination.region}"
        )
    if not destination.access_key_id or not destination.secret_access_key:
        raise InvalidInput("destination", "access_key_id and secret_access_key are required")
    if destination.endpoint_url is not None:
        check_url(destination.endpoint_url, "destination.endpoint_url")
    return destination.topic_arn


def check_tls(tls: ClientTLS | None) -> ClientTLS | None:
    if tls is None:
        return None
    try:
        client_ssl_context(tls)
    except TLSConfigError as exc:
        raise InvalidInput(exc.field, str(exc)) from None
    return tls


def check_policy(policy: RetryPolicy | None) -> RetryPolicy | None:
    if policy is None:
        return None
    try:
        return validate_policy(policy)
    except PolicyError as exc:
        message = str(exc)
        field = message.split(" ", 1)[0].rstrip(":")
        field = field if field.startswith("retry_policy") else "retry_policy"
        raise InvalidInput(field, message) from None


def check_timeout(timeout_ms: int | None) -> int | None:
    if timeout_ms is not None and not 100 <= timeout_ms <= 60_000:
        raise InvalidInput("timeout_ms", "timeout_ms must be from 100 to 60000")
    return timeout_ms


def check_rate(rate: float | None) -> float | None:
    if rate is not None and not 0.1 <= rate <= 100_000:
        raise InvalidInput("rate_limit_per_s", "rate_limit_per_s must be from 0.1 to 100000")
    return rate


def check_secret(
    secret: str | None, scheme: str = "standard-webhooks", field: str = "signing_secret"
) -> str:
    if scheme == "sinch":
        # Sinch's scheme keys the HMAC with the secret's UTF-8 bytes: any string will do.
        if secret is None:
            return secrets.token_urlsafe(32)
        if not 8 <= len(secret) <= 256 or any(c in secret for c in "\r\n"):
            raise InvalidInput(field, "a Sinch signing secret is 8 to 256 characters, one line")
        return secret
    if secret is None:
        return new_signing_secret()
    try:
        signing.secret_key(secret)
    except signing.SignatureError as exc:
        raise InvalidInput(field, f"{exc} (expected whsec_<base64>)") from exc
    if not secret.startswith(signing.SECRET_PREFIX):
        raise InvalidInput(field, "signing secret must start with whsec_")
    return secret


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointChanges:
    """Fields to change on an endpoint; ``msgspec.UNSET`` leaves a field as it is."""

    url: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    event_types: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    retry_policy: RetryPolicy | msgspec.UnsetType | None = msgspec.UNSET
    timeout_ms: int | msgspec.UnsetType | None = msgspec.UNSET
    rate_limit_per_s: float | msgspec.UnsetType | None = msgspec.UNSET
    headers: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    auth: Auth | msgspec.UnsetType | None = msgspec.UNSET
    tls: ClientTLS | msgspec.UnsetType | None = msgspec.UNSET
    destination: SNSDestination | msgspec.UnsetType | None = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSubmission:
    event_type: str
    payload: bytes
    idempotency_key: str | None = None
    callback_url: str | None = None
    ordering_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchProgress:
    """What one recipient-status call produced."""

    batch: BatchRecord
    messages: list[IngestResult]
    final_recipients: int
    known_recipients: int
    batch_report_sent: bool


class Postback:
    """The service's operations, over one Storage."""

    def __init__(
        self,
        storage: Storage,
        *,
        on_ingest: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        allowed_networks: Sequence[Network] = (),
        guard_destinations: bool = True,
    ) -> None:
        self.storage = storage
        self.allowed_networks = tuple(allowed_networks)
        self.guard_destinations = guard_destinations
        self.on_ingest = on_ingest
        self.metrics = metrics or Metrics()
        self.clock = clock
        self._accounts_by_key: dict[str, Account] = {}
        # Event types never change once created, so compiled validators are kept for good.
        self._validators: dict[tuple[str, str], PayloadValidator] = {}

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _id(self, prefix: str) -> str:
        return make_id(prefix, self._now_ms(), os.urandom(10))

    async def check_destination(self, url: str, field: str) -> None:
        """The SSRF guard at save time: refuse a URL whose host is, or resolves to, a
        forbidden address (it is checked again at every connect)."""
        if not self.guard_destinations:
            return
        host = urlsplit(url).hostname or ""
        literal = literal_address(host)
        if literal is not None:
            reason = blocked_reason(literal, self.allowed_networks)
        else:
            try:
                infos = await asyncio.wait_for(
                    asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM),
                    timeout=3,
                )
            except (OSError, TimeoutError):
                return  # unresolvable now: the connect-time check still applies
            addresses = [literal_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
            reason = first_blocked([a for a in addresses if a is not None], self.allowed_networks)
        if reason is not None:
            raise InvalidInput(field, f"{host}: {reason}")

    # -- accounts -----------------------------------------------------------------------------

    async def create_account(self, name: str) -> tuple[Account, str]:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("name", "account name must be 1-200 characters")
        account = Account(id=self._id("acc"), name=name, created_at=self._now_ms())
        api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        await self.storage.create_account(account, hash_api_key(api_key))
        return account, api_key

    async def authenticate(self, api_key: str) -> Account | None:
        key_hash = hash_api_key(api_key)
        account = self._accounts_by_key.get(key_hash)
        if account is None:
            account = await self.storage.account_for_key(key_hash)
            if account is not None:
                self._accounts_by_key[key_hash] = account
        return account

    # -- endpoints ----------------------------------------------------------------------------

    async def create_endpoint(
        self,
        account_id: str,
        *,
        url: str | None,
        description: str = "",
        event_types: list[str] | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout_ms: int | None = None,
        rate_limit_per_s: float | None = None,
        headers: dict[str, str] | None = None,
        auth: Auth | None = None,
        tls: ClientTLS | None = None,
        destination: SNSDestination | None = None,
        signing_secret: str | None = None,
        signature_scheme: SignatureScheme = "standard-webhooks",
        disabled: bool = False,
    ) -> tuple[Endpoint, str]:
        now = self._now_ms()
        endpoint = Endpoint(
            id=self._id("ep"),
            account_id=account_id,
            url=url or "",
            description=description[:500],
            event_types=self._check_event_types(event_types),
            retry_policy=retry_policy,
            timeout_ms=timeout_ms,
            rate_limit_per_s=rate_limit_per_s,
            headers=headers or {},
            auth=auth,
            tls=tls,
            destination=destination,
            signature_scheme=signature_scheme,
            disabled=disabled,
            created_at=now,
            updated_at=now,
        )
        endpoint = await self._validated(endpoint)
        secret = check_secret(signing_secret, signature_scheme)
        await self.storage.create_endpoint(endpoint, SigningSecret(secret=secret, created_at=now))
        return endpoint, secret

    async def _validated(self, endpoint: Endpoint) -> Endpoint:
        """Every rule an endpoint must satisfy, checked on create and on every change."""
        if endpoint.destination is not None:
            url = check_destination_config(endpoint.destination)
            if endpoint.destination.endpoint_url is not None:
                await self.check_destination(
                    endpoint.destination.endpoint_url, "destination.endpoint_url"
                )
        else:
            if not endpoint.url:
                raise InvalidInput("url", "url is required (or a destination of type sns)")
            url = check_url(endpoint.url)
            await self.check_destination(url, "url")
        auth = check_auth(endpoint.auth)
        if isinstance(auth, OAuth2Auth):
            await self.check_destination(auth.token_url, "auth.token_url")
        return msgspec.structs.replace(
            endpoint,
            url=url,
            retry_policy=check_policy(endpoint.retry_policy),
            timeout_ms=check_timeout(endpoint.timeout_ms),
            rate_limit_per_s=check_rate(endpoint.rate_limit_per_s),
            headers=check_headers(endpoint.headers, auth_set=auth is not None),
            auth=auth,
            tls=check_tls(endpoint.tls),
        )

    @staticmethod
    def _check_event_types(event_types: list[str] | None) -> tuple[str, ...] | None:
        if event_types is None:
            return None
        if len(event_types) > 100:
            raise InvalidInput("event_types", "at most 100 event types per endpoint")
        for i, name in enumerate(event_types):
            check_event_type(name, f"event_types[{i}]")
        return tuple(sorted(set(event_types)))

    async def get_endpoint(self, account_id: str, endpoint_id: str) -> Endpoint:
        endpoint = await self.storage.get_endpoint(account_id, endpoint_id)
        if endpoint is None:
            raise NotFound(f"no endpoint {endpoint_id}")
        return endpoint

    async def update_endpoint(
        self, account_id: str, endpoint_id: str, changes: EndpointChanges
    ) -> Endpoint:
        current = await self.get_endpoint(account_id, endpoint_id)
        updates: dict[str, object] = {}
        if changes.url is not msgspec.UNSET:
            updates["url"] = changes.url
        if changes.description is not msgspec.UNSET:
            updates["description"] = changes.description[:500]
        if changes.event_types is not msgspec.UNSET:
            updates["event_types"] = self._check_event_types(changes.event_types)
        for name in (
            "retry_policy",
            "timeout_ms",
            "rate_limit_per_s",
            "headers",
            "auth",
            "tls",
            "destination",
        ):
            value = getattr(changes, name)
            if value is not msgspec.UNSET:
                updates[name] = value
        if changes.disabled is not msgspec.UNSET:
            updates["disabled"] = changes.disabled
        # updated_at doubles as the config version the dispatcher caches by: it must grow.
        updates["updated_at"] = max(self._now_ms(), current.updated_at + 1)
        endpoint = await self._validated(msgspec.structs.replace(current, **updates))
        if not await self.storage.update_endpoint(endpoint):
            raise NotFound(f"no endpoint {endpoint_id}")
        return endpoint

    async def delete_endpoint(self, account_id: str, endpoint_id: str) -> None:
        if not await self.storage.delete_endpoint(account_id, endpoint_id, self._now_ms()):
            raise NotFound(f"no endpoint {endpoint_id}")

    async def list_endpoints(
        self, account_id: str, after: str | None, limit: int
    ) -> list[Endpoint]:
        return await self.storage.list_endpoints(account_id, after=after, limit=limit)

    async def signing_secrets(self, account_id: str, endpoint_id: str) -> list[SigningSecret]:
        await self.get_endpoint(account_id, endpoint_id)
        return await self.storage.signing_secrets(endpoint_id, self._now_ms())

    async def rotate_secret(
        self, account_id: str, endpoint_id: str, new_secret: str | None = None
    ) -> list[SigningSecret]:
        endpoint = await self.get_endpoint(account_id, endpoint_id)
        now = self._now_ms()
        secret = SigningSecret(
            secret=check_secret(new_secret, endpoint.signature_scheme, "key"), created_at=now
        )
        if not await self.storage.rotate_secret(
            account_id, endpoint_id, secret, now + SECRET_OVERLAP_MS
        ):
            raise NotFound(f"no endpoint {endpoint_id}")
        return await self.storage.signing_secrets(endpoint_id, now)

    # -- event types --------------------------------------------------------------------------

    async def create_event_type(
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
            created_at=self._now_ms(),
        )
        if not await self.storage.create_event_type(account_id, definition):
            raise Conflict(f"event type {name} already exists (event types cannot be changed)")
        return definition

    async def event_types(self, account_id: str) -> list[EventTypeDefinition]:
        built_in = [
            EventTypeDefinition(
                name=name,
                schema=msgspec.json.encode(schema).decode(),
                description=str(schema.get("title", "")),
            )
            for name, schema in BUILT_IN_SCHEMAS.items()
        ]
        return built_in + await self.storage.event_types(account_id)

    async def _validator(self, account_id: str, name: str, field: str) -> PayloadValidator:
        key = ("", name) if name in BUILT_IN_SCHEMAS else (account_id, name)
        validator = self._validators.get(key)
        if validator is None:
            if name in BUILT_IN_SCHEMAS:
                validator = PayloadValidator(BUILT_IN_SCHEMAS[name])
            else:
                definition = await self.storage.event_type(account_id, name)
                if definition is None:
                    raise InvalidInput(
                        field,
                        f"unknown event type {name!r}: register it with POST /v1/event-types "
                        "or use a built-in one (GET /v1/event-types)",
                    )
                validator = PayloadValidator(msgspec.json.decode(definition.schema))
            self._validators[key] = validator
        return validator

    # -- messages -----------------------------------------------------------------------------

    async def submit(
        self, account_id: str, submissions: list[MessageSubmission], *, field_prefix: str = ""
    ) -> list[IngestResult]:
        """Validate every message first (all or nothing), then store them in one transaction."""
        if len(submissions) > MAX_BATCH:
            raise InvalidInput(field_prefix or "$", f"at most {MAX_BATCH} messages per batch")
        callback_endpoints: dict[str, str] = {}
        messages = []
        for i, sub in enumerate(submissions):
            at = f"{field_prefix}[{i}]." if field_prefix else ""
            check_event_type(sub.event_type, f"{at}event_type")
            if len(sub.payload) > MAX_PAYLOAD_BYTES:
                raise InvalidInput(f"{at}payload", f"payload exceeds {MAX_PAYLOAD_BYTES} bytes")
            if not sub.payload.lstrip()[:1] == b"{":
                raise InvalidInput(f"{at}payload", "payload must be a JSON object")
            validator = await self._validator(account_id, sub.event_type, f"{at}event_type")
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
            if sub.callback_url is not None:
                check_url(sub.callback_url, f"{at}callback_url")
        for i, sub in enumerate(submissions):
            if sub.callback_url is not None and sub.callback_url not in callback_endpoints:
                at = f"{field_prefix}[{i}]." if field_prefix else ""
                endpoint = await self._callback_endpoint(
                    account_id, sub.callback_url, f"{at}callback_url"
                )
                callback_endpoints[sub.callback_url] = endpoint.id
        for sub in submissions:
            messages.append(
                NewMessage(
                    id=self._id("msg"),
                    event_type=sub.event_type,
                    payload=sub.payload,
                    idempotency_key=sub.idempotency_key,
                    callback_endpoint_id=callback_endpoints.get(sub.callback_url or ""),
                    ordering_key=sub.ordering_key,
                )
            )
        results = await self.storage.ingest(
            account_id, messages, self._now_ms(), IDEMPOTENCY_WINDOW_MS
        )
        self.metrics.ingested(sum(not r.duplicate for r in results))
        if self.on_ingest is not None:
            self.on_ingest()
        return results

    async def _callback_endpoint(self, account_id: str, url: str, field: str) -> Endpoint:
        """A per-message callback URL gets an endpoint of its own with the account defaults."""
        await self.check_destination(url, field)
        now = self._now_ms()
        template = Endpoint(
            id=self._id("ep"),
            account_id=account_id,
            url=url,
            description="created for a message's callback_url",
            event_types=(),
            is_callback_url=True,
            created_at=now,
            updated_at=now,
        )
        secret = SigningSecret(secret=new_signing_secret(), created_at=now)
        return await self.storage.callback_endpoint(account_id, url, template, secret)

    # -- batches and delivery-report modes -----------------------------------------------------

    async def batch_recipient_status(
        self,
        account_id: str,
        batch_id: str,
        *,
        mode: ReportMode,
        kind: MessageKind = "sms",
        recipients: list[str] | None = None,
        updates: list[RecipientUpdate] | None = None,
        callback_url: str | None = None,
        client_reference: str | None = None,
        report_deadline_s: int = 86_400,
    ) -> BatchProgress:
        """Record recipient status changes of a batch and send the callbacks its mode asks
        for (see ``postback.core.reports``)."""
        if not _BATCH_ID.match(batch_id):
            raise InvalidInput("batch_id", "batch_id must be 1-100 letters, digits, _ . : -")
        recipients = recipients or []
        updates = updates or []
        if len(recipients) > 100_000 or len(updates) > 10_000:
            raise InvalidInput("statuses", "at most 100,000 recipients and 10,000 updates a call")
        for i, update in enumerate(updates):
            if update.status not in KNOWN_STATUSES:
                names = ", ".join(sorted(KNOWN_STATUSES))
                raise InvalidInput(f"statuses[{i}].status", f"status must be one of {names}")
        if callback_url is not None:
            check_url(callback_url, "callback_url")
        if not 1 <= report_deadline_s <= 7 * 86_400:
            raise InvalidInput("report_deadline_s", "report_deadline_s must be 1 s to 7 days")
        existing = await self.storage.batch_statuses(account_id, batch_id)
        if existing is not None and existing[0].mode != mode:
            raise Conflict(f"batch {batch_id} was created with delivery_report {existing[0].mode}")
        now = self._now_ms()
        requested = BatchRecord(
            batch_id=batch_id,
            mode=mode,
            kind=kind,
            client_reference=client_reference,
            callback_url=callback_url,
            expected_recipients=len(set(recipients)),
            report_deadline=now + report_deadline_s * 1000,
            report_state="waiting" if wants_batch_report(mode) else "none",
            created_at=now,
        )
        batch, statuses = await self.storage.update_batch(
            account_id,
            requested,
            recipients,
            [RecipientStatus(recipient=u.recipient, status=u.status, code=u.code) for u in updates],
        )
        info = BatchInfo(
            batch_id=batch_id,
            mode=batch.mode,  # type: ignore[arg-type]
            kind=batch.kind,  # type: ignore[arg-type]
            client_reference=batch.client_reference,
        )
        submissions = [
            MessageSubmission(
                event_type=f"recipient_delivery_report_{info.kind}",
                payload=msgspec.json.encode(recipient_report(info, update)),
                callback_url=batch.callback_url,
                # One recipient's reports reach each endpoint in order (Dispatched first).
                ordering_key=f"{batch_id}/{update.recipient}",
            )
            for update in updates
            if sends_recipient_report(info.mode, update.status)
        ]
        final = sum(1 for status, _ in statuses.values() if status is not None and is_final(status))
        complete = final == len(statuses) and final >= batch.expected_recipients and final > 0
        report = complete and batch.report_state == "waiting"
        if report:
            submissions.append(self._batch_report_submission(info, batch, statuses))
        results = await self.submit(account_id, submissions) if submissions else []
        sent = report and await self.storage.mark_batch_reported(account_id, batch_id)
        return BatchProgress(
            batch=batch,
            messages=results,
            final_recipients=final,
            known_recipients=len(statuses),
            batch_report_sent=sent,
        )

    @staticmethod
    def _batch_report_submission(
        info: BatchInfo, batch: BatchRecord, statuses: dict[str, tuple[str | None, int | None]]
    ) -> MessageSubmission:
        reported = {
            recipient: (status or "Queued", code if code is not None else 0)
            for recipient, (status, code) in statuses.items()
        }
        payload = batch_report(info, reported, max(len(reported), batch.expected_recipients))
        return MessageSubmission(
            event_type=f"delivery_report_{info.kind}",
            payload=msgspec.json.encode(payload),
            callback_url=batch.callback_url,
            # The deadline sweeper and a final update may race: one report, not two.
            idempotency_key=f"batch-report/{batch.batch_id}",
        )

    async def send_due_batch_reports(self, limit: int = 100) -> int:
        """Batch reports whose deadline passed before every recipient was final."""
        sent = 0
        for account_id, batch_id in await self.storage.due_batch_reports(self._now_ms(), limit):
            found = await self.storage.batch_statuses(account_id, batch_id)
            if found is None:
                continue
            batch, statuses = found
            info = BatchInfo(
                batch_id=batch_id,
                mode=batch.mode,  # type: ignore[arg-type]
                kind=batch.kind,  # type: ignore[arg-type]
                client_reference=batch.client_reference,
            )
            await self.submit(account_id, [self._batch_report_submission(info, batch, statuses)])
            if await self.storage.mark_batch_reported(account_id, batch_id):
                sent += 1
        return sent

    async def get_message(self, account_id: str, message_id: str) -> tuple[Message, list[Delivery]]:
        message = await self.storage.get_message(account_id, message_id)
        if message is None:
            raise NotFound(f"no message {message_id}")
        deliveries = await self.storage.list_deliveries(
            account_id, message_id=message_id, limit=1000
        )
        return message, deliveries

    async def replay_delivery(self, account_id: str, delivery_id: str) -> str:
        delivery = await self.storage.get_delivery(account_id, delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery {delivery_id}")
        if delivery.state is not DeliveryState.DEAD:
            raise Conflict(f"delivery {delivery_id} is {delivery.state}; only dead ones replay")
        replayed = await self.storage.replay(account_id, self._now_ms(), delivery_id=delivery_id)
        if not replayed:
            raise Conflict(f"delivery {delivery_id} cannot be replayed: its endpoint was deleted")
        if self.on_ingest is not None:
            self.on_ingest()
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
            await self.get_endpoint(account_id, endpoint_id)
        replayed = await self.storage.replay(
            account_id, self._now_ms(), endpoint_id=endpoint_id, since=since, until=until
        )
        if replayed and self.on_ingest is not None:
            self.on_ingest()
        return replayed
