"""The `postback` command: clear one-line errors, the schedules it prints, and a real
`postback serve` process killed and restarted with a retry pending."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postback.client import APIError, Client
from postback.core.wire import DeliveryOut
from tests.support.payloads import mo_text
from tests.support.processes import PostbackProcess, postback_env
from tests.support.receiver import Receiver, sequence, status
from tests.support.service import RunningPostback, free_port, wait_until


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postback", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["policies", "show", "{not json"], "policy must be one of"),
        (["policies", "show", '{"schedule_s": [-1]}'], "retry_policy.schedule_s[0]"),
        (["endpoints", "list", "--api-key", ""], "no API key"),
        (["endpoints", "list", "--api-key", "k", "--url", "http://127.0.0.1:9"], "cannot reach"),
        (["serve", "--database-url", "mysql://x"], "unsupported database URL"),
        (["policies", "show", "foo"], "presets are sinch, notify, vibes"),
    ],
)
def test_errors_are_one_line_without_traceback(
    args: list[str], message: str, tmp_path: Path
) -> None:
    env = postback_env(f"sqlite:///{tmp_path / 'x.db'}")
    env.pop("POSTBACK_API_KEY", None)
    result = run(*args, env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_argparse_errors_are_short() -> None:
    result = run("endpoints", "frobnicate")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "invalid choice" in result.stderr


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_serve_refuses_a_port_out_of_range(port: str) -> None:
    result = run("serve", "--port", port)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "port number from 1 to 65535" in result.stderr


def test_serve_on_a_busy_port_is_one_clear_line(tmp_path: Path) -> None:
    env = postback_env(f"sqlite:///{tmp_path / 'busy.db'}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", "--port", str(port), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{port}" in errors[0], result.stderr
    # The start-up line names the database by its absolute path.
    assert f"database: SQLite file {tmp_path / 'busy.db'}" in result.stderr


def test_policies_show_prints_the_sinch_schedule() -> None:
    result = run("policies", "show", "sinch")
    assert result.returncode == 0, result.stderr
    rows = [
        line.split()
        for line in result.stdout.splitlines()
        if line.split()[:1] and line.split()[0].isdigit()
    ]
    assert len(rows) == 16  # first attempt + 15 retries
    assert rows[1][1:3] == ["5s", "5s"] and rows[2][1:3] == ["5s", "10s"]
    assert " ".join(rows[-1][4:7]) == "22h 45m 20s"  # the last retry, 81920 s after the first
    assert "15 retries" in result.stdout
    vibes = run("policies", "show", "vibes").stdout
    assert "attempt timeout: 2000 ms" in vibes and vibes.count("5m") >= 5


def test_accounts_create_prints_json(tmp_path: Path) -> None:
    env = postback_env(f"sqlite:///{tmp_path / 'a.db'}")
    result = run("accounts", "create", "acme", "--json", env=env)
    assert result.returncode == 0, result.stderr
    account = json.loads(result.stdout)
    assert account["name"] == "acme" and account["api_key"].startswith("pbk_")
    assert account["id"].startswith("acc_")


async def test_restart_with_a_retry_pending_still_retries(
    tmp_path: Path, receiver: Receiver
) -> None:
    database = f"sqlite:///{tmp_path / 'restart.db'}"
    env = postback_env(database)
    account = json.loads(run("accounts", "create", "restart", "--json", env=env).stdout)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = PostbackProcess(["serve", "--port", str(port)], env, tmp_path / "serve.log")
    hook = receiver.on("/hook", sequence(status(500), status(200)))
    try:
        serve.start()
        async with Client(url, account["api_key"]) as pb:
            await wait_until(lambda: _healthy(pb), timeout=15)
            await pb.create_event_type("t", {"type": "object"})
            await pb.create_endpoint(hook, retry_policy={"schedule_s": [2]})
            accepted = await pb.send("t", {"n": 1})
            await receiver.wait_for("/hook", 1)

            async def retry_scheduled() -> bool:
                [d] = (await pb.get_message(accepted.id)).deliveries
                return d.state == "pending" and d.attempt_count == 1

            await wait_until(retry_scheduled)
        serve.kill()  # SIGKILL with the retry scheduled 2 s ahead
        killed_at = time.time()
        serve.start()
        async with Client(url, account["api_key"]) as pb:
            await wait_until(lambda: _healthy(pb), timeout=15)
            second = (await receiver.wait_for("/hook", 2, timeout=15))[1]

            async def delivered() -> DeliveryOut | None:
                [d] = (await pb.get_message(accepted.id)).deliveries
                return d if d.state == "delivered" else None

            delivery = await wait_until(delivered)
        assert serve.terminate() == 0  # SIGTERM: a clean exit
    finally:
        serve.kill()
    assert delivery.attempt_count == 2
    assert second.headers["webhook-id"] == accepted.id
    assert second.at >= killed_at
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


async def _healthy(pb: Client) -> bool:
    try:
        await pb.health()
        return True
    except APIError:
        return False


async def test_endpoint_send_and_delivery_commands(tmp_path: Path, receiver: Receiver) -> None:
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    env = postback_env(database)
    account = json.loads(run("accounts", "create", "cli", "--json", env=env).stdout)
    port = free_port()
    env["POSTBACK_URL"] = f"http://127.0.0.1:{port}"
    env["POSTBACK_API_KEY"] = account["api_key"]
    serve = PostbackProcess(["serve", "--port", str(port)], env, tmp_path / "serve.log").start()
    try:
        async with Client(env["POSTBACK_URL"], account["api_key"]) as pb:
            await wait_until(lambda: _healthy(pb), timeout=15)
        added = await asyncio.to_thread(
            run,
            "endpoints",
            "add",
            receiver.on("/cli", status(503)),  # notify retries a 5xx: stays pending
            "--event-type",
            "mo_text",
            "--policy",
            "notify",
            "--header",
            "X-Team=sms",
            "--json",
            env=env,
        )
        assert added.returncode == 0, added.stderr
        endpoint = json.loads(added.stdout)
        assert endpoint["event_types"] == ["mo_text"] and endpoint["headers"] == {"X-Team": "sms"}
        listed = await asyncio.to_thread(run, "endpoints", "list", env=env)
        assert endpoint["id"] in listed.stdout
        shown = json.loads(
            (
                await asyncio.to_thread(run, "endpoints", "show", endpoint["id"], "--json", env=env)
            ).stdout
        )
        assert shown["retry_policy"] == {"preset": "notify"}
        payload = tmp_path / "mo.json"
        payload.write_text(json.dumps(mo_text("from a file")))
        from_file = await asyncio.to_thread(run, "send", "mo_text", str(payload), env=env)
        from_stdin = await asyncio.to_thread(
            run, "send", "mo_text", env=env, stdin=json.dumps(mo_text("from stdin"))
        )
        assert from_file.returncode == 0 and from_stdin.returncode == 0, from_stdin.stderr
        bodies = {r.body for r in await receiver.wait_for("/cli", 2)}
        assert bodies == {payload.read_bytes(), json.dumps(mo_text("from stdin")).encode()}
        invalid = await asyncio.to_thread(
            run, "send", "mo_text", env=env, stdin=json.dumps(mo_text(body="x" * 2001))
        )
        assert invalid.returncode == 1 and "payload.body" in invalid.stderr
        listed_types = await asyncio.to_thread(run, "event-types", "list", env=env)
        assert "recipient_delivery_report_sms" in listed_types.stdout
        bad = await asyncio.to_thread(run, "send", "mo_text", env=env, stdin="{oops")
        assert bad.returncode == 1 and "not valid JSON" in bad.stderr
        dead = await asyncio.to_thread(run, "deliveries", "list", "--state", "pending", env=env)
        assert dead.returncode == 0 and endpoint["id"] in dead.stdout
    finally:
        serve.kill()


async def test_platform_keys_accounts_and_key_commands(
    postback: RunningPostback, sqlite_url: str, receiver: Receiver
) -> None:
    env = postback_env(sqlite_url, POSTBACK_URL=postback.url)
    env.pop("POSTBACK_API_KEY", None)

    async def cli(*args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
        result = await asyncio.to_thread(run, *args, env={**env, **extra}, stdin=stdin)
        assert "Traceback" not in result.stderr
        return result

    refused = await cli("keys", "create", "--platform")
    assert refused.returncode == 1 and "POSTBACK_ADMIN_TOKEN" in refused.stderr
    made = await cli(
        "keys", "create", "--platform", "--json", POSTBACK_ADMIN_TOKEN=postback.admin_token
    )
    assert made.returncode == 0, made.stderr
    platform_key = json.loads(made.stdout)["key"]
    assert platform_key.startswith("pbp_") and "shown only once" in made.stderr
    env["POSTBACK_API_KEY"] = platform_key

    created = await cli(
        "accounts", "create", "Shop One", "--external-id", "shop-1", "--no-key", "--json"
    )
    assert created.returncode == 0, created.stderr
    shop = json.loads(created.stdout)
    assert shop["external_id"] == "shop-1" and "api_key" not in shop
    clash = await cli("accounts", "create", "Shop Two", "--external-id", "shop-1")
    assert clash.returncode == 1 and "shop-1" in clash.stderr
    listed = await cli("accounts", "list", "--search", "SHOP")
    assert shop["id"] in listed.stdout and "shop-1" in listed.stdout
    shown = json.loads((await cli("accounts", "show", "shop-1", "--json")).stdout)
    assert shown["id"] == shop["id"]
    link = json.loads((await cli("accounts", "portal-link", "shop-1", "--json")).stdout)
    assert link["url"].startswith(postback.url + "/ui/portal?token=") and link["expires_at"]

    added = await cli("endpoints", "add", receiver.url("/shop"), "--account", "shop-1")
    assert added.returncode == 0, added.stderr
    sent = await cli(
        "send", "mo_text", "--account", "shop-1", stdin=json.dumps(mo_text("to shop one"))
    )
    assert sent.returncode == 0, sent.stderr
    [arrived] = await receiver.wait_for("/shop")
    assert b"to shop one" in arrived.body

    key = json.loads(
        (await cli("keys", "create", "--account", "shop-1", "--name", "ci", "--json")).stdout
    )
    keys = await cli("keys", "list", "--account", "shop-1")
    assert key["id"] in keys.stdout and key["key"] not in keys.stdout
    assert f"{key['prefix']}…{key['last4']}" in keys.stdout
    rotated = await cli("keys", "rotate", key["id"], "--grace-s", "60", "--json")
    new_key = json.loads(rotated.stdout)["key"]
    revoked = await cli("keys", "revoke", key["id"], POSTBACK_API_KEY=new_key)
    assert revoked.returncode == 0 and key["id"] in revoked.stdout
    gone = await cli("endpoints", "list", POSTBACK_API_KEY=key["key"])
    assert gone.returncode == 1 and "401" in gone.stderr
    mine = await cli("endpoints", "list", POSTBACK_API_KEY=new_key)
    assert mine.returncode == 0 and receiver.url("/shop") in mine.stdout
    denied = await cli("accounts", "list", POSTBACK_API_KEY=new_key)
    assert denied.returncode == 1 and "403" in denied.stderr


def test_a_serving_process_freezes_what_it_imported_and_collects_garbage_less_often() -> None:
    """serve and worker call settle_garbage_collector before serving: the imported modules
    are out of the collector's sight and young collections are rarer than CPython's 700."""
    probe = (
        "import gc\n"
        "from postback.cli.main import GC_THRESHOLDS, settle_garbage_collector\n"
        "before = gc.get_freeze_count()\n"
        "settle_garbage_collector()\n"
        "print(before, gc.get_freeze_count(), gc.get_threshold() == GC_THRESHOLDS)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    before, frozen, thresholds_set = done.stdout.split()
    assert before == "0"
    assert int(frozen) > 10_000  # the service's modules, classes and functions
    assert thresholds_set == "True"
