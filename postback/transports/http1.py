"""A lean HTTP/1.1 client for callbacks: one POST per pooled keep-alive connection at a time.

A callback is always the same shape (POST, JSON body, a response judged by its status line),
so a general client's machinery (request objects, multidicts, cookie jars, redirect and
tracing hooks) is most of the cost of a delivery. This transport writes the request as one
buffer and parses the answer with httptools (llhttp, the parser Node.js uses). It keeps the
contract of ``transports/http.py``: no redirects followed, a hard per-attempt deadline, the
SSRF guard on the addresses actually connected to (a DNS answer is checked before connecting),
and a bounded, time-capped read of the response body once the status line has arrived.

Requests that need what it does not do (an egress proxy, a client certificate) go to the
aiohttp transport it wraps.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import aiohttp
import httptools

from postback.core.netguard import Network, resolved_blocked
from postback.core.outcome import AttemptResult, FailureKind, parse_retry_after
from postback.transports.base import OutboundRequest
from postback.transports.http import RESPONSE_BODY_LIMIT, HTTPTransport

DRAIN_LIMIT = 64 * 1024
"""Bodies up to this size are read whole so the connection can be reused."""
BODY_GRACE_S = 1.0
"""After the status line, how long the rest of the answer may take before we stop reading."""
IDLE_PER_ORIGIN = 512
"""Kept-alive connections per origin: as many as a process may have in flight by default
(``POSTBACK_MAX_IN_FLIGHT``), so a burst's connections are not closed only to be opened again."""
INVALID_RESPONSE = "invalid HTTP response from the endpoint"


@dataclass(frozen=True, slots=True)
class _Target:
    """A parsed callback URL: where to connect and what to put in the request line."""

    origin: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    head: bytes
    """``POST <path> HTTP/1.1`` and the Host header, ready to prefix the other headers."""


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname or ""
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    default = (tls and port == 443) or (not tls and port == 80)
    authority = f"[{host}]" if ":" in host else host
    if not default:
        authority += f":{port}"
    head = f"POST {path} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")
    return _Target((parts.scheme, host, port), host, port, tls, head)


class _Answer:
    """What the parser has seen of one response, and the one waiter the exchange parks on.

    Two flags and a bare future rather than ``asyncio.Event`` + ``wait_for``: ``wait_for``
    wraps each wait in a new task, which was the largest single cost of a delivery.
    """

    __slots__ = (
        "body",
        "complete",
        "control",
        "delimited",
        "finished",
        "headers_done",
        "keep_alive",
        "retry_after",
        "status",
        "status_seen",
        "truncated",
        "waiter",
    )

    def __init__(self) -> None:
        self.status = 0
        self.delimited = False
        """The body's end is announced (Content-Length or chunked), not the connection's close."""
        self.finished = False
        self.keep_alive = False
        self.truncated = False
        """The endpoint closed the connection before the announced end of the body."""
        self.retry_after: bytes | None = None
        self.control: bytes | None = None
        """The ``webhook-delivery`` header: the receiver's disable / abort-message request."""
        self.body = bytearray()
        self.status_seen = False
        """The status line and headers were parsed, or the exchange failed before them."""
        self.headers_done = False
        self.complete = False
        """Nothing more will be read for this answer."""
        self.waiter: asyncio.Future[bool] | None = None

    def mark_status_seen(self) -> None:
        self.status_seen = True
        self._wake()

    def mark_complete(self) -> None:
        self.complete = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(False)

    async def until_status_seen(self, loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
        """True once the status line is in (or the exchange failed); False at the deadline."""
        while not self.status_seen:
            if not await self._park(loop, deadline):
                return self.status_seen
        return True

    async def until_complete(self, loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
        while not self.complete:
            if not await self._park(loop, deadline):
                return self.complete
        return True

    async def _park(self, loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
        """Wait for the next signal; False if the deadline came first."""
        if loop.time() >= deadline:
            return False
        waiter: asyncio.Future[bool] = loop.create_future()
        self.waiter = waiter
        timer = loop.call_at(deadline, _time_up, waiter)
        try:
            timed_out = await waiter
        finally:
            timer.cancel()
            self.waiter = None
        return not timed_out


def _time_up(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; feeds bytes to the parser for the request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer: _Answer | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.closed = False
        self.error: str | None = None
        self.received_any = False
        self._header_name = b""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they write alike.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is not None and not self.answer.complete:
            if self.error is None:
                self.error = f"connection closed by the endpoint{f': {exc}' if exc else ''}"
                self.answer.truncated = self.answer.headers_done and self.answer.delimited
            if self.parser is not None and self.answer.headers_done:
                # A response without Content-Length ends when the connection does.
                with contextlib.suppress(httptools.HttpParserError):
                    self.parser.feed_data(b"")
            self.answer.mark_status_seen()
            self.answer.mark_complete()

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self.parser is None or self.answer is None:
            self.error = INVALID_RESPONSE  # bytes nobody asked for: do not reuse
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.error = INVALID_RESPONSE
            self.close()
        except httptools.HttpParserError:
            self.error = INVALID_RESPONSE
            self.answer.mark_status_seen()
            self.answer.mark_complete()
            self.close()

    # httptools callbacks
    def on_status(self, _status: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.answer is None:
            return
        lowered = name.lower()
        if lowered == b"retry-after":
            self.answer.retry_after = value
        elif lowered == b"webhook-delivery":
            self.answer.control = value
        elif lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self.answer.delimited = True

    def on_headers_complete(self) -> None:
        if self.answer is not None and self.parser is not None:
            self.answer.status = self.parser.get_status_code()
            # llhttp answers this only until the message is complete.
            self.answer.keep_alive = self.parser.should_keep_alive()
            self.answer.headers_done = True
            self.answer.mark_status_seen()

    def on_body(self, body: bytes) -> None:
        answer = self.answer
        if answer is None:
            return
        room = DRAIN_LIMIT - len(answer.body)
        if room > 0:
            answer.body += body[:room]
        if len(body) > room:
            # A large (or endless) body: what we keep is enough, stop reading.
            self.error = self.error or "response body too large: not read to the end"
            answer.mark_complete()
            self.close()

    def on_message_complete(self) -> None:
        if self.answer is not None:
            self.answer.finished = True
            self.answer.mark_complete()

    # ours
    def begin(self) -> _Answer:
        self.answer = _Answer()
        if self.parser is None:
            # Kept across the answers of a kept-alive connection: the parser starts each new
            # message where the last one ended (a connection with leftovers is never reused).
            self.parser = httptools.HttpResponseParser(self)
        self.error = None
        self.received_any = False
        return self.answer

    def reusable(self) -> bool:
        return (
            not self.closed
            and self.error is None
            and self.answer is not None
            and self.answer.finished
            and self.answer.keep_alive
        )

    def finish(self) -> None:
        self.answer = None

    def close(self) -> None:
        """Hang up from our side (never counted as the endpoint cutting its answer short)."""
        if self.error is None:
            self.error = "closed by Postback"
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class BlockedAddress(Exception):
    """Every address a host resolves to is one the SSRF guard forbids."""


class HTTP1Transport:
    """The callback transport: lean HTTP/1.1 over pooled connections, aiohttp for the rest."""

    def __init__(
        self,
        fallback: HTTPTransport,
        *,
        allowed_networks: tuple[Network, ...] = (),
        guard: bool = True,
        proxy: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.fallback = fallback
        self._allowed = tuple(allowed_networks)
        self._guard = guard
        self._proxy = proxy
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._tls = ssl.create_default_context()
        self.user_agent = user_agent

    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session, for OAuth token requests and SNS calls."""
        return self.fallback.session()

    async def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        await self.fallback.close()

    async def send(self, request: OutboundRequest) -> AttemptResult:
        if self._proxy or request.ssl_context is not None or request.sns is not None:
            return await self.fallback.send(request)
        started = time.perf_counter()
        reason = self.fallback.literal_blocked(request.url)
        if reason is not None:
            return AttemptResult(status_code=None, failure=FailureKind.BLOCKED, error=reason)
        target = self._targets.get(request.url)
        if target is None:
            if len(self._targets) >= 10_000:
                self._targets.clear()
            target = self._targets[request.url] = _target(request.url)
        payload = self._encode(target, request)
        deadline = asyncio.get_running_loop().time() + request.timeout_s
        try:
            return await self._exchange(target, payload, deadline, started, request.timeout_s)
        except BlockedAddress as exc:
            return AttemptResult(status_code=None, failure=FailureKind.BLOCKED, error=str(exc))

    @staticmethod
    def _encode(target: _Target, request: OutboundRequest) -> bytes:
        lines = [target.head]
        for name, value in request.headers.items():
            lines.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
        lines.append(b"content-length: %d\r\n\r\n" % len(request.body))
        lines.append(request.body)
        return b"".join(lines)

    async def _exchange(
        self, target: _Target, payload: bytes, deadline: float, started: float, timeout_s: float
    ) -> AttemptResult:
        loop = asyncio.get_running_loop()
        for _ in range(2):  # a reused connection the endpoint had just closed: one new try
            connection, reused = self._idle_connection(target)
            try:
                if connection is None:
                    connection = await asyncio.wait_for(
                        self._connect(target), max(0.0, deadline - loop.time())
                    )
            except TimeoutError:
                return self._timeout(started, timeout_s)
            except OSError as exc:
                return self._network(started, f"{type(exc).__name__}: {exc}")
            answer = connection.begin()
            assert connection.transport is not None
            connection.transport.write(payload)
            if not await answer.until_status_seen(loop, deadline):
                connection.close()
                return self._timeout(started, timeout_s)
            if not answer.headers_done:
                connection.close()
                if reused and not connection.received_any:
                    continue
                return self._network(started, connection.error or INVALID_RESPONSE)
            if answer.truncated:
                # The endpoint hung up inside the body it announced: no complete answer.
                return self._network(started, connection.error or "connection closed")
            # The status line decides; the body is only read for the record, briefly.
            if not answer.complete:
                grace_end = min(loop.time() + BODY_GRACE_S, deadline)
                if not await answer.until_complete(loop, grace_end):
                    connection.close()  # a dripping body: the status line has decided
                if answer.truncated:
                    return self._network(started, connection.error or "connection closed")
            self._release(target, connection)
            retry_after = None
            if answer.status == 429 and answer.retry_after is not None:
                retry_after = parse_retry_after(answer.retry_after.decode("latin-1"), time.time())
            return AttemptResult(
                status_code=answer.status,
                retry_after_s=retry_after,
                duration_ms=(time.perf_counter() - started) * 1000,
                response_body=bytes(answer.body[:RESPONSE_BODY_LIMIT]).decode("utf-8", "replace")
                or None,
                control=None if answer.control is None else answer.control.decode("latin-1"),
            )
        return self._network(started, "connection closed by the endpoint")

    def _idle_connection(self, target: _Target) -> tuple[_Connection | None, bool]:
        idle = self._idle.get(target.origin)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection, True
        return None, False

    def _release(self, target: _Target, connection: _Connection) -> None:
        reusable = connection.reusable()
        connection.finish()
        if not reusable:
            connection.close()
            return
        idle = self._idle.setdefault(target.origin, deque())
        if len(idle) >= IDLE_PER_ORIGIN:
            connection.close()
            return
        idle.append(connection)

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        if self._guard:
            reason = resolved_blocked((str(info[4][0]) for info in infos), self._allowed)
            if reason is not None:
                # Checking the addresses we are about to connect to (not the ones seen when
                # the endpoint was saved) is what defeats DNS rebinding.
                raise BlockedAddress(f"{target.host} resolves to a {reason}")
        last: OSError | None = None
        for family, kind, proto, _name, address in infos:
            try:
                _transport, connection = await loop.create_connection(
                    _Connection,
                    host=str(address[0]),
                    port=target.port,
                    family=family,
                    proto=proto,
                    ssl=self._tls if target.tls else None,
                    server_hostname=target.host if target.tls else None,
                )
                del kind  # both event loops set TCP_NODELAY on their own
                return connection
            except OSError as exc:
                last = exc
        raise last or OSError(f"{target.host}: no address to connect to")

    @staticmethod
    def _timeout(started: float, timeout_s: float) -> AttemptResult:
        return AttemptResult(
            status_code=None,
            failure=FailureKind.TIMEOUT,
            error=f"no response within {timeout_s:g} s",
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    @staticmethod
    def _network(started: float, error: str) -> AttemptResult:
        return AttemptResult(
            status_code=None,
            failure=FailureKind.NETWORK,
            error=error[:300],
            duration_ms=(time.perf_counter() - started) * 1000,
        )
