"""Client TLS contexts for mutual TLS (Sinch: "provisioning the callback URL with client
keystore and password"; Vibes: client certificates).

Server certificate verification is always on: the customer may add CAs, never remove checks.
Python's ssl module loads certificates only from files, so the key is written for the moment
of loading into a private temporary directory, encrypted with a one-time password.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from postback.core.errors import PostbackError
from postback.core.model import ClientTLS


class TLSConfigError(PostbackError, ValueError):
    """Certificate material that cannot be used; the message says which part and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _private_key_and_chain(tls: ClientTLS) -> tuple[object | None, list[x509.Certificate]]:
    if tls.pkcs12_base64 is not None:
        if tls.cert_pem or tls.key_pem:
            raise TLSConfigError("tls", "give either cert_pem/key_pem or pkcs12_base64, not both")
        try:
            data = base64.b64decode(tls.pkcs12_base64, validate=True)
        except (binascii.Error, ValueError):
            raise TLSConfigError("tls.pkcs12_base64", "keystore is not base64") from None
        password = tls.pkcs12_password.encode() if tls.pkcs12_password is not None else None
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError as exc:
            raise TLSConfigError(
                "tls.pkcs12_password", f"cannot open the PKCS#12 keystore: {exc}"
            ) from None
        if key is None or cert is None:
            raise TLSConfigError("tls.pkcs12_base64", "keystore has no private key and certificate")
        return key, [cert, *extra]
    if tls.cert_pem is None and tls.key_pem is None:
        return None, []
    if not tls.cert_pem or not tls.key_pem:
        raise TLSConfigError("tls", "cert_pem and key_pem go together")
    try:
        chain = x509.load_pem_x509_certificates(tls.cert_pem.encode())
    except ValueError as exc:
        raise TLSConfigError("tls.cert_pem", f"not a PEM certificate: {exc}") from None
    try:
        key = serialization.load_pem_private_key(tls.key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise TLSConfigError("tls.key_pem", f"not an unencrypted PEM private key: {exc}") from None
    return key, chain


def client_ssl_context(tls: ClientTLS) -> ssl.SSLContext:
    """A verifying context that presents the endpoint's client certificate, if any."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if tls.ca_bundle_pem:
        try:
            context.load_verify_locations(cadata=tls.ca_bundle_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise TLSConfigError("tls.ca_bundle_pem", f"not a PEM CA bundle: {exc}") from None
    key, chain = _private_key_and_chain(tls)
    if key is None:
        return context
    one_time = secrets.token_bytes(32)
    key_pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time),
    )
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    with tempfile.TemporaryDirectory(prefix="postback-tls-") as directory:
        os.chmod(directory, 0o700)
        cert_path = os.path.join(directory, "cert.pem")
        key_path = os.path.join(directory, "key.pem")
        with open(cert_path, "wb") as handle:
            handle.write(chain_pem)
        with open(key_path, "wb") as handle:
            handle.write(key_pem)
        try:
            context.load_cert_chain(cert_path, key_path, password=one_time)
        except ssl.SSLError as exc:
            raise TLSConfigError("tls", f"certificate and key do not match: {exc}") from None
    return context
