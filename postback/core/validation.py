"""The field checks every input passes before it is stored: pure rules, no I/O.

Each check raises ``InvalidInput`` naming the JSON path of the offending value, so the API and
the CLI can tell a user exactly what to fix.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

import msgspec

from postback.core import signing
from postback.core.errors import InvalidInput
from postback.core.model import (
    RESERVED_HEADERS,
    Auth,
    BasicAuth,
    BearerAuth,
    NoAuth,
    OAuth2Auth,
    SNSDestination,
)
from postback.core.policy import PolicyError, RetryPolicy, validate_policy

MAX_BATCH = 1000
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 64
"""How deep arrays and objects may nest in a request body (a message's payload is one level
inside it). Deeper documents are refused before anything recursive (decoding, schema checks,
a receiver's parser) meets them."""

_BATCH_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-/]{0,127}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")


def new_signing_secret() -> str:
    return signing.secret_from_key(secrets.token_bytes(24))


# Bytes of a JSON document that matter for its nesting: strings (skipped whole, escapes and
# all; an unterminated one runs to the end so the scan stays linear), brackets and commas.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\[\s\S]?)*(?:"(\s*:)?|\Z)|[\[\]{},]')
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\[\s\S][^"\\]*)*"')
_QUOTED = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\')
# A URL is sent as it is stored: control characters and spaces would be percent-encoded on
# the way out (the URL called would differ from the one shown) or split the request line.
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
# Text no database stores alike: NUL (PostgreSQL refuses it, SQLite keeps it) and lone
# surrogates (not encodable as UTF-8).
_TEXT_FORBIDDEN = re.compile(r"[\x00\ud800-\udfff]")


def storable_text(text: str | None) -> str | None:
    """Text from outside (a receiver's answer, an error quoting it) as every backend keeps it:
    NUL and lone surrogates become U+FFFD. Why: PostgreSQL refuses NUL, and an attempt that
    cannot be stored would hold up every attempt recorded in the same write."""
    if text is None or _TEXT_FORBIDDEN.search(text) is None:
        return text
    return _TEXT_FORBIDDEN.sub("\ufffd", text)


def check_utf8(raw: bytes) -> None:
    """A request body must be UTF-8 throughout, inside its strings too (RFC 8259 section 8.1)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("$", f"request body is not valid UTF-8 (at byte {exc.start})") from None


def check_json_depth(raw: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a JSON document whose arrays and objects nest deeper than ``limit``; the error
    names the limit and the request field that goes too deep."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return  # cannot be deeper than the number of brackets it has
    if _nesting_within(raw, limit):
        return
    stack: list[list[Any]] = []  # [is_object, key or index]
    for match in _JSON_TOKEN.finditer(raw):
        token = match.group()
        first = token[:1]
        if first in (b"{", b"["):
            if len(stack) >= limit:
                raise InvalidInput(_path_of(stack), f"JSON is nested deeper than {limit} levels")
            stack.append([first == b"{", None if first == b"{" else 0])
        elif first in (b"}", b"]"):
            if stack:
                stack.pop()
        elif first == b",":
            if stack and not stack[-1][0]:
                stack[-1][1] += 1
        elif match.group(1) is not None and stack and stack[-1][0]:
            stack[-1][1] = token[1 : token.rindex(b'"')].decode("utf-8", "replace")


def _nesting_within(raw: bytes, limit: int) -> bool:
    """The fast answer for a well-formed document, in a few C-speed passes: keep only
    brackets, quotes and backslashes, drop the strings, then peel innermost pairs away. A pass
    of two replacements peels one or two levels, so emptying within ``limit // 2`` passes
    proves the depth is within ``limit``. Anything else (deep, unbalanced, an unterminated
    string) gets the exact token walk, which names the field."""
    kept = raw.translate(None, _NOT_STRUCTURE)
    if b"\\" in kept:
        brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_STRUCTURE)
    else:
        brackets = _QUOTED.sub(b"", kept.replace(b'""', b""))
    if b'"' in brackets:
        return False  # an unterminated string
    for _pass in range(limit // 2):
        if not brackets:
            return True
        peeled = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(peeled) == len(brackets):
            return False  # mismatched: leave it to the walk
        brackets = peeled
    return not brackets


def _path_of(stack: list[list[Any]]) -> str:
    """The request field that holds the deep part: ``payload``, ``[3].payload``."""
    path = ""
    for is_object, key in stack:
        if is_object and key is not None:
            return f"{path}.{key}" if path else str(key)
        if not is_object:
            path += f"[{key}]"
    return path or "$"


def check_text(value: object, field: str = "") -> None:
    """Walk a decoded request (Structs, lists, dicts, strings) and refuse NUL characters and
    lone surrogates in any string, naming the field. A payload (``msgspec.Raw``) is bytes and
    is not walked: its ``\\u0000`` escapes are stored as they came."""
    if isinstance(value, str):
        if _TEXT_FORBIDDEN.search(value):
            raise InvalidInput(
                field or "$", "text must not contain NUL characters or lone surrogates"
            )
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            check_text(getattr(value, name), f"{field}.{name}" if field else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, field or "$")  # named by where it is: the key cannot be quoted
            check_text(item, f"{field}.{key}" if field else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_text(item, f"{field}[{i}]")


def check_url(url: str, field: str = "url") -> str:
    if len(url) > 2048:
        raise InvalidInput(field, "URL is longer than 2048 characters")
    if _URL_FORBIDDEN.search(url):
        raise InvalidInput(
            field, "URL must not contain spaces or control characters (CR, LF, NUL…)"
        )
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


def check_event_types(event_types: list[str] | None) -> tuple[str, ...] | None:
    """An endpoint's subscription: None is every type, else a sorted set of valid names."""
    if event_types is None:
        return None
    if len(event_types) > 100:
        raise InvalidInput("event_types", "at most 100 event types per endpoint")
    for i, name in enumerate(event_types):
        check_event_type(name, f"event_types[{i}]")
    return tuple(sorted(set(event_types)))


def check_batch_id(batch_id: str) -> str:
    if not _BATCH_ID.match(batch_id):
        raise InvalidInput("batch_id", "batch_id must be 1-100 letters, digits, _ . : -")
    return batch_id
