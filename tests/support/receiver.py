"""A real HTTP receiver on 127.0.0.1 that records what arrives and answers as scripted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

Behaviour = Callable[[web.Request, "Received"], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


async def ok(request: web.Request, received: Received) -> web.StreamResponse:
    return web.Response(status=200, text="ok")


def status(code: int, headers: dict[str, str] | None = None, body: str = "") -> Behaviour:
    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        return web.Response(status=code, headers=headers or {}, text=body)

    return respond


def sleep(seconds: float, then: Behaviour = ok) -> Behaviour:
    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return await then(request, received)

    return respond


async def close_mid_response(request: web.Request, received: Received) -> web.StreamResponse:
    """Send a status line and part of the headers, then drop the connection."""
    transport = request.transport
    assert transport is not None
    transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    transport.close()
    raise asyncio.CancelledError  # aiohttp must not try to write a response


def drip(code: int, seconds: float) -> Behaviour:
    """Send the status line and headers at once, then the body one byte every 0.2 s."""

    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        response = web.StreamResponse(status=code)
        response.content_length = 10_000
        await response.prepare(request)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await response.write(b".")
            await asyncio.sleep(0.2)
        return response

    return respond


async def not_http(request: web.Request, received: Received) -> web.StreamResponse:
    """Answer with something that is not HTTP at all."""
    transport = request.transport
    assert transport is not None
    transport.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    transport.close()
    raise asyncio.CancelledError


def sequence(*behaviours: Behaviour) -> Behaviour:
    """Answer the n-th request with the n-th behaviour (the last one repeats)."""
    calls = {"n": 0}

    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        index = min(calls["n"], len(behaviours) - 1)
        calls["n"] += 1
        return await behaviours[index](request, received)

    return respond


@dataclass
class Receiver:
    """Routes: path -> behaviour; unknown paths answer 200."""

    routes: dict[str, Behaviour] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def on(self, path: str, behaviour: Behaviour) -> str:
        self.routes[path] = behaviour
        return self.url(path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            at=time.time(),
        )
        self.received.append(received)
        assert self._arrived is not None
        async with self._arrived:
            self._arrived.notify_all()
        behaviour = self.routes.get(request.path, ok)
        return await behaviour(request, received)

    async def start(self) -> Receiver:
        self._arrived = asyncio.Condition()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Do not wait for handlers still sleeping (a "hanging receiver") at teardown.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` requests arrived at ``path``; fail the test on timeout."""
        assert self._arrived is not None

        async def arrived() -> None:
            assert self._arrived is not None
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.at(path)) >= count)

        try:
            await asyncio.wait_for(arrived(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{len(self.at(path))} of {count} requests reached {path} within {timeout} s"
            ) from None
        return self.at(path)
