"""PostgreSQL restarting mid-run: the API answers 503 meanwhile, and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

from postback.client import APIError, Client
from postback.core.wire import EndpointCreate
from postback.ingest import Services
from postback.store import open_storage
from tests.support.processes import TEST_ALLOWED, TEST_SEALER, PostbackProcess, postback_env
from tests.support.receiver import Receiver
from tests.support.service import free_port, wait_until


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=60,
    )


async def test_postgres_restart_loses_nothing_acknowledged(
    postgres_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    storage = open_storage(postgres_url, TEST_SEALER)
    await storage.open(migrate=True)
    service = Services.build(storage, allowed_networks=TEST_ALLOWED)
    account, api_key = await service.accounts.create("restart")
    await service.event_types.create(account.id, "t", {"type": "object"})
    await service.endpoints.create(account.id, EndpointCreate(url=receiver.url("/hook")))
    await storage.close()

    port = free_port()
    server = PostbackProcess(
        ["serve", "--port", str(port)], postback_env(postgres_url), tmp_path / "serve.log"
    ).start()
    acknowledged: list[str] = []
    refusals: list[int] = []
    try:
        async with Client(f"http://127.0.0.1:{port}", api_key, timeout_s=10) as pb:
            deadline = time.monotonic() + 15
            while True:  # wait for the server to come up
                try:
                    await pb.health()
                    break
                except APIError:
                    assert time.monotonic() < deadline, "serve did not start"
                    await asyncio.sleep(0.1)

            async def submit_for(seconds: float) -> None:
                end = time.monotonic() + seconds
                n = 0
                while time.monotonic() < end:
                    n += 1
                    try:
                        accepted = await pb.send("t", {"n": n})
                        acknowledged.append(accepted.id)
                    except APIError as exc:
                        refusals.append(exc.status)
                        await asyncio.sleep(0.05)
                    await asyncio.sleep(0.01)

            submitter = asyncio.create_task(submit_for(6))
            await asyncio.sleep(1.5)
            await asyncio.to_thread(restart_postgres)
            await submitter

            async def everything_arrived() -> bool:
                return set(acknowledged) <= {r.headers["webhook-id"] for r in receiver.received}

            await wait_until(everything_arrived, timeout=60, interval=0.2)
        assert server.terminate() == 0
    finally:
        server.kill()
    log = (tmp_path / "serve.log").read_text()
    print(f"\n{len(acknowledged)} acknowledged, all delivered; refusals during restart: {refusals}")
    assert len(acknowledged) > 50
    # While the database was down the API said 503 (or the client could not connect), never 500.
    assert all(status in (503, 0) for status in refusals), refusals
    assert "Traceback" not in log
