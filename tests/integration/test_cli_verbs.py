"""Every API verb of the `postback` command against a real Postback: exit codes, `--json`
parsed, tables for people, paging, and one line (never a traceback) for bad input."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postback.cli.main import main
from postback.client import Client
from tests.support.receiver import Receiver, status
from tests.support.service import RunningPostback, wait_until


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


def _run_main(argv: list[str]) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


@dataclass
class CLI:
    """The command line in this process (fast), with POSTBACK_URL/POSTBACK_API_KEY set."""

    url: str
    api_key: str
    pb: Client

    async def __call__(self, *argv: str) -> Result:
        return await asyncio.to_thread(_run_main, list(argv))


@pytest.fixture
async def cli(postback: RunningPostback, monkeypatch: pytest.MonkeyPatch) -> Any:
    pb = await postback.new_account("cli")
    monkeypatch.setenv("POSTBACK_URL", postback.url)
    monkeypatch.setenv("POSTBACK_API_KEY", pb.api_key or "")
    async with pb:
        yield CLI(postback.url, pb.api_key or "", pb)


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.code == code, (result.out, result.err)
    assert "Traceback" not in result.err and "internal error" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


async def test_endpoint_verbs(cli: CLI, receiver: Receiver) -> None:
    hook = receiver.url("/hook")
    added = (await cli("endpoints", "add", hook, "--event-type", "t", "--json")).json()
    assert added["url"] == hook and added["signing_secret"].startswith("whsec_")
    human = await cli("endpoints", "add", receiver.url("/second"), "--description", "two")
    assert human.code == 0 and "signing secret:" in human.out and "whsec_" in human.out
    second_id = next(line.split()[-1] for line in human.out.splitlines() if line.startswith("id:"))

    table = await cli("endpoints", "list")
    assert table.code == 0 and table.out.splitlines()[0].split()[:2] == ["id", "url"]
    assert added["id"] in table.out and second_id in table.out
    first_page = await cli("endpoints", "list", "--limit", "1", "--json")
    page = first_page.json()
    assert len(page["data"]) == 1 and page["next_cursor"]
    people = await cli("endpoints", "list", "--limit", "1")
    assert f"--cursor {page['next_cursor']}" in people.out
    rest = (await cli("endpoints", "list", "--cursor", page["next_cursor"], "--json")).json()
    everything = (await cli("endpoints", "list", "--all", "--json")).json()
    assert {e["id"] for e in everything["data"]} == {added["id"], second_id}
    assert [e["id"] for e in page["data"] + rest["data"]] == [e["id"] for e in everything["data"]]
    assert everything["next_cursor"] is None

    shown = (await cli("endpoints", "show", added["id"], "--json")).json()
    assert shown["id"] == added["id"] and "signing_secret" not in shown
    assert added["id"] in (await cli("endpoints", "show", added["id"])).out
    updated = await cli(
        "endpoints", "update", added["id"], "--endpoint-url", receiver.url("/moved"),
        "--policy", "notify", "--json",
    )  # fmt: skip
    assert updated.json()["url"] == receiver.url("/moved")
    assert updated.json()["retry_policy"] == {"preset": "notify"}
    assert (await cli("endpoints", "disable", added["id"], "--json")).json()["disabled"] is True
    assert (await cli("endpoints", "enable", added["id"], "--json")).json()["disabled"] is False
    assert "enabled" in (await cli("endpoints", "enable", added["id"])).out

    deleted = await cli("endpoints", "delete", second_id, "--json")
    assert deleted.json() == {"id": second_id, "deleted": True}
    gone = one_line_error(await cli("endpoints", "show", second_id))
    assert "404" in gone and second_id in gone
    nothing = one_line_error(await cli("endpoints", "update", added["id"]))
    assert "nothing to change" in nothing


async def test_endpoints_add_does_not_take_the_server_url_for_the_customers(cli: CLI) -> None:
    # `--url` is the Postback server: without the positional the command says so.
    line = one_line_error(await cli("endpoints", "add", "--url", "https://customer.example.com/cb"))
    assert "customer's callback URL" in line and "--url is the Postback server" in line
    assert (await cli.pb.list_endpoints()).data == []


async def test_message_delivery_and_attempt_verbs(
    cli: CLI, receiver: Receiver, tmp_path: Path
) -> None:
    hook = receiver.on("/flaky", status(503))
    endpoint = await cli.pb.create_endpoint(hook, retry_policy={"schedule_s": [0.1, 0.1]})
    payload = tmp_path / "event.json"
    payload.write_text(json.dumps({"order": 7}))
    sent = (await cli("send", "t", str(payload), "--json")).json()
    assert sent["deliveries"][0]["endpoint_id"] == endpoint.id
    message_id = (await cli("send", "t", str(payload), "--field", "id")).out.strip()
    assert message_id.startswith("msg_") and message_id != sent["id"]
    human = await cli("send", "t", str(payload))
    assert human.code == 0 and human.out.startswith("accepted msg_")

    async def dead() -> Any:
        page = (await cli("deliveries", "list", "--state", "dead", "--json")).json()
        return page["data"] if len(page["data"]) == 3 else None

    deliveries = await wait_until(dead, timeout=15)
    delivery_id = next(d["id"] for d in deliveries if d["message_id"] == sent["id"])

    message = (await cli("messages", "show", sent["id"], "--json")).json()
    assert message["payload"] == {"order": 7} and message["deliveries"][0]["id"] == delivery_id
    shown = await cli("messages", "show", sent["id"])
    assert '"order": 7' in shown.out and delivery_id in shown.out
    assert (await cli("deliveries", "show", delivery_id, "--json")).json()["state"] == "dead"
    assert "dead because:" in (await cli("deliveries", "show", delivery_id)).out

    attempts = (await cli("deliveries", "attempts", delivery_id, "--json")).json()
    assert [a["attempt_number"] for a in attempts["data"]] == [1, 2, 3]
    assert {a["status_code"] for a in attempts["data"]} == {503}
    first = (await cli("deliveries", "attempts", delivery_id, "--limit", "2", "--json")).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    table = await cli("deliveries", "attempts", delivery_id, "--limit", "2")
    assert "more: add --cursor" in table.out and "503" in table.out
    walked = (await cli("deliveries", "attempts", delivery_id, "--all", "--json")).json()
    assert walked["data"] == attempts["data"]

    by_message = (await cli("deliveries", "list", "--message", sent["id"], "--json")).json()
    assert [d["id"] for d in by_message["data"]] == [delivery_id]
    listed = await cli("deliveries", "list", "--all")
    assert listed.code == 0 and listed.out.count("dead") >= 3

    replayed = (await cli("replay", delivery_id, "--json")).json()
    assert replayed["delivery_ids"] == [delivery_id]
    again = one_line_error(await cli("replay", delivery_id))
    assert "409" in again  # not dead any more
    bulk = await cli("replay", "--endpoint", endpoint.id)
    assert bulk.code == 0 and bulk.out.startswith("replayed ")


async def test_local_and_global_forms(cli: CLI, receiver: Receiver, tmp_path: Path) -> None:
    health = (await cli("--json", "health")).json()
    assert health["status"] == "ok"
    assert "ok: postback" in (await cli("health")).out
    key = (await cli("keygen", "--json")).json()["key"]
    assert len(base64.b64decode(key)) == 32
    policy = (await cli("policies", "show", "sinch", "--json")).json()
    assert len(policy["schedule_s"]) == 15 and policy["schedule_s"][0] == 5
    types = (await cli("event-types", "list", "--json")).json()
    assert "mo_text" in {t["name"] for t in types["data"]}
    schema = tmp_path / "order.json"
    schema.write_text(json.dumps({"type": "object", "required": ["sku"]}))
    created = await cli("event-types", "add", "order.paid", "--schema", str(schema), "--json")
    assert created.json()["name"] == "order.paid"
    refused = one_line_error(await cli("send", "order.paid", str(schema)))
    assert "sku" in refused and "400" in refused
    # Something that is not Postback at --url is named as such.
    elsewhere = one_line_error(await cli("health", "--url", receiver.url("")))
    assert "not a Postback API" in elsewhere or "404" in elsewhere
    # Options before the command and after it mean the same.
    assert (await cli("--api-key", cli.api_key, "endpoints", "list", "--json")).json() == (
        await cli("endpoints", "list", "--json", "--api-key", cli.api_key)
    ).json()
    wrong_field = one_line_error(await cli("health", "--field", "nope"))
    assert "fields: status, version" in wrong_field


BAD_INPUT: list[tuple[list[str], Callable[[str], bool]]] = [
    (["messages", "show", "msg_missing"], lambda e: "404" in e and "msg_missing" in e),
    (["deliveries", "show", "dlv_missing"], lambda e: "404" in e),
    (["deliveries", "attempts", "dlv_missing"], lambda e: "404" in e),
    (["deliveries", "list", "--limit", "0"], lambda e: "from 1 to 1000" in e),
    (["endpoints", "add", "not a url"], lambda e: "400" in e and "url" in e),
    (["endpoints", "add", "http://x.example", "--header", "nope"], lambda e: "NAME=VALUE" in e),
    (["endpoints", "add", "http://x.example", "--policy", "foo"], lambda e: "presets" in e),
    (["send", "t", "/does/not/exist.json"], lambda e: "cannot read" in e),
    (["send", "nosuchtype", "-"], lambda e: "not valid JSON" in e),
    (["listen"], lambda e: "--secret" in e),
    (["listen", "--secret", "s", "--status", "99"], lambda e: "200 to 599" in e),
    (["health", "--url", "http://127.0.0.1:9"], lambda e: "cannot reach" in e),
    (["health", "--url", "::not a url::"], lambda e: "cannot reach" in e or "error" in e),
    (["endpoints", "list", "--api-key", "pbk_wrong"], lambda e: "401" in e),
]


@pytest.mark.parametrize(
    ("argv", "expected"), BAD_INPUT, ids=[" ".join(argv) for argv, _ in BAD_INPUT]
)
async def test_bad_input_is_one_line_without_traceback(
    postback: RunningPostback, argv: list[str], expected: Callable[[str], bool]
) -> None:
    async with await postback.new_account() as pb:
        env = {"PATH": "/usr/bin:/bin", "POSTBACK_URL": postback.url}
        env["POSTBACK_API_KEY"] = pb.api_key or ""
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "postback", *argv],
            capture_output=True,
            text=True,
            env=env,
            input="",
            timeout=60,
        )
    assert result.returncode in (1, 2), result
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("postback: error:", "usage:", "postback ")), result.stderr
    assert expected(result.stderr), result.stderr
