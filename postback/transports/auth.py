"""How Postback authenticates itself to a customer's endpoint: the Authorization header.

    none / basic / bearer   a header fixed by the endpoint's configuration
    oauth2                  a bearer token fetched from the customer's token URL (RFC 6749),
                            cached until shortly before it expires, fetched once for all
                            concurrent deliveries, and refetched when the endpoint answers 401

Signing (``webhook-signature``) is independent of this and is on with every method.
Nothing here logs a credential or a token.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

import aiohttp
import msgspec

from postback.core.errors import PostbackError
from postback.core.model import Auth, BasicAuth, BearerAuth, OAuth2Auth

TOKEN_TIMEOUT_S = 10.0
DEFAULT_TOKEN_LIFETIME_S = 300.0
"""Used when a token response has no ``expires_in`` (RFC 6749 section 5.1 makes it optional)."""


class AuthError(PostbackError):
    """Credentials could not be obtained (token URL down, refused, malformed answer)."""


class Authorizer(Protocol):
    async def authorization(self) -> str | None:
        """The Authorization header value for the next request, or None for no header."""

    @property
    def refreshable(self) -> bool:
        """Whether a 401 may be cured by fetching new credentials."""

    def invalidate(self, value: str) -> None:
        """The endpoint rejected ``value`` (401): do not use it again."""


class StaticAuthorizer:
    """none, HTTP Basic (RFC 7617) or a fixed bearer token (RFC 6750)."""

    refreshable = False

    def __init__(self, value: str | None) -> None:
        self._value = value

    async def authorization(self) -> str | None:
        return self._value

    def invalidate(self, value: str) -> None:
        pass


def basic_header(username: str, password: str) -> str:
    pair = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


class TokenResponse(msgspec.Struct, kw_only=True):
    """RFC 6749 section 5.1 (extra members are allowed and ignored)."""

    access_token: str
    token_type: str
    expires_in: float | None = None


class TokenError(msgspec.Struct, kw_only=True):
    """RFC 6749 section 5.2."""

    error: str
    error_description: str | None = None


_decode_token = msgspec.json.Decoder(TokenResponse).decode
_decode_error = msgspec.json.Decoder(TokenError).decode


class OAuth2Authorizer:
    """Fetches and caches an access token for one endpoint."""

    refreshable = True

    def __init__(
        self,
        config: OAuth2Auth,
        session: Callable[[], aiohttp.ClientSession],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._session = session
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def authorization(self) -> str | None:
        token = self._valid_token()
        if token is None:
            async with self._lock:  # one fetch, however many deliveries are waiting
                token = self._valid_token()
                if token is None:
                    token = await self._fetch()
        return f"Bearer {token}"

    def invalidate(self, value: str) -> None:
        if self._token is not None and value == f"Bearer {self._token}":
            self._token = None

    def _valid_token(self) -> str | None:
        if self._token is not None and self._clock() < self._expires_at:
            return self._token
        return None

    def _form(self) -> dict[str, str]:
        config = self._config
        form: dict[str, str] = {"grant_type": config.grant}
        if config.grant == "password":
            form["username"] = config.username or ""
            form["password"] = config.password or ""
        if config.scope:
            form["scope"] = config.scope
        return form

    async def _fetch(self) -> str:
        config = self._config
        # Client authentication with HTTP Basic (RFC 6749 section 2.3.1: the method every
        # authorization server must support); id and secret are form-urlencoded first.
        client = basic_header(
            quote(config.client_id, safe=""), quote(config.client_secret, safe="")
        )
        where = f"token URL {config.token_url}"
        started = self._clock()
        try:
            async with self._session().post(
                config.token_url,
                data=self._form(),
                headers={"authorization": client, "accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=TOKEN_TIMEOUT_S),
                allow_redirects=False,
            ) as response:
                body = await response.read()
                status = response.status
        except TimeoutError:
            raise AuthError(f"{where} did not answer within {TOKEN_TIMEOUT_S:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise AuthError(f"{where} unreachable: {type(exc).__name__}: {exc}") from None
        self.fetches += 1
        if status != 200:
            detail = ""
            try:
                err = _decode_error(body)
                detail = f": {err.error}" + (
                    f" ({err.error_description})" if err.error_description else ""
                )
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
            raise AuthError(f"{where} refused the token request with HTTP {status}{detail}")
        try:
            token = _decode_token(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise AuthError(f"{where} answered without a valid token: {exc}") from None
        if token.token_type.lower() != "bearer":
            raise AuthError(
                f"{where} issued a {token.token_type!r} token; only bearer is supported"
            )
        lifetime = token.expires_in if token.expires_in is not None else DEFAULT_TOKEN_LIFETIME_S
        # Renew a little early (10% of the lifetime, at most 30 s) so no request carries a
        # token that expires in flight.
        margin = min(30.0, lifetime * 0.1)
        self._token = token.access_token
        self._expires_at = started + max(lifetime - margin, 0.0)
        return token.access_token


def build_authorizer(auth: Auth | None, session: Callable[[], aiohttp.ClientSession]) -> Authorizer:
    if isinstance(auth, BasicAuth):
        return StaticAuthorizer(basic_header(auth.username, auth.password))
    if isinstance(auth, BearerAuth):
        return StaticAuthorizer(f"Bearer {auth.token}")
    if isinstance(auth, OAuth2Auth):
        return OAuth2Authorizer(auth, session)
    return StaticAuthorizer(None)
