"""For the people who RECEIVE callbacks: verify that a request really came from Postback.

    from postback.receiver import verify, WebhookVerificationError

    try:
        verify(request.headers, raw_body, "whsec_...")
    except WebhookVerificationError:
        return 401

Importable with the core dependencies only: no server, no HTTP client.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from postback.core import signing

__all__ = ["WebhookVerificationError", "verify"]


class WebhookVerificationError(Exception):
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
    tolerance_s: float = 300,
    now_s: float | None = None,
) -> None:
    """Check a callback's signature; raise WebhookVerificationError if it fails.

    Both schemes Postback signs with are understood: Standard Webhooks (``webhook-signature``)
    and Sinch's (``x-sinch-webhook-signature`` with its nonce and timestamp). ``body`` must be
    the raw bytes as received (not re-serialised JSON). ``secrets`` may list several (during a
    rotation both the old and the new secret are valid). Timestamps more than ``tolerance_s``
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
                tolerance_s=tolerance_s,
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
            tolerance_s=tolerance_s,
        )
    except signing.SignatureError as exc:
        raise WebhookVerificationError(str(exc)) from None
