"""For the people who RECEIVE callbacks: check, parse and deduplicate them.

    from postback.receiver import Deduplicator, PayloadError, WebhookVerificationError, parse, verify

    verify(request.headers, raw_body, "whsec_...")   # WebhookVerificationError -> answer 401
    if seen.first_time(request.headers["webhook-id"]):
        event = parse(raw_body)                      # PayloadError names the JSON path
        queue.put_nowait(event)                      # process later; answer 2xx now

Importable with the core dependencies only (msgspec): no server, no HTTP client.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from postback.core import signing
from postback.core.errors import PostbackError
from postback.receiver.events import BUILT_IN_TYPES, Event

__all__ = [
    "BUILT_IN_TYPES",
    "Deduplicator",
    "PayloadError",
    "WebhookVerificationError",
    "check_basic",
    "check_bearer",
    "parse",
    "verify",
]


class WebhookVerificationError(PostbackError):
    """The request is not a genuine, fresh callback signed with one of your secrets."""


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"missing {name} header")


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: str | Sequence[str],
    *,
    tolerance: float = 300,
    now_s: float | None = None,
) -> None:
    """Check a callback's signature; raise WebhookVerificationError if it fails.

    Both schemes Postback signs with are understood: Standard Webhooks (``webhook-signature``)
    and Sinch's (``x-sinch-webhook-signature`` with its nonce and timestamp). ``body`` must be
    the raw bytes as received (not re-serialised JSON). ``secrets`` may list several (during a
    rotation both the old and the new secret are valid). Timestamps more than ``tolerance`` seconds
    away from now are refused, so a captured request cannot be replayed later.
    """
    candidates = [secrets] if isinstance(secrets, str) else list(secrets)
    if not candidates:
        raise WebhookVerificationError("no secret to verify with")
    now = time.time() if now_s is None else now_s
    if any(key.lower() == signing.SINCH_SIGNATURE for key in headers):
        try:
            signing.verify_sinch(
                candidates,
                _header(headers, signing.SINCH_NONCE),
                _header(headers, signing.SINCH_TIMESTAMP),
                _header(headers, signing.SINCH_SIGNATURE),
                body,
                now_s=now,
                tolerance_s=tolerance,
            )
        except signing.SignatureError as exc:
            raise WebhookVerificationError(str(exc)) from None
        return
    try:
        signing.verify(
            candidates,
            _header(headers, "webhook-id"),
            _header(headers, "webhook-timestamp"),
            _header(headers, "webhook-signature"),
            body,
            now_s=now,
            tolerance_s=tolerance,
        )
    except signing.SignatureError as exc:
        raise WebhookVerificationError(str(exc)) from None


class PayloadError(PostbackError, ValueError):
    """A callback body that does not fit its type; ``path`` is the JSON path at fault."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{message} (at {path})")
        self.path = path
        self.message = message


_AT_PATH = re.compile(r" - at `([^`]+)`$")
_decode = msgspec.json.Decoder().decode
_MAX_BODY = {"mo_text": 2000}


def _detect(data: Mapping[str, Any]) -> str | None:
    kind = data.get("type")
    if isinstance(kind, str):
        return kind
    if "template_version" in data and "notification_type" in data:
        return "notify_delivery_receipt"
    if "source_number" in data and "destination_number" in data:
        return "notify_received_text"
    return None


def parse(body: bytes | str | Mapping[str, Any], event_type: str | None = None) -> Event:
    """The typed, immutable event in a callback body.

    Sinch payloads name their type in ``type``; Notify's are recognised by their fields, or
    name the type with ``event_type``. Unknown extra fields are kept in ``event.extra``.
    """
    if isinstance(body, Mapping):
        data: Any = dict(body)
    else:
        try:
            data = _decode(body)
        except msgspec.DecodeError as exc:
            raise PayloadError("$", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("$", "expected a JSON object")
    name = event_type or _detect(data)
    if name is None:
        raise PayloadError("$.type", "cannot tell the event type: no `type` field")
    cls = BUILT_IN_TYPES.get(name)
    if cls is None:
        raise PayloadError("$.type", f"unknown event type {name!r}")
    known = {f.encode_name for f in msgspec.structs.fields(cls)} - {"extra"}
    try:
        event = msgspec.convert({k: v for k, v in data.items() if k in known}, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _AT_PATH.search(text)
        path = found.group(1) if found else "$"
        message = _AT_PATH.sub("", text)
        if "missing required field" in message:
            field = message.split("`")[1]
            path = f"{path}.{field}" if path != "$" else f"$.{field}"
        raise PayloadError(path, message) from None
    limit = _MAX_BODY.get(name)
    if limit is not None and len(getattr(event, "body", "")) > limit:
        raise PayloadError("$.body", f"body is longer than {limit} characters")
    extra = {k: v for k, v in data.items() if k not in known}
    return msgspec.structs.replace(event, extra=extra) if extra else event


class Deduplicator:
    """Remembers recent ``webhook-id`` values, so a callback delivered twice (at-least-once
    delivery: a retry after a lost response, a replay) is processed once.

    In memory, bounded by count and age; for several receiver processes use a shared store
    (e.g. a unique key in your database) with the same idea.
    """

    def __init__(
        self,
        *,
        ttl_s: float = 48 * 3600,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock

    def first_time(self, webhook_id: str) -> bool:
        """True the first time an id is offered (and remembers it), False after."""
        now = self._clock()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self._ttl_s and len(self._seen) < self._max_entries:
                break
            del self._seen[oldest]
        if webhook_id in self._seen:
            return False
        self._seen[webhook_id] = now
        return True


def check_basic(headers: Mapping[str, str], username: str, password: str) -> bool:
    """Whether the request carries these HTTP Basic credentials (constant-time compare)."""
    try:
        value = _header(headers, "authorization")
    except WebhookVerificationError:
        return False
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = f"{username}:{password}".encode()
    return hmac.compare_digest(given, expected)


def check_bearer(headers: Mapping[str, str], token: str) -> bool:
    """Whether the request carries this bearer token (Notify-style; constant-time compare)."""
    try:
        value = _header(headers, "authorization")
    except WebhookVerificationError:
        return False
    scheme, _, given = value.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
