"""HTTP transport on aiohttp: keep-alive pool, no redirects, a hard per-attempt timeout."""

from __future__ import annotations

import time

import aiohttp

from postback import __version__
from postback.core.outcome import AttemptResult, FailureKind, parse_retry_after
from postback.transport.base import OutboundRequest

RESPONSE_BODY_LIMIT = 1024
"""How much of a receiver's answer is kept on the attempt record (for the customer to read)."""
_DRAIN_LIMIT = 64 * 1024  # bodies up to this size are read whole so the connection is reused


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


class HTTPTransport:
    """POSTs over one shared aiohttp session (one pool; connections reused per host)."""

    def __init__(self, *, max_connections: int = 512) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self.user_agent = f"Postback/{__version__}"

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,  # the dispatcher bounds each endpoint's share itself
                keepalive_timeout=30,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def send(self, request: OutboundRequest) -> AttemptResult:
        session = self._get_session()
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=request.timeout_s)
        try:
            async with session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                length = response.content_length
                if length is not None and length <= _DRAIN_LIMIT:
                    raw = await response.read()
                else:
                    raw = await response.content.read(RESPONSE_BODY_LIMIT)
                    response.close()  # do not wait for a large or endless body
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
                )
        except TimeoutError:
            # Covers connect and read timeouts alike (aiohttp's are TimeoutError subclasses).
            return AttemptResult(
                status_code=None,
                failure=FailureKind.TIMEOUT,
                error=f"no response within {request.timeout_s:g} s",
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        except (aiohttp.ClientError, OSError) as exc:
            return self._network(exc, started)

    @staticmethod
    def _network(exc: BaseException, started: float) -> AttemptResult:
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
