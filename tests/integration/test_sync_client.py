"""``SyncClient``: real, typed methods mirroring ``Client``; usable inside a running event loop
(Jupyter's situation); POSTBACK_URL/POSTBACK_API_KEY from the environment; page iterators."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from postback import Client, SyncClient
from postback.client import APIError
from tests.support.processes import PostbackProcess, postback_env
from tests.support.receiver import Receiver
from tests.support.service import free_port


def test_every_client_method_has_a_blocking_twin_with_its_signature() -> None:
    public = {
        name
        for name, member in inspect.getmembers(Client)
        if not name.startswith("_") and inspect.iscoroutinefunction(member) and name != "close"
    }
    assert public <= set(dir(SyncClient))
    for name in public:
        assert inspect.signature(getattr(SyncClient, name)) == inspect.signature(
            getattr(Client, name)
        ), name
        assert getattr(SyncClient, name).__doc__ == getattr(Client, name).__doc__
    iterators = {n for n in dir(Client) if n.startswith("iter_")}
    assert iterators and iterators <= set(dir(SyncClient))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A `postback serve` process (its own event loop: the test's may be blocked) and a key."""
    env = postback_env(f"sqlite:///{tmp_path / 'sync.db'}")
    import subprocess
    import sys

    created = subprocess.run(
        [sys.executable, "-m", "postback", "accounts", "create", "sync", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    api_key = json.loads(created.stdout)["api_key"]
    port = free_port()
    process = PostbackProcess(["serve", "--port", str(port)], env, tmp_path / "serve.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        with SyncClient(url, api_key) as probe:
            for _ in range(150):
                try:
                    probe.health()
                    break
                except APIError:
                    import time

                    time.sleep(0.1)
        yield url, api_key
    finally:
        process.kill()


async def test_sync_client_inside_a_running_loop(
    served: tuple[str, str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, api_key = served
    assert asyncio.get_running_loop().is_running()  # as in a Jupyter cell
    monkeypatch.setenv("POSTBACK_URL", url)
    monkeypatch.setenv("POSTBACK_API_KEY", api_key)
    with SyncClient() as pb:  # both from the environment
        assert pb.base_url == url and pb.api_key == api_key
        assert pb.health().status == "ok"
        pb.create_event_type("t", {"type": "object"})
        endpoint = pb.create_endpoint(receiver.url("/sync"), event_types=["t"])
        accepted = [pb.send("t", {"n": n}) for n in range(5)]
        walked = list(pb.iter_deliveries(page_size=2))  # three pages
        assert sorted(d.message_id for d in walked) == sorted(a.id for a in accepted)
        assert [e.id for e in pb.iter_endpoints(page_size=1)] == [endpoint.id]
        with pytest.raises(APIError) as missing:
            pb.get_message("msg_nope")
        assert missing.value.status == 404
    with pytest.raises(APIError, match="closed"):
        pb.health()

    # The async client's iterators walk the same pages.
    async with Client() as apb:
        seen = [d.id async for d in apb.iter_deliveries(page_size=2)]
        assert sorted(seen) == sorted(d.id for d in walked)
        one = walked[0].id
        attempts = [a async for a in apb.iter_attempts(one, page_size=1)]
        assert all(a.delivery_id == one for a in attempts)


def test_mypy_checks_sync_calls_against_the_async_signatures(tmp_path: Path) -> None:
    """The blocking methods are derived from the async ones, so mypy sees their real types."""
    from mypy import api

    snippet = tmp_path / "uses_sync_client.py"
    snippet.write_text(
        "from postback import SyncClient\n"
        "pb = SyncClient()\n"
        "reveal_type(pb.send)\n"
        'pb.send("t", {"n": 1}, idempotency_key=3)\n'
        "health: int = pb.health()\n"
    )
    out, _err, status = api.run(["--strict", str(snippet)])  # reuses .mypy_cache
    assert status == 1, out
    assert "def (event_type: builtins.str, payload:" in out or "def (event_type: str" in out
    assert "-> postback.core.wire.MessageAccepted" in out
    assert 'Argument "idempotency_key" has incompatible type "int"' in out
    assert 'expression has type "Health", variable has type "int"' in out
