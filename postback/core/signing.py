"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec "Signature scheme").

Each line below implements a rule of the spec:

* The signed content is ``msg_id + "." + timestamp + "." + body``, with the body byte-exact.
* The HMAC is SHA-256 keyed with the base64-decoded secret (the part after ``whsec_``).
* The header value is ``v1,`` + base64(hmac); several signatures (key rotation) are joined by
  single spaces, and a verifier accepts the message if any one of them matches.
* Verifiers reject timestamps too far from now (the spec suggests 5 minutes) to stop replays.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Iterable

from postback.core.errors import PostbackError

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"

# The scheme Sinch's own SDKs check (e.g. the Python SDK's
# validate_sinch_event_signature_with_nonce): base64(HMAC-SHA256(secret as UTF-8,
# body + "." + nonce + "." + timestamp)), in these headers.
SINCH_SIGNATURE = "x-sinch-webhook-signature"
SINCH_NONCE = "x-sinch-webhook-signature-nonce"
SINCH_TIMESTAMP = "x-sinch-webhook-signature-timestamp"
SINCH_ALGORITHM = "x-sinch-webhook-signature-algorithm"
SINCH_ALGORITHM_NAME = "HmacSHA256"


class SignatureError(PostbackError, ValueError):
    """A signature that does not verify, a stale timestamp, or a malformed secret."""


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise SignatureError("signing secret is not valid base64 after 'whsec_'") from exc
    if not 24 <= len(key) <= 64:
        raise SignatureError("signing secret must decode to 24 to 64 bytes")
    return key


def secret_from_key(key: bytes) -> str:
    """Format raw key bytes as a ``whsec_`` secret (the caller supplies the randomness)."""
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` for this message id and timestamp."""
    signed = b"%s.%d.%s" % (_utf8(msg_id), timestamp, body)
    # binascii directly: base64.b64encode is a Python wrapper around it, a frame per send.
    digest = binascii.b2a_base64(hmac_sha256(key, signed), newline=False).decode("ascii")
    return f"{SIGNATURE_VERSION},{digest}"


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) from the key's padded hash states, computed once per key.

    Every delivery is signed, usually with the same few keys. ``hmac.new`` and ``hmac.digest``
    look the algorithm up in OpenSSL's provider store on each call, which measured ~20 µs per
    signature inside the running service; copying two prepared SHA-256 states costs ~1 µs.
    """
    inner, outer = _padded_states(key)
    inner = inner.copy()
    inner.update(message)
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()


_SHA256_BLOCK = 64


@functools.lru_cache(maxsize=4096)
def _padded_states(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    return (
        hashlib.sha256(bytes(byte ^ 0x36 for byte in key)),
        hashlib.sha256(bytes(byte ^ 0x5C for byte in key)),
    )


def signature_header(keys: Iterable[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one signature per active key, space separated."""
    return " ".join(sign(key, msg_id, timestamp, body) for key in keys)


def _utf8(text: str) -> bytes:
    # Header values may carry anything; a lone surrogate must not turn into an exception.
    return text.encode("utf-8", "surrogatepass")


def _same(expected: str, offered: str) -> bool:
    """Constant-time comparison that also takes non-ASCII input (``compare_digest`` on str
    raises TypeError for it)."""
    return hmac.compare_digest(_utf8(expected), _utf8(offered))


def _fresh_timestamp(header: str, timestamp: str, now_s: float, tolerance_s: float) -> int:
    """The timestamp as an integer, refused when too far from now (replay protection)."""
    try:
        if not timestamp.isascii() or len(timestamp) > 20:
            raise ValueError(timestamp)  # a longer one would overflow a float below
        ts = int(timestamp)
    except ValueError as exc:
        raise SignatureError(f"{header} is not an integer") from exc
    if abs(now_s - ts) > tolerance_s:
        raise SignatureError(f"{header} is outside the tolerance window")
    return ts


def verify(
    secrets: Iterable[str],
    msg_id: str,
    timestamp: str,
    signature_header_value: str,
    body: bytes,
    *,
    now_s: float,
    tolerance_s: float = 300,
) -> None:
    """Raise SignatureError unless one signature in the header matches one of ``secrets``."""
    ts = _fresh_timestamp("webhook-timestamp", timestamp, now_s, tolerance_s)
    offered = [
        part.split(",", 1)[1]
        for part in signature_header_value.split(" ")
        if part.startswith(SIGNATURE_VERSION + ",")
    ]
    if not offered:
        raise SignatureError("webhook-signature carries no v1 signature")
    for secret in secrets:
        expected = sign(secret_key(secret), msg_id, ts, body).split(",", 1)[1]
        # compare_digest on every candidate: constant time per comparison.
        if any(_same(expected, candidate) for candidate in offered):
            return
    raise SignatureError("no signature matches")


def sinch_signature(secret: str, body: bytes, nonce: str, timestamp: int) -> str:
    """The ``x-sinch-webhook-signature`` value for this body, nonce and timestamp."""
    signed = b"%s.%s.%d" % (body, _utf8(nonce), timestamp)
    digest = hmac_sha256(secret.encode("utf-8"), signed)
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


def verify_sinch(
    secrets: Iterable[str],
    nonce: str,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    now_s: float,
    tolerance_s: float = 300,
) -> None:
    """Raise SignatureError unless ``signature`` is the Sinch-scheme HMAC under a secret."""
    ts = _fresh_timestamp(SINCH_TIMESTAMP, timestamp, now_s, tolerance_s)
    for secret in secrets:
        if _same(sinch_signature(secret, body, nonce, ts), signature):
            return
    raise SignatureError("no signature matches")
