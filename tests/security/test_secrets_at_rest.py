"""No credential is ever in the clear: not in the database file, not in the logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trustme

from tests.security.test_oauth2 import CLIENT_SECRET, TokenServer
from tests.support.receiver import Receiver
from tests.support.service import start_postback


async def test_database_and_logs_hold_no_secret_in_clear(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    database = tmp_path / "postback.db"
    tokens = await TokenServer().start()
    ca = trustme.CA()
    leaf = ca.issue_cert("client")
    key_pem = leaf.private_key_pem.bytes().decode()
    secrets = {
        "basic password": "basic-pass-7f3a9",
        "bearer token": "bearer-token-91c2e",
        "oauth client secret": CLIENT_SECRET,
        "oauth password": "oauth-user-pass-55d1",
        "sns secret key": "sns-secret-key-0b7e",
        "custom header value": "header-secret-3c8d",
    }
    running = await start_postback(f"sqlite:///{database}")
    try:
        async with await running.new_account() as pb:
            made = [
                await pb.create_endpoint(
                    receiver.url("/basic"),
                    auth={"type": "basic", "username": "u", "password": secrets["basic password"]},
                    headers={"X-Api-Key": secrets["custom header value"]},
                ),
                await pb.create_endpoint(
                    receiver.url("/bearer"),
                    auth={"type": "bearer", "token": secrets["bearer token"]},
                ),
                await pb.create_endpoint(
                    receiver.url("/oauth"),
                    auth={
                        "type": "oauth2",
                        "token_url": tokens.url,
                        "client_id": "postback-client",
                        "client_secret": CLIENT_SECRET,
                        "grant": "password",
                        "username": "u",
                        "password": secrets["oauth password"],
                    },
                ),
                await pb.create_endpoint(
                    f"https://127.0.0.1:{receiver.port}/tls",
                    tls={"cert_pem": leaf.cert_chain_pems[0].bytes().decode(), "key_pem": key_pem},
                    retry_policy={"schedule_s": [60]},
                ),
                await pb.create_endpoint(
                    None,
                    destination={
                        "type": "sns",
                        "topic_arn": "arn:aws:sns:eu-west-1:123456789012:t",
                        "region": "eu-west-1",
                        "access_key_id": "AKIAEXAMPLE",
                        "secret_access_key": secrets["sns secret key"],
                        "endpoint_url": receiver.url("/sns"),
                    },
                ),
            ]
            rotated = await pb.rotate_secret(made[0].id)
            await pb.send("t", {"n": 1})
            await receiver.wait_for("/basic")
            await receiver.wait_for("/oauth")
            await receiver.wait_for("/sns")
    finally:
        await running.shutdown()
        assert tokens.runner is not None
        await tokens.runner.cleanup()
    for endpoint in made:
        assert endpoint.signing_secret
        secrets[f"signing secret of {endpoint.id}"] = str(endpoint.signing_secret)
    secrets["rotated signing secret"] = rotated.key
    secrets["TLS private key"] = key_pem.splitlines()[1]  # a line of the key's base64 body
    stored = b"".join(
        path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("postback.db")
    )
    logged = caplog.text
    assert stored and logged
    for what, secret in secrets.items():
        assert secret.encode() not in stored, f"{what} is in the database file in clear"
        assert secret not in logged, f"{what} is in the logs"
    # The bearer token reached its receiver: the secrets were really used, not dropped.
    assert receiver.at("/bearer")[0].headers["authorization"] == f"Bearer {secrets['bearer token']}"
