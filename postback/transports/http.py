"""HTTP transport on aiohttp: keep-alive pool, no redirects, a hard per-attempt timeout,
the SSRF guard at connect time, and an optional egress proxy."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from postback import __version__
from postback.core.netguard import Network, blocked_reason, literal_address, resolved_blocked
from postback.core.outcome import AttemptResult, FailureKind, parse_retry_after
from postback.transports.base import OutboundRequest

RESPONSE_BODY_LIMIT = 1024
"""How much of a receiver's answer is kept on the attempt record (for the customer to read)."""
_DRAIN_LIMIT = 64 * 1024  # bodies up to this size are read whole so the connection is reused
BODY_READ_LIMIT_S = 1.0
"""How long the body of an answer may take once its status line arrived. The status decides
the attempt (the seeds judge by the response code); the body is only kept for the record."""
INVALID_RESPONSE = "invalid HTTP response from the endpoint"


class BlockedDestination(OSError):
    """The resolved address of a callback host is one the SSRF guard forbids."""


class GuardedResolver(AbstractResolver):
    """Resolves like the system does, then refuses forbidden addresses.

    Checking the addresses we are about to connect to (not the ones seen when the endpoint was
    saved) is what defeats DNS rebinding.
    """

    def __init__(self, allowed: Sequence[Network]) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        reason = resolved_blocked((result["host"] for result in results), self._allowed)
        if reason is not None:
            raise BlockedDestination(f"{host} resolves to a {reason}")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


async def _read_body(response: aiohttp.ClientResponse, limit_s: float) -> bytes:
    """The start of an answer's body, read for at most ``limit_s`` seconds.

    A body that is short and announced is read whole so the connection can be reused; anything
    larger, endless or dripping is cut after ``limit_s`` and its connection closed: the status
    line has already decided the attempt. A body cut short by the receiver (the connection
    closed before the announced length) raises: RFC 9112 section 8 calls that message
    "incomplete", so it is no answer.
    """
    length = response.content_length
    wanted = length if length is not None and length <= _DRAIN_LIMIT else RESPONSE_BODY_LIMIT
    kept = bytearray()
    read = 0
    complete = False
    try:
        async with asyncio.timeout(limit_s):
            while read < wanted:
                chunk = await response.content.read(wanted - read)
                if not chunk:
                    break
                read += len(chunk)
                kept += chunk[: max(RESPONSE_BODY_LIMIT - len(kept), 0)]
            complete = response.content.at_eof()
    except TimeoutError:
        complete = False
    if not complete:
        response.close()  # do not wait for a large, endless or dripping body
    return bytes(kept)


def _blocked_cause(exc: BaseException) -> BlockedDestination | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BlockedDestination):
            return seen
        os_error = getattr(seen, "os_error", None)
        if isinstance(os_error, BlockedDestination):
            return os_error
        seen = seen.__cause__ or seen.__context__
    return None


class HTTPTransport:
    """POSTs over one shared aiohttp session (one pool; connections reused per host)."""

    def __init__(
        self,
        *,
        max_connections: int = 512,
        allowed_networks: Sequence[Network] = (),
        guard: bool = True,
        proxy: str | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._allowed = tuple(allowed_networks)
        self._guard = guard
        self._proxy = proxy
        self._session: aiohttp.ClientSession | None = None
        self._literal_verdicts: dict[str, str | None] = {}
        self.user_agent = f"Postback/{__version__}"

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Behind an egress proxy we resolve only the proxy's own name, so the resolver
            # guard would judge the proxy, not the target; literal targets are still checked
            # and the proxy enforces the egress policy of the deployment.
            resolver = GuardedResolver(self._allowed) if self._guard and not self._proxy else None
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,  # the dispatcher bounds each endpoint's share itself
                keepalive_timeout=30,
                resolver=resolver,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                cookie_jar=aiohttp.DummyCookieJar(),
                # Session-wide, so token requests and SNS calls leave through it too.
                proxy=self._proxy,
            )
        return self._session

    def literal_blocked(self, url: str) -> str | None:
        """Why a URL whose host is a literal address must not be called, or None."""
        if not self._guard:
            return None
        # Checked on every send, for a handful of URLs: remember the answer per URL.
        if url in self._literal_verdicts:
            return self._literal_verdicts[url]
        host = URL(url).raw_host or ""
        address = literal_address(host)
        reason = None if address is None else blocked_reason(address, self._allowed)
        if len(self._literal_verdicts) >= 10_000:
            self._literal_verdicts.clear()
        self._literal_verdicts[url] = reason
        return reason

    async def send(self, request: OutboundRequest) -> AttemptResult:
        started = time.perf_counter()
        reason = self.literal_blocked(request.url)
        if reason is not None:
            return AttemptResult(status_code=None, failure=FailureKind.BLOCKED, error=reason)
        session = self.session()
        timeout = aiohttp.ClientTimeout(total=request.timeout_s)
        options: dict[str, Any] = {}
        if request.ssl_context is not None:
            options["ssl"] = request.ssl_context
        try:
            async with session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=timeout,
                allow_redirects=False,
                **options,
            ) as response:
                # The status line has arrived: it decides the attempt, whatever the body does.
                raw = await _read_body(response, min(BODY_READ_LIMIT_S, request.timeout_s))
                retry_after = None
                if response.status == 429:
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"), time.time()
                    )
                return AttemptResult(
                    status_code=response.status,
                    retry_after_s=retry_after,
                    duration_ms=(time.perf_counter() - started) * 1000,
                    response_body=raw[:RESPONSE_BODY_LIMIT].decode("utf-8", "replace") or None,
                    control=response.headers.get("webhook-delivery"),
                )
        except TimeoutError:
            # Covers connect and read timeouts alike (aiohttp's are TimeoutError subclasses).
            return AttemptResult(
                status_code=None,
                failure=FailureKind.TIMEOUT,
                error=f"no response within {request.timeout_s:g} s",
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        except aiohttp.ClientResponseError:
            # Raised (without a response) when the answer is not HTTP at all: aiohttp words it
            # as "400, message=Bad status line" though no 400 was ever received.
            return AttemptResult(
                status_code=None,
                failure=FailureKind.NETWORK,
                error=INVALID_RESPONSE,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        except (aiohttp.ClientError, OSError) as exc:
            blocked = _blocked_cause(exc)
            if blocked is not None:
                return AttemptResult(
                    status_code=None, failure=FailureKind.BLOCKED, error=str(blocked)
                )
            return AttemptResult(
                status_code=None,
                failure=FailureKind.NETWORK,
                error=_error_text(exc),
                duration_ms=(time.perf_counter() - started) * 1000,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
