"""Mutual TLS with certificates minted at test time (trustme): a receiver that requires a
client certificate accepts ours and rejects deliveries without one or from another CA."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator

import pytest
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from postback.client import APIError
from postback.core.wire import AttemptOut
from tests.support.service import RunningPostback, wait_until


class TLSReceiver:
    def __init__(self, ca: trustme.CA) -> None:
        self.ca = ca
        self.received: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        self.received.append(str(peer))
        return web.Response(status=204)

    async def start(self) -> TLSReceiver:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self.ca.configure_trust(context)  # client certificates must come from our CA
        context.verify_mode = ssl.CERT_REQUIRED
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hook"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_receiver(ca: trustme.CA) -> AsyncIterator[TLSReceiver]:
    receiver = await TLSReceiver(ca).start()
    yield receiver
    assert receiver.runner is not None
    await receiver.runner.cleanup()


def pem_pair(ca: trustme.CA) -> dict[str, str]:
    leaf = ca.issue_cert("postback-client@example.com")
    return {
        "cert_pem": "".join(b.bytes().decode() for b in leaf.cert_chain_pems),
        "key_pem": leaf.private_key_pem.bytes().decode(),
    }


async def last_attempt(pb, delivery_id: str) -> AttemptOut | None:  # type: ignore[no-untyped-def]
    attempts = (await pb.list_attempts(delivery_id)).data
    return attempts[-1] if attempts else None


async def test_client_certificate_from_pem_is_accepted(
    postback: RunningPostback, tls_receiver: TLSReceiver, ca: trustme.CA
) -> None:
    async with await postback.new_account() as pb:
        created = await pb.create_endpoint(
            tls_receiver.url, tls={**pem_pair(ca), "ca_bundle_pem": ca.cert_pem.bytes().decode()}
        )
        assert created.tls is not None and created.tls.client_certificate
        await pb.send("t", {"n": 1})

        async def arrived() -> bool:
            return len(tls_receiver.received) == 1

        await wait_until(arrived)
    assert "postback-client@example.com" in tls_receiver.received[0]


async def test_pkcs12_keystore_with_password(
    postback: RunningPostback, tls_receiver: TLSReceiver, ca: trustme.CA
) -> None:
    pair = pem_pair(ca)
    key = serialization.load_pem_private_key(pair["key_pem"].encode(), password=None)
    chain = x509.load_pem_x509_certificates(pair["cert_pem"].encode())
    keystore = pkcs12.serialize_key_and_certificates(
        b"client",
        key,  # type: ignore[arg-type]
        chain[0],
        chain[1:] or None,
        serialization.BestAvailableEncryption(b"keystore-pass"),
    )
    tls = {
        "pkcs12_base64": base64.b64encode(keystore).decode(),
        "ca_bundle_pem": ca.cert_pem.bytes().decode(),
    }
    async with await postback.new_account() as pb:
        with pytest.raises(APIError) as wrong:
            await pb.create_endpoint(tls_receiver.url, tls={**tls, "pkcs12_password": "nope"})
        assert wrong.value.status == 400 and wrong.value.field == "tls.pkcs12_password"
        await pb.create_endpoint(tls_receiver.url, tls={**tls, "pkcs12_password": "keystore-pass"})
        await pb.send("t", {"n": 1})

        async def arrived() -> bool:
            return len(tls_receiver.received) == 1

        await wait_until(arrived)


@pytest.mark.parametrize("which", ["no client certificate", "certificate from another CA"])
async def test_receiver_rejects_missing_or_foreign_certificate(
    postback: RunningPostback, tls_receiver: TLSReceiver, ca: trustme.CA, which: str
) -> None:
    tls: dict[str, str] = {"ca_bundle_pem": ca.cert_pem.bytes().decode()}
    if which == "certificate from another CA":
        tls.update(pem_pair(trustme.CA()))
    async with await postback.new_account() as pb:
        await pb.create_endpoint(tls_receiver.url, tls=tls, retry_policy={"schedule_s": [60]})
        accepted = await pb.send("t", {"n": 1})
        delivery_id = accepted.deliveries[0].id
        attempt = await wait_until(lambda: last_attempt(pb, delivery_id))
    assert tls_receiver.received == []
    assert attempt.outcome == "retry" and attempt.status_code is None
    assert attempt.error


async def test_server_certificate_is_verified(
    postback: RunningPostback, tls_receiver: TLSReceiver
) -> None:
    """Without the receiver's CA, Postback refuses the connection: verification is never off."""
    async with await postback.new_account() as pb:
        await pb.create_endpoint(tls_receiver.url, retry_policy={"schedule_s": [60]})
        accepted = await pb.send("t", {"n": 1})
        attempt = await wait_until(lambda: last_attempt(pb, accepted.deliveries[0].id))
    assert attempt.error is not None and "certificate" in attempt.error.lower()
    assert tls_receiver.received == []
