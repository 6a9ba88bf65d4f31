"""A small real HTTP proxy on 127.0.0.1: forwards absolute-form requests and tunnels CONNECT,
counting what passes through (for the fixed-egress tests)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class CountingProxy:
    requests: list[str] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> CountingProxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, version = request_line.split(" ", 2)
                self.requests.append(f"{method} {target}")
                if method == "CONNECT":
                    host, port = target.rsplit(":", 1)
                    up_reader, up_writer = await asyncio.open_connection(host, int(port))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await writer.drain()
                    await asyncio.gather(
                        _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
                    )
                    return
                await self._forward(reader, writer, method, target, version, header_lines)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        version: str,
        header_lines: list[str],
    ) -> None:
        url = urlsplit(target)
        length = 0
        headers = []
        for line in header_lines:
            if not line:
                continue
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            if name.lower() in ("proxy-connection", "connection"):
                continue
            headers.append(line)
        body = await reader.readexactly(length) if length else b""
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        path = url.path + (f"?{url.query}" if url.query else "")
        up_writer.write(
            f"{method} {path} {version}\r\n".encode()
            + "\r\n".join([*headers, "Connection: close"]).encode()
            + b"\r\n\r\n"
            + body
        )
        await up_writer.drain()
        response = await up_reader.read()
        up_writer.close()
        # Relay as-is but make the client reopen for its next request.
        writer.write(response)
        await writer.drain()
        raise ConnectionError("one request per proxied connection")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
