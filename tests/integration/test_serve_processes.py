"""``postback serve --processes 2``: two whole serve processes on one port and one SQLite file,
under a supervisor that restarts a dead child and stops them all on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from postback import Client
from tests.support.payloads import ANY_OBJECT
from tests.support.processes import PostbackProcess, postback_env
from tests.support.receiver import Receiver
from tests.support.service import free_port


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.add(int(entry.name))
    return found


async def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def wait_healthy(admin: Client) -> None:
    """Until the supervised service answers (its children take a moment to listen)."""
    for _ in range(300):
        try:
            await admin.health()
            return
        except Exception:
            await asyncio.sleep(0.1)
    await admin.health()  # fails the test with the real error


async def test_two_processes_share_the_port_survive_a_dead_child_and_stop_together(
    tmp_path: Path, receiver: Receiver
) -> None:
    port = free_port()
    env = postback_env(f"sqlite:///{tmp_path / 'pb.db'}", POSTBACK_ADMIN_TOKEN="admin")
    parent = PostbackProcess(
        ["serve", "--port", str(port), "--processes", "2"], env, tmp_path / "serve.log"
    ).start()
    assert parent.proc is not None
    parent_pid = parent.proc.pid
    url = f"http://127.0.0.1:{port}"
    try:
        async with Client(url, admin_token="admin") as admin:
            await wait_healthy(admin)
            account = await admin.create_account("multi")
        first_children = children_of(parent_pid)
        assert len(first_children) == 2
        started = time.monotonic()
        async with Client(url, account.api_key) as pb:
            await pb.create_event_type("t", ANY_OBJECT)
            await pb.create_endpoint(receiver.url("/hook"), event_types=["t"])
            for k in range(20):  # a new connection each: spread over both processes
                async with Client(url, account.api_key) as one:
                    await one.send("t", {"k": k})
            await wait_for(lambda: len(receiver.at("/hook")) >= 20)
            # A child that dies (after it started well) is started again; the service stays up.
            await asyncio.sleep(max(0.0, 5.5 - (time.monotonic() - started)))
            victim = sorted(first_children)[0]
            os.kill(victim, signal.SIGKILL)
            await wait_for(
                lambda: len(children_of(parent_pid)) == 2 and victim not in children_of(parent_pid)
            )
            for k in range(20, 30):
                async with Client(url, account.api_key) as one:
                    await one.send("t", {"k": k})
            await wait_for(lambda: len(receiver.at("/hook")) >= 30)
        keys = sorted(json.loads(r.body)["k"] for r in receiver.at("/hook"))
        assert set(keys) == set(range(30))
        survivors = children_of(parent_pid)
        assert parent.terminate(timeout=60) == 0
        for pid in survivors:
            assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)
    finally:
        parent.kill()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_a_child_that_cannot_start_stops_the_service_with_its_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = postback_env(f"sqlite:///{tmp_path / 'pb.db'}")
        parent = PostbackProcess(
            ["serve", "--port", str(port), "--processes", "2"], env, tmp_path / "serve.log"
        ).start()
        assert parent.proc is not None
        code = parent.proc.wait(60)
    assert code == 1
    log = (tmp_path / "serve.log").read_text()
    assert f"cannot listen on 127.0.0.1:{port}" in log
    assert "Traceback" not in log


async def test_a_second_service_on_the_same_port_is_refused_and_the_first_keeps_serving(
    tmp_path: Path,
) -> None:
    # SO_REUSEPORT would let the second service's children share the first one's port
    # silently; the supervisor must refuse before starting any child, as a single serve does.
    port = free_port()
    env = postback_env(f"sqlite:///{tmp_path / 'pb.db'}", POSTBACK_ADMIN_TOKEN="admin")
    first = PostbackProcess(
        ["serve", "--port", str(port), "--processes", "2"], env, tmp_path / "first.log"
    ).start()
    second = PostbackProcess(
        ["serve", "--port", str(port), "--processes", "2"],
        postback_env(f"sqlite:///{tmp_path / 'other.db'}"),
        tmp_path / "second.log",
    )
    assert first.proc is not None
    first_pid = first.proc.pid
    url = f"http://127.0.0.1:{port}"
    try:
        async with Client(url, admin_token="admin") as admin:
            await wait_healthy(admin)
            await wait_for(lambda: len(children_of(first_pid)) == 2)
            second.start()
            assert second.proc is not None
            code = await asyncio.to_thread(second.proc.wait, 60)
            assert code == 1
            lines = (tmp_path / "second.log").read_text().splitlines()
            assert lines[-1] == (
                f"postback: error: cannot listen on 127.0.0.1:{port}: Address already in use "
                "(is another Postback running? choose another port with --port)"
            )
            assert not any("Traceback" in line for line in lines)
            # Refused by the supervisor itself: no child started (none logged, none failed).
            assert not any("database:" in line or "while starting" in line for line in lines)
            # The first service is untouched: still serving, still both of its children.
            await admin.health()
            await admin.create_account("still-here")
        assert first.alive()
        assert len(children_of(first_pid)) == 2
        assert first.terminate(timeout=60) == 0
    finally:
        first.kill()
        second.kill()


async def test_serve_uses_two_cores_by_default_and_says_where_it_listens_once(
    tmp_path: Path,
) -> None:
    from postback.cli.config import available_cores

    port = free_port()
    env = postback_env(f"sqlite:///{tmp_path / 'pb.db'}", POSTBACK_ADMIN_TOKEN="admin")
    del env["POSTBACK_PROCESSES"]  # what a new user runs: no setting at all
    log_path = tmp_path / "serve.log"
    parent = PostbackProcess(["serve", "--port", str(port)], env, log_path).start()
    assert parent.proc is not None
    try:
        async with Client(f"http://127.0.0.1:{port}", admin_token="admin") as admin:
            await wait_healthy(admin)
        expected = min(2, available_cores())
        if expected > 1:
            await wait_for(lambda: len(children_of(parent.proc.pid)) == expected)  # type: ignore[union-attr]
            await wait_for(lambda: log_path.read_text().count("dispatcher started") == 1)
        assert parent.terminate(timeout=60) == 0
        text = log_path.read_text()
        assert text.count("API listening on") == 1, text
        assert text.count("shutting down") == 1, text
        if expected > 1:
            assert f"starting {expected} serve processes on port {port}" in text
    finally:
        parent.kill()
