"""`postback listen` end to end: a real Postback delivers to it; it verifies, prints, answers
the chosen status or forwards; a forged signature is refused with 401 and printed as such."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from postback.client import APIError, Client
from postback.core import signing
from postback.core.wire import DeliveryOut
from tests.support.payloads import mo_text
from tests.support.processes import PostbackProcess, postback_env
from tests.support.receiver import Receiver, status
from tests.support.service import RunningPostback, free_port, wait_until


async def _listening(url: str) -> bool:
    try:
        async with Client(url, "") as probe:
            await probe.health()
        return True
    except APIError:
        return False


async def start_listen(tmp_path: Path, name: str, *args: str) -> tuple[PostbackProcess, str, Path]:
    port = free_port()
    log = tmp_path / f"{name}.log"
    process = PostbackProcess(["listen", "--port", str(port), *args], postback_env(""), log)
    process.start()
    url = f"http://127.0.0.1:{port}"
    await wait_until(lambda: _listening(url), timeout=20)
    return process, url, log


async def final(pb: Client, message_id: str, attempts: int = 1) -> DeliveryOut:
    async def settled() -> DeliveryOut | None:
        [delivery] = (await pb.get_message(message_id)).deliveries
        return delivery if delivery.attempt_count >= attempts else None

    delivered: DeliveryOut = await wait_until(settled, timeout=20)
    return delivered


async def test_listen_verifies_prints_and_rejects_forgeries(
    postback: RunningPostback, tmp_path: Path
) -> None:
    async with await postback.new_account() as pb:
        # The secret comes first from Postback; listen is then started with it.
        port = free_port()
        endpoint = await pb.create_endpoint(
            f"http://127.0.0.1:{port}/callbacks", event_types=["mo_text"]
        )
        assert isinstance(endpoint.signing_secret, str)
        log = tmp_path / "listen.log"
        listen = PostbackProcess(
            ["listen", "--port", str(port), "--secret", endpoint.signing_secret],
            postback_env(""),
            log,
        ).start()
        try:
            await wait_until(lambda: _listening(f"http://127.0.0.1:{port}"), timeout=20)
            accepted = await pb.send("mo_text", mo_text("hello from postback"))
            delivery = await final(pb, accepted.id)
            assert delivery.state == "delivered" and delivery.last_status_code == 200

            # A forged callback: signed with another secret. Refused, and shown as refused.
            body = json.dumps(mo_text("forged")).encode()
            timestamp = int(time.time())
            forged = signing.signature_header(
                [signing.secret_key("whsec_" + "QUJD" * 8)], "msg_forged", timestamp, body
            )
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{port}/callbacks",
                    data=body,
                    headers={
                        "content-type": "application/json",
                        "webhook-id": "msg_forged",
                        "webhook-timestamp": str(timestamp),
                        "webhook-signature": forged,
                    },
                ) as answer,
            ):
                assert answer.status == 401
                assert (await answer.json())["error"]["code"] == "invalid_signature"
        finally:
            assert listen.terminate() == 0
    output = log.read_text()
    assert "Traceback" not in output
    [verified] = [line for line in output.splitlines() if "verified (standard-webhooks)" in line]
    assert verified.split()[1] == "mo_text" and verified.endswith("-> 200")
    assert f"webhook-id={accepted.id}" in output
    assert '"body": "hello from postback"' in output
    [rejected] = [line for line in output.splitlines() if "REJECTED" in line]
    assert "POST /callbacks" in rejected and rejected.endswith("-> 401")
    assert "forged" not in output.split("REJECTED", 1)[0]  # nothing of it printed as genuine
    assert endpoint.signing_secret not in output  # the secret is never printed


async def test_listen_answers_a_chosen_status_and_forwards(
    postback: RunningPostback, receiver: Receiver, tmp_path: Path
) -> None:
    async with await postback.new_account() as pb:
        # --status 500 (watch the retries), Sinch scheme, one JSON object per callback.
        failing, failing_url, failing_log = await start_listen(
            tmp_path, "failing", "--secret", "sinch-secret", "--status", "500", "--json"
        )
        app = receiver.on("/app", status(202, body="taken"))
        forwarding, forwarding_url, forwarding_log = await start_listen(
            tmp_path, "forwarding", "--secret", "whsec_" + "QUJD" * 8, "--forward-to", app
        )
        try:
            await pb.create_endpoint(
                failing_url + "/sinch",
                event_types=["t"],
                signing_secret="sinch-secret",
                signature_scheme="sinch",
                retry_policy={"schedule_s": [0.2]},
            )
            await pb.create_endpoint(
                forwarding_url + "/fwd", event_types=["u"], signing_secret="whsec_" + "QUJD" * 8
            )
            retried = await pb.send("t", {"n": 1})
            forwarded = await pb.send("u", {"n": 2})
            dead = await final(pb, retried.id, attempts=2)
            passed = await final(pb, forwarded.id)
            [arrived] = await receiver.wait_for("/app")
        finally:
            failing.terminate()
            forwarding.terminate()
    assert dead.state == "dead" and dead.last_status_code == 500
    records = [json.loads(line) for line in failing_log.read_text().splitlines() if "{" in line]
    assert len(records) == 2 and all(r["answer"] == "500" for r in records)
    assert records[0]["verified"] and records[0]["scheme"] == "sinch"
    assert records[0]["payload"] == {"n": 1} and records[0]["event_type"] == "(no type field)"
    # The forward target's answer is Postback's answer; the signature reached it intact.
    assert passed.state == "delivered" and passed.last_status_code == 202
    assert arrived.headers["webhook-id"] == forwarded.id
    assert signing.SINCH_SIGNATURE not in arrived.headers and "webhook-signature" in arrived.headers
    assert json.loads(arrived.body) == {"n": 2}
    assert f"202 from {app}" in forwarding_log.read_text()


async def test_listen_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    first, url, _log = await start_listen(tmp_path, "first", "--secret", "s")
    port = url.rsplit(":", 1)[1]
    try:
        second = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "postback", "listen", "--port", port, "--secret", "s"],
            capture_output=True,
            text=True,
            env=postback_env(""),
            timeout=60,
        )
    finally:
        first.terminate()
    assert second.returncode == 1
    assert "Traceback" not in second.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr.strip().splitlines()[-1]
