"""Secrets sealed at rest: endpoint credentials and signing secrets are stored encrypted.

AES-256-GCM with a key from ``POSTBACK_SECRET_KEY`` (32 bytes, base64) or, failing that, from a
key file created on first start. The row's id is bound in as associated data, so a sealed value
copied into another row does not open. A database dump alone reveals no credential.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from postback.core.errors import PostbackError

log = logging.getLogger("postback.store.sealing")

PREFIX = "pbs1:"
KEY_BYTES = 32


class SealingError(PostbackError, ValueError):
    """A key that cannot be used, or a sealed value that does not open with it."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SealingError(f"the secret key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return "Sealer(<key hidden>)"

    @classmethod
    def ephemeral(cls) -> Sealer:
        """A throw-away key: for tests and tools that open storage without settings."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str, source: str = "POSTBACK_SECRET_KEY") -> Sealer:
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SealingError(
                f"{source} is not base64 (make one with `postback keygen`)"
            ) from None
        if len(key) != KEY_BYTES:
            raise SealingError(f"{source} must decode to {KEY_BYTES} bytes, got {len(key)}")
        return cls(key)

    @classmethod
    def from_key_file(cls, path: Path) -> Sealer:
        """Load the key file, creating it (mode 0600) on first start."""
        if path.exists():
            return cls.from_base64(path.read_text(), source=str(path))
        key = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        log.warning(
            "created a new secret key in %s: BACK IT UP. Endpoint credentials and signing "
            "secrets in the database cannot be read without it. Set POSTBACK_SECRET_KEY (or "
            "share this file) on every node of a fleet.",
            path,
        )
        return cls.from_base64(key, source=str(path))

    def derive_key(self, purpose: str) -> bytes:
        """A key for another purpose (e.g. signing UI sessions), derived from this one by
        HMAC-SHA256, so a fleet sharing the secret key shares it too; the sealing key itself
        is never used twice."""
        return hmac.new(self._key, b"postback/" + purpose.encode(), hashlib.sha256).digest()

    def seal(self, plaintext: str, row_id: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), row_id.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, token: str, row_id: str) -> str:
        if not token.startswith(PREFIX):
            raise SealingError(f"value for {row_id} is not sealed")
        raw = base64.b64decode(token[len(PREFIX) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], row_id.encode()).decode()
        except InvalidTag:
            raise SealingError(
                f"cannot open the sealed secrets of {row_id}: wrong POSTBACK_SECRET_KEY?"
            ) from None
