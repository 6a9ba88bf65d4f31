"""End-to-end throughput and latency of Postback on this machine (not part of the tests).

Starts `postback serve` (and optionally `postback worker`s) as subprocesses on a fresh database,
a minimal keep-alive HTTP receiver in another subprocess, registers endpoints on it, submits
events through POST /v1/messages/batch, and prints deliveries/s and latency percentiles.

    python bench/throughput.py                                  # SQLite, 5,000 messages x 4 endpoints
    python bench/throughput.py --database postgresql://127.0.0.1:5432/test --workers 2
    python bench/throughput.py --slow-endpoint                  # isolation: healthy rate with and
                                                                # without an endpoint that hangs
    python bench/throughput.py --rate 500                       # latency at a steady offered load

Latency is measured from the moment the batch's 202 reached the submitter to the moment the
receiver got the callback (both clocks are this machine's); "from submit" starts before the POST.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postback.client import Client  # noqa: E402

RECEIVER = r"""
import asyncio, json, re, signal, sys, time
arrivals = []
K = re.compile(rb'"k":(\d+)')
class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""
    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            path = head.split(b" ", 2)[1].decode()
            if path.startswith("/slow"):
                return  # never answer: the sender times out
            match = K.search(body)
            arrivals.append((path, int(match.group(1)) if match else -1, time.time()))
            self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Receiver, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    with open(sys.argv[2], "w") as out:
        json.dump(arrivals, out)
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Phase:
    name: str
    messages: int
    endpoints: int
    delivered: int
    seconds: float
    ingest_rate: float
    latencies_ack: list[float]
    latencies_submit: list[float]
    per_path_rate: dict[str, float]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="postback-bench-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.schema: str | None = None
        if args.database.startswith("postgres"):
            self.schema = f"pb_bench_{secrets.token_hex(4)}"
            joiner = "&" if "?" in args.database else "?"
            self.database = f"{args.database}{joiner}schema={self.schema}"
        else:
            self.database = f"sqlite:///{self.tmp / 'bench.db'}"
        self.env = dict(
            os.environ,
            POSTBACK_DATABASE_URL=self.database,
            POSTBACK_ADMIN_TOKEN="bench-admin",
            POSTBACK_SECRET_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
            POSTBACK_ALLOW_NETWORKS="127.0.0.0/8",
            POSTBACK_LOG_FORMAT="text",
        )
        self.api_port = free_port()
        self.receiver_port = free_port()

    def spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "postback", *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / log).open("wb"),
        )
        self.processes.append(process)
        return process

    async def start(self) -> None:
        if self.schema:
            subprocess.run(
                [sys.executable, "-m", "postback", "migrate"],
                env=self.env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        self.spawn(["serve", "--port", str(self.api_port)], "serve.log")
        for i in range(self.args.workers):
            self.spawn(["worker"], f"worker{i}.log")
        deadline = time.monotonic() + 30
        async with Client(self.api_url) as probe:
            while True:
                try:
                    await probe.health()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"serve did not start; see {self.tmp}/serve.log"
                        ) from None
                    await asyncio.sleep(0.1)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start_receiver(self, results: Path) -> subprocess.Popen[bytes]:
        script = self.tmp / "receiver.py"
        script.write_text(RECEIVER)
        process = subprocess.Popen(
            [sys.executable, str(script), str(self.receiver_port), str(results)],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        process.stdout.readline()  # "ready"
        return process

    async def phase(self, name: str, slow: bool) -> Phase:
        args = self.args
        results = self.tmp / f"arrivals-{name}.json"
        receiver = self.start_receiver(results)
        try:
            async with Client(self.api_url, admin_token="bench-admin") as admin:
                account = await admin.create_account(f"bench-{name}")
            async with Client(self.api_url, account.api_key, timeout_s=120) as pb:
                await pb.create_event_type(
                    "bench",
                    {"type": "object", "required": ["k"], "properties": {"k": {"type": "integer"}}},
                )
                base = f"http://127.0.0.1:{self.receiver_port}"
                healthy = [
                    (
                        await pb.create_endpoint(
                            f"{base}/fast{i}", retry_policy={"schedule_s": [1]}
                        )
                    ).id
                    for i in range(args.endpoints)
                ]
                if slow:
                    await pb.create_endpoint(
                        f"{base}/slow", timeout_ms=2000, retry_policy={"schedule_s": [60]}
                    )
                acked: dict[int, float] = {}
                submitted: dict[int, float] = {}
                semaphore = asyncio.Semaphore(args.concurrency)
                started = time.time()

                async def submit(first: int, count: int) -> None:
                    async with semaphore:
                        now = time.time()
                        batch = [
                            {
                                "event_type": "bench",
                                "payload": b'{"k":%d,"type":"recipient_delivery_report_sms","status":"Delivered","code":0}'
                                % k,
                            }
                            for k in range(first, first + count)
                        ]
                        await pb.send_batch(batch)
                        done = time.time()
                        for k in range(first, first + count):
                            submitted[k] = now
                            acked[k] = done

                if args.rate:
                    tasks = []
                    interval = args.batch / args.rate
                    for n, first in enumerate(range(0, args.messages, args.batch)):
                        await asyncio.sleep(max(0.0, started + n * interval - time.time()))
                        tasks.append(
                            asyncio.create_task(
                                submit(first, min(args.batch, args.messages - first))
                            )
                        )
                    await asyncio.gather(*tasks)
                else:
                    await asyncio.gather(
                        *(
                            submit(first, min(args.batch, args.messages - first))
                            for first in range(0, args.messages, args.batch)
                        )
                    )
                ingest_seconds = time.time() - started
                deadline = time.monotonic() + args.timeout
                while not await self._finished(pb, healthy):
                    if time.monotonic() > deadline:
                        raise RuntimeError("deliveries did not finish within --timeout")
                    await asyncio.sleep(0.2)
        finally:
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(30)
        arrivals = [a for a in json.loads(results.read_text()) if a[0].startswith("/fast")]
        times = [a[2] for a in arrivals]
        span = (max(times) - min(times)) if len(times) > 1 else float("nan")
        per_path: dict[str, list[float]] = {}
        for path, _k, at in arrivals:
            per_path.setdefault(path, []).append(at)
        return Phase(
            name=name,
            messages=args.messages,
            endpoints=args.endpoints,
            delivered=len(arrivals),
            seconds=span,
            ingest_rate=args.messages / ingest_seconds,
            latencies_ack=[at - acked[k] for _p, k, at in arrivals if k in acked],
            latencies_submit=[at - submitted[k] for _p, k, at in arrivals if k in submitted],
            per_path_rate={p: len(v) / span for p, v in per_path.items()},
        )

    @staticmethod
    async def _finished(pb: Client, endpoint_ids: list[str]) -> bool:
        """Nothing left pending or in flight for the healthy endpoints."""
        for endpoint_id in endpoint_ids:
            for state in ("pending", "delivering"):
                if (await pb.list_deliveries(state=state, endpoint_id=endpoint_id, limit=1)).data:
                    return False
        return True

    async def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.schema:
            import asyncpg

            conn = await asyncpg.connect(self.args.database.split("?")[0])
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            await conn.close()


def report(phase: Phase) -> None:
    ack = phase.latencies_ack
    sub = phase.latencies_submit
    print(
        f"[{phase.name}] {phase.delivered} deliveries ({phase.messages} messages x "
        f"{phase.endpoints} endpoints) in {phase.seconds:.2f} s = "
        f"{phase.delivered / phase.seconds:,.0f} deliveries/s; ingest {phase.ingest_rate:,.0f} msg/s"
    )
    print(
        f"[{phase.name}] latency from 202: p50 {percentile(ack, 0.5) * 1000:,.0f} ms, "
        f"p90 {percentile(ack, 0.9) * 1000:,.0f} ms, p99 {percentile(ack, 0.99) * 1000:,.0f} ms, "
        f"max {max(ack) * 1000:,.0f} ms; from submit p50 {percentile(sub, 0.5) * 1000:,.0f} ms, "
        f"p99 {percentile(sub, 0.99) * 1000:,.0f} ms"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument(
        "--endpoints", type=int, default=4, help="healthy endpoints (each gets every message)"
    )
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--concurrency", type=int, default=4, help="batches in flight")
    parser.add_argument(
        "--rate", type=float, default=0, help="messages/s to offer (0: as fast as accepted)"
    )
    parser.add_argument("--database", default="sqlite", help="'sqlite' or a postgresql:// URL")
    parser.add_argument("--workers", type=int, default=0, help="extra `postback worker` processes")
    parser.add_argument(
        "--slow-endpoint", action="store_true", help="run with and without a hanging endpoint"
    )
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    bench = Bench(args)
    print(
        f"Postback bench: python {platform.python_version()}, {os.cpu_count()} cores, "
        f"database {args.database}, workers {args.workers}, messages {args.messages}, "
        f"endpoints {args.endpoints}, batch {args.batch}, concurrency {args.concurrency}, "
        f"rate {args.rate or 'max'}"
    )
    try:
        await bench.start()
        if args.slow_endpoint:
            healthy = await bench.phase("healthy only", slow=False)
            report(healthy)
            mixed = await bench.phase("with a hanging endpoint", slow=True)
            report(mixed)
            a = healthy.delivered / healthy.seconds
            b = mixed.delivered / mixed.seconds
            print(
                f"healthy endpoints' rate with a hanging endpoint beside them: {b:,.0f}/s vs "
                f"{a:,.0f}/s alone (ratio {b / a:.2f})"
            )
        else:
            report(await bench.phase("run", slow=False))
    finally:
        await bench.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
