"""POSTBACK_EGRESS_PROXY: every delivery leaves through the proxy (a fixed source address)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trustme

from tests.security.test_mutual_tls import TLSReceiver
from tests.support.proxy import CountingProxy
from tests.support.receiver import Receiver
from tests.support.service import RunningPostback, start_postback, wait_until


@pytest.fixture
async def proxy() -> AsyncIterator[CountingProxy]:
    running = await CountingProxy().start()
    yield running
    await running.stop()


@pytest.fixture
async def proxied(sqlite_url: str, proxy: CountingProxy) -> AsyncIterator[RunningPostback]:
    running = await start_postback(sqlite_url, egress_proxy=proxy.url)
    yield running
    await running.shutdown()


async def test_http_deliveries_go_through_the_proxy(
    proxied: RunningPostback, proxy: CountingProxy, receiver: Receiver
) -> None:
    async with await proxied.new_account() as pb:
        await pb.create_endpoint(receiver.url("/hook"))
        await pb.send_batch([{"event_type": "t", "payload": {"n": i}} for i in range(5)])
        arrivals = await receiver.wait_for("/hook", 5)
    assert len(arrivals) == 5
    forwarded = [r for r in proxy.requests if r.startswith(f"POST {receiver.url('/hook')}")]
    assert len(forwarded) == 5


async def test_https_deliveries_tunnel_through_the_proxy(
    proxied: RunningPostback, proxy: CountingProxy
) -> None:
    ca = trustme.CA()
    tls_receiver = await TLSReceiver(ca).start()
    try:
        async with await proxied.new_account() as pb:
            client = ca.issue_cert("client")
            await pb.create_endpoint(
                tls_receiver.url,
                tls={
                    "ca_bundle_pem": ca.cert_pem.bytes().decode(),
                    "cert_pem": "".join(b.bytes().decode() for b in client.cert_chain_pems),
                    "key_pem": client.private_key_pem.bytes().decode(),
                },
            )
            await pb.send("t", {"n": 1})

            async def arrived() -> bool:
                return len(tls_receiver.received) == 1

            await wait_until(arrived)
    finally:
        assert tls_receiver.runner is not None
        await tls_receiver.runner.cleanup()
    assert f"CONNECT 127.0.0.1:{tls_receiver.port}" in proxy.requests
