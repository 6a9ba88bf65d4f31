"""The lean HTTP/1.1 transport against real sockets: the status line decides, bodies are read
briefly and boundedly, connections are reused, and what it does not do goes to aiohttp."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from postback.core.netguard import parse_networks
from postback.core.outcome import FailureKind
from postback.transports.base import OutboundRequest
from postback.transports.http import HTTPTransport
from postback.transports.http1 import HTTP1Transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Served:
    """A scripted server whose handlers all finish (and close their sockets) on exit."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.tasks: list[asyncio.Task[None]] = []
        self.done = asyncio.Event()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)  # type: ignore[arg-type]
        try:
            await self.handler(reader, writer)
            await self.done.wait()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        self.done.set()
        self.server.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


@pytest.fixture
async def transport() -> AsyncIterator[HTTP1Transport]:
    allowed = tuple(parse_networks("127.0.0.0/8"))
    lean = HTTP1Transport(HTTPTransport(allowed_networks=allowed), allowed_networks=allowed)
    yield lean
    await lean.close()


def post(port: int, path: str = "/hook", timeout_s: float = 2.0) -> OutboundRequest:
    return OutboundRequest(
        url=f"http://127.0.0.1:{port}{path}?a=1",
        headers={"content-type": "application/json", "webhook-id": "msg_1"},
        body=b'{"n":1}',
        timeout_s=timeout_s,
        endpoint_id="ep_1",
    )


async def test_request_is_well_formed_and_connections_are_reused(
    transport: HTTP1Transport,
) -> None:
    seen: list[bytes] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while len(seen) < 5:
            head, body = await read_request(reader)
            seen.append(head + body)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with Served(handler) as port:
        results = [await transport.send(post(port)) for _ in range(5)]
    assert [r.status_code for r in results] == [200] * 5
    assert results[0].response_body == "ok"
    assert connections == 1  # keep-alive
    first = seen[0]
    assert first.startswith(b"POST /hook?a=1 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}\r\n".encode() in first
    assert b"webhook-id: msg_1\r\n" in first and first.endswith(b'\r\n\r\n{"n":1}')


async def test_a_2xx_status_decides_even_if_the_body_drips(transport: HTTP1Transport) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nslow")
        await writer.drain()

    async with Served(handler) as port:
        result = await transport.send(post(port, timeout_s=3.0))
    assert result.status_code == 200 and result.failure is None
    assert result.response_body == "slow"


async def test_cut_answers_timeouts_and_garbage_are_failures(transport: HTTP1Transport) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        writer.close()

    for handler, kind, text in (
        (cut, FailureKind.NETWORK, "closed"),
        (silent, FailureKind.TIMEOUT, "no response within 0.5 s"),
        (garbage, FailureKind.NETWORK, "invalid HTTP response from the endpoint"),
    ):
        async with Served(handler) as port:
            result = await transport.send(post(port, timeout_s=0.5))
        assert result.status_code is None and result.failure is kind, handler
        assert result.error is not None and text in result.error


async def test_retry_after_and_large_bodies(transport: HTTP1Transport) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 5000000\r\n\r\n"
            + b"x" * 200_000
        )
        await writer.drain()

    async with Served(handler) as port:
        result = await transport.send(post(port))
    assert result.status_code == 429 and result.retry_after_s == 7
    assert result.response_body is not None and len(result.response_body) == 1024


async def test_ssrf_guard_applies_to_resolved_addresses() -> None:
    lean = HTTP1Transport(HTTPTransport(allowed_networks=()), allowed_networks=())
    try:
        literal = await lean.send(post(9, "/x"))
        named = await lean.send(
            OutboundRequest(
                url="http://localhost:9/x", headers={}, body=b"{}", timeout_s=1, endpoint_id="e"
            )
        )
    finally:
        await lean.close()
    assert literal.failure is FailureKind.BLOCKED
    assert named.failure is FailureKind.BLOCKED and "localhost resolves to a loopback" in (
        named.error or ""
    )
