"""Idempotency keys: what counts as "the same request" when a key is sent again.

A client that retries a POST after a timeout sends the same ``Idempotency-Key`` and gets the
first message back instead of a second one. A key reused for a *different* request is a client
bug that silently answering with the first message would hide, so it is refused, as the IETF
Idempotency-Key draft (draft-ietf-httpapi-idempotency-key-header: a key reused with a
different payload is an error, not a replay) and Stripe do; the API answers 409
``idempotency_conflict``. Requests are compared by a fingerprint stored with the key.
"""

from __future__ import annotations

import hashlib

from postback.core.errors import IdempotencyConflict


def request_fingerprint(
    event_type: str, payload: bytes, callback_url: str | None, fanout: bool = False
) -> str:
    """SHA-256 over what a message is made of: event type, exact payload bytes, callback URL
    (and whether the subscribed endpoints get it too).

    Each part is length-prefixed, so no two different requests share an encoding. The key
    itself is not part of it: a body field and an ``Idempotency-Key`` header mean the same.
    """
    digest = hashlib.sha256()
    for part in (event_type.encode(), payload, (callback_url or "").encode(), b"+" * fanout):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def check_reuse(key: str, stored: str | None, fingerprint: str | None, index: int) -> None:
    """Raise ``IdempotencyConflict`` when ``key`` was first used for another request.

    ``None`` on either side means "not compared": keys stored before fingerprints existed,
    and Postback's own submissions that deliberately share a key (one batch report, whichever
    of two racing producers makes it). ``index`` is the message's position in its batch.
    """
    if stored is not None and fingerprint is not None and stored != fingerprint:
        raise IdempotencyConflict(key, index)
