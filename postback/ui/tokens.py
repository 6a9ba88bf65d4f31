"""Signed, stateless tokens for the UI: portal links, browser sessions, CSRF tokens.

Pure functions (time comes in as a parameter). A token is ``base64url(claims JSON) "."
base64url(HMAC-SHA256(key, claims JSON))``; the key is derived from the process's secret key,
which every node of a fleet shares, so a token made on one node opens on every other and no
table is needed. A token states what it is for (``kind``): a portal link cannot be used as a
session cookie, an account's session cannot open the operator pages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Literal

import msgspec

from postback.core.errors import PostbackError

Kind = Literal["portal-link", "portal", "operator"]

PORTAL_LINK_TTL_MS = 10 * 60 * 1000
"""A portal link opens for 10 minutes (like a password-reset link: treat it as a secret)."""
SESSION_TTL_MS = 8 * 3600 * 1000
"""A browser session lasts a working day, then the customer asks the platform for a new link."""


class SessionTokenInvalid(PostbackError):
    """A UI token that is forged, expired, or made for another purpose."""


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    expires_at: int
    """Milliseconds since the epoch."""
    nonce: str
    """Random per token: the CSRF token of a session is derived from it."""
    account: str | None = None
    """The one account a portal link or portal session may see; None for the operator."""
    key_id: str | None = None
    """An operator who signed in with a platform key: the session ends when the key is revoked."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Claims)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def issue(
    key: bytes,
    kind: Kind,
    now_ms: int,
    ttl_ms: int,
    account: str | None = None,
    key_id: str | None = None,
) -> str:
    claims = Claims(
        kind=kind,
        expires_at=now_ms + ttl_ms,
        nonce=secrets.token_urlsafe(12),
        account=account,
        key_id=key_id,
    )
    body = _encoder.encode(claims)
    return f"{_b64(body)}.{_b64(_mac(key, body))}"


def verify(key: bytes, token: str, kind: Kind, now_ms: int) -> Claims:
    """The token's claims, if it was signed with ``key``, is of ``kind`` and has not expired."""
    body_text, dot, mac_text = token.partition(".")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except ValueError:
        raise SessionTokenInvalid("malformed token") from None
    # Compare MACs in constant time before parsing anything the sender controls.
    if not dot or not hmac.compare_digest(mac, _mac(key, body)):
        raise SessionTokenInvalid("bad signature")
    try:
        claims = _decoder.decode(body)
    except msgspec.MsgspecError:
        raise SessionTokenInvalid("malformed claims") from None
    if claims.kind != kind:
        raise SessionTokenInvalid(f"a {claims.kind} token, not a {kind} token")
    if claims.expires_at <= now_ms:
        raise SessionTokenInvalid("expired")
    if kind != "operator" and not claims.account:
        raise SessionTokenInvalid("no account")
    return claims


def csrf_token(key: bytes, session: Claims) -> str:
    """The CSRF token of one session: bound to it, so another session's token does not fit."""
    return _b64(_mac(key, b"csrf\x00" + session.nonce.encode()))


def check_csrf(key: bytes, session: Claims, presented: str) -> bool:
    return hmac.compare_digest(presented.encode(), csrf_token(key, session).encode())
