"""Run a real Postback (API + dispatcher) in the test's event loop, on a free port."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from dataclasses import dataclass

from postback.cli.config import Settings
from postback.cli.serve import run_service
from postback.client import Client
from postback.store import open_storage
from tests.support.payloads import ANY_OBJECT, TEST_EVENT_TYPES
from tests.support.processes import LOOPBACK, TEST_SEALER, TEST_SECRET_KEY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningPostback:
    url: str
    admin_token: str
    database_url: str
    stop: asyncio.Event
    task: asyncio.Task[None]

    def client(self, api_key: str | None = None) -> Client:
        return Client(self.url, api_key, admin_token=self.admin_token)

    async def new_account(self, name: str = "acme") -> Client:
        """A client for a fresh account (its API key set), with the test event types."""
        async with self.client() as admin:
            account = await admin.create_account(name)
        async with self.client(account.api_key) as setup:
            for event_type in TEST_EVENT_TYPES:
                await setup.create_event_type(event_type, ANY_OBJECT)
        return self.client(account.api_key)

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def start_postback(
    database_url: str, admin_token: str = "test-admin-token", **overrides: object
) -> RunningPostback:
    """``overrides``: Settings fields, e.g. allow_networks="" to test the SSRF guard."""
    if not database_url.startswith("sqlite"):
        # PostgreSQL is migrated explicitly, as an operator would with `postback migrate`.
        storage = open_storage(database_url, TEST_SEALER)
        await storage.open(migrate=True)
        await storage.close()
    port = free_port()
    stop = asyncio.Event()
    ready = asyncio.Event()
    settings = Settings(
        database_url=database_url,
        admin_token=admin_token,
        secret_key=TEST_SECRET_KEY,
        allow_networks=LOOPBACK,  # receivers live on 127.0.0.1; the SSRF guard stays on
    )
    settings = dataclasses.replace(settings, **overrides)
    task = asyncio.create_task(
        run_service(settings, host="127.0.0.1", port=port, stop=stop, ready=ready)
    )
    ready_wait = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({task, ready_wait}, timeout=15, return_when="FIRST_COMPLETED")
    if task in done:
        ready_wait.cancel()
        task.result()  # raises the startup error
    if ready_wait not in done:
        raise AssertionError("Postback did not start within 15 s")
    return RunningPostback(
        url=f"http://127.0.0.1:{port}",
        admin_token=admin_token,
        database_url=database_url,
        stop=stop,
        task=task,
    )


async def wait_until(condition, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async ``condition()`` until it returns something truthy; return that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")
        await asyncio.sleep(interval)
