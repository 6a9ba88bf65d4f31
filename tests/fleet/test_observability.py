"""Every process serves /metrics, /livez and /readyz: `serve` and two `worker`s on PostgreSQL,
scraped while they deliver, add up to the deliveries actually made; a worker whose database
goes away turns unready and comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from postback.core.wire import EndpointCreate
from tests.fleet.conftest import Fleet
from tests.support.processes import PostbackProcess, postback_env, worker
from tests.support.receiver import Receiver
from tests.support.service import free_port, wait_until
from tests.support.tcp_proxy import TCPProxy

FAST_GAUGES = {"POSTBACK_METRICS_INTERVAL_SECONDS": "1"}


async def get(url: str) -> tuple[int, str]:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(url) as response,
        ):
            return response.status, await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return 0, ""


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """``{sorted labels: value}`` of one sample name in a scrape."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(texts: Iterable[str], name: str, **labels: str) -> float:
    return sum(
        value
        for text in texts
        for key, value in samples(text, name).items()
        if all((k, v) in key for k, v in labels.items())
    )


async def scrape_all(ports: list[int]) -> list[str]:
    results = await asyncio.gather(*(get(f"http://127.0.0.1:{p}/metrics") for p in ports))
    assert all(status == 200 for status, _ in results), results
    return [text for _, text in results]


async def started(port: int) -> None:
    async def live() -> bool:
        return (await get(f"http://127.0.0.1:{port}/livez"))[0] == 200

    await wait_until(live, timeout=20)


async def test_serve_and_two_workers_metrics_add_up(
    fleet: Fleet, receiver: Receiver, postgres_url: str, tmp_path: Path
) -> None:
    await fleet.service.endpoints.create(
        fleet.account_id, EndpointCreate(url=receiver.url("/hook"))
    )
    api_port, ports = free_port(), [free_port(), free_port()]
    serve = PostbackProcess(
        ["serve", "--port", str(api_port)],
        postback_env(postgres_url, **FAST_GAUGES),
        tmp_path / "serve.log",
    )
    workers = [
        PostbackProcess(
            ["worker", "--metrics-port", str(port)],
            postback_env(postgres_url, **FAST_GAUGES),
            tmp_path / f"worker{i}.log",
        )
        for i, port in enumerate(ports)
    ]
    processes = [serve, *workers]
    all_ports = [api_port, *ports]
    try:
        for process in processes:
            process.start()
        for port in all_ports:
            await started(port)
        count = 600
        await fleet.submit(count)
        # Scraped while they deliver: never more than what arrived so far.
        seen_midway = False
        while len(receiver.at("/hook")) < count:
            texts = await scrape_all(all_ports)
            delivered = total(texts, "postback_deliveries_delivered_total")
            assert delivered <= len(receiver.at("/hook"))
            seen_midway = seen_midway or 0 < delivered < count
            await asyncio.sleep(0.05)
        assert len(receiver.received) == count

        async def all_counted() -> list[str] | None:
            texts = await scrape_all(all_ports)
            done = total(texts, "postback_deliveries_delivered_total") == count
            drained = all(
                samples(t, "postback_deliveries").get((("state", "pending"),)) == 0
                and samples(t, "postback_deliveries_due") == {(): 0.0}
                for t in texts
            )
            return texts if done and drained else None

        texts = await wait_until(all_counted, timeout=15)
        assert total(texts, "postback_attempts_total", outcome="delivered") == count
        assert total(texts, "postback_delivery_latency_seconds_count") == count
        assert total(texts, "postback_deliveries_delivered_total", event_type="t") == count
        assert total(texts, "postback_messages_ingested_total") == 0  # submitted directly
        # Submitted straight to the store: no ingest leased any of them, all were claimed.
        assert total(texts, "postback_deliveries_taken_total", path="claim") == count
        assert total(texts, "postback_deliveries_taken_total", path="fast") == 0
        for text in texts:  # process metrics and the fleet-wide gauges in every process
            assert samples(text, "process_resident_memory_bytes")
            assert samples(text, "postback_deliveries_due") == {(): 0.0}
            assert "# HELP postback_attempts_total" in text
        per_worker = [total([t], "postback_deliveries_delivered_total") for t in texts]
        assert sum(per_worker) == count
        for port in all_ports:
            status, body = await get(f"http://127.0.0.1:{port}/readyz")
            assert status == 200 and '"dispatcher":"ok"' in body
    finally:
        for process in processes:
            process.terminate()


async def test_multiprocess_mode_reports_the_host_total(
    fleet: Fleet, receiver: Receiver, postgres_url: str, tmp_path: Path
) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    await fleet.service.endpoints.create(
        fleet.account_id, EndpointCreate(url=receiver.url("/hook"))
    )
    ports = [free_port(), free_port()]
    workers = [
        worker(
            postgres_url,
            tmp_path / f"worker{i}.log",
            PROMETHEUS_MULTIPROC_DIR=str(shared),
        )
        for i in range(2)
    ]
    for w, port in zip(workers, ports, strict=True):
        w.args += ["--metrics-port", str(port)]
    try:
        for w in workers:
            w.start()
        for port in ports:
            await started(port)
        await fleet.submit(200)
        await receiver.wait_for("/hook", 200, timeout=30)

        async def host_total() -> list[str] | None:
            texts = await scrape_all(ports)
            each = [total([t], "postback_deliveries_delivered_total") for t in texts]
            return texts if each == [200, 200] else None

        # Either process answers with the sum over both (the library's multiprocess mode).
        await wait_until(host_total, timeout=15)
    finally:
        for w in workers:
            w.terminate()


async def test_readyz_turns_unready_while_the_database_is_unreachable(
    fleet: Fleet, postgres_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(postgres_url)
    proxy = await TCPProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    via_proxy = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    port = free_port()
    process = worker(via_proxy, tmp_path / "worker.log")
    process.args += ["--metrics-port", str(port)]
    readyz = f"http://127.0.0.1:{port}/readyz"
    try:
        process.start()
        await started(port)

        async def status_is(code: int) -> bool:
            return (await get(readyz))[0] == code

        await wait_until(lambda: status_is(200), timeout=10)
        await proxy.cut()
        began = time.monotonic()
        await wait_until(lambda: status_is(503), timeout=10)
        assert time.monotonic() - began < 8  # answered within the probe's short timeout
        status, body = await get(readyz)
        assert status == 503 and '"database":"' in body and '"status":"unavailable"' in body
        assert (await get(f"http://127.0.0.1:{port}/livez"))[0] == 200  # alive all along
        await proxy.start()  # same port: the database is back
        await wait_until(lambda: status_is(200), timeout=15)
        assert (await get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
    finally:
        # In a thread: the proxy lives in this event loop and must keep forwarding while the
        # worker shuts down.
        await asyncio.to_thread(process.terminate)
        await proxy.cut()
