"""End-to-end throughput and latency of Postback on this machine (not part of the tests).

Starts `postback serve` (and optionally `postback worker`s) as subprocesses on a fresh database,
a minimal keep-alive HTTP receiver in another subprocess, registers endpoints on it, submits
events through POST /v1/messages/batch, and prints deliveries/s and latency percentiles.

    python bench/throughput.py                                  # SQLite, 5,000 messages x 4 endpoints
    python bench/throughput.py --database postgresql://127.0.0.1:5432/test --workers 2
    python bench/throughput.py --slow-endpoint                  # isolation: healthy rate with and
                                                                # without an endpoint that hangs
    python bench/throughput.py --rate 500                       # latency at a steady offered load
    python bench/throughput.py --endpoints 1 --stuck hang,429,disabled --backlog 100000
                                                                # isolation from a deep backlog
    python bench/throughput.py --endpoints 1 --scheduled 1000000  # future retries: rate, memory
    python bench/throughput.py --mix 1000                       # 1,000 customer URLs, then with
                                                                # 2 % slow and 2 % failing ones
    python bench/throughput.py --mix 1000 --mix-bad fail        # ... with the failing ones only

Every case is printed beside the baseline of the same run (ratio), with serve's RSS. With
`--rounds N` the baseline and the cases alternate N times, each case is compared with the
baselines just before and after it, and the median ratio is printed (rate, and event-loop CPU
per healthy delivery): this machine's speed drifts by a fifth within a minute.

    python bench/throughput.py --endpoints 1 --stuck hang --backlog 100000 --rounds 3

Each phase also prints the attempts serve made, by outcome (its /metrics). The run's directory
(database, logs) is removed at the end unless the run failed or BENCH_KEEP=1 is set.

Latency is measured from the moment the batch's 202 reached the submitter to the moment the
receiver got the callback (both clocks are this machine's); "from submit" starts before the POST.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from postback import native  # noqa: E402
from postback.client import Client  # noqa: E402

RECEIVER = r"""
import asyncio, json, re, signal, sys, time
arrivals = []
fast = 0  # arrivals on /fast paths, counted as they come: /count is asked five times a second
K = re.compile(rb'"k":(\d+)')
class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buffer = b""
    def data_received(self, data):
        global fast
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
            if path == "/count":
                n = str(fast).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(n), n))
                continue
            if path.startswith("/slow"):
                return  # never answer: the sender times out
            match = K.search(body)
            if path.startswith("/fast"):
                fast += 1
            arrivals.append((path, int(match.group(1)) if match else -1, time.time()))
            if path.startswith("/throttle"):
                self.transport.write(
                    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n"
                )
            elif path.startswith("/fail"):
                self.transport.write(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n")
            elif path.startswith("/delay"):
                write = self.transport.write
                asyncio.get_running_loop().call_later(
                    0.3, write, b"HTTP/1.1 204 No Content\r\n\r\n"
                )
            else:
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
if sys.argv[3] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def free_ports(count: int) -> list[int]:
    """Distinct free ports, bound all at once: one at a time, the kernel once handed the API's
    port to the receiver too, and the bench then asked Postback for the receiver's counts."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


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
    rss_mb: tuple[float, float] = (float("nan"), float("nan"))
    cpu_s: float = float("nan")
    """CPU seconds Postback's processes used in the phase (ingest, dispatch, record)."""
    loop_cpu_s: float = float("nan")
    """Of which their main threads (the event loops): what bounds one process's rate."""
    receiver_cpu_s: float = float("nan")
    """CPU seconds the receiver used from its start to the phase's end (it shares the cores)."""
    database_cpu_s: float = float("nan")
    """CPU seconds this machine's PostgreSQL server used in the phase (nan on SQLite)."""
    attempts: dict[str, int] = field(default_factory=dict)
    """Attempts made in the phase by outcome, from serve's /metrics (not the workers')."""


@dataclass
class Scenario:
    name: str
    slow: bool = False
    """A hanging endpoint subscribed to the healthy endpoints' events (--slow-endpoint)."""
    stuck: str | None = None
    """hang | 429 | disabled: an endpoint holding ``backlog`` due deliveries of its own."""
    backlog: int = 0
    stuck_count: int = 1
    """How many stuck endpoints share the backlog (each hanging one holds its share of slots)."""
    scheduled: int = 0
    """Deliveries waiting for a retry a day ahead, written straight into the database."""
    mix: int = 0
    """Each message to one of this many per-message callback URLs."""
    bad: bool = False
    """In the mix, 2 % slow (300 ms) and 2 % failing (503) URLs take a tenth of the messages."""


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
            # One metrics directory for serve's processes and the workers: serve's /metrics
            # then counts the whole fleet's attempts and claims.
            PROMETHEUS_MULTIPROC_DIR=str(self.tmp / "metrics"),
        )
        (self.tmp / "metrics").mkdir()
        self.api_port, self.receiver_port = free_ports(2)

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
        processes = ["--processes", self.args.processes] if self.args.processes else []
        self.spawn(["serve", "--port", str(self.api_port), *processes], "serve.log")
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
            [
                sys.executable,
                str(script),
                str(self.receiver_port),
                str(results),
                self.args.receiver,
            ],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        process.stdout.readline()  # "ready"
        return process

    async def phase(self, sc: Scenario) -> Phase:
        args = self.args
        name = sc.name
        results = self.tmp / f"arrivals-{name.replace(' ', '-')}.json"
        receiver = self.start_receiver(results)
        base = f"http://127.0.0.1:{self.receiver_port}"
        try:
            async with Client(self.api_url, admin_token="bench-admin") as admin:
                account = await admin.create_account(f"bench-{name}")
            async with Client(self.api_url, account.api_key, timeout_s=300) as pb:
                schema = {
                    "type": "object",
                    "required": ["k"],
                    "properties": {"k": {"type": "integer"}},
                }
                await pb.create_event_type("bench", schema)
                if sc.stuck or sc.scheduled:
                    await pb.create_event_type("parked", schema)
                stuck_ids = await self.make_stuck(pb, sc, base) if sc.stuck else []
                if sc.scheduled:
                    await self.make_scheduled(pb, sc, base)
                rss_before = self.serve_rss_mb()
                attempts_before = await self.attempts_by_outcome()
                cpu_before = self.postback_cpu_s()
                loop_cpu_before = self.postback_cpu_s(main_threads=True)
                database_before = self.database_cpu()
                healthy = []
                if not sc.mix:
                    healthy = [
                        (
                            await pb.create_endpoint(
                                f"{base}/fast{i}",
                                event_types=["bench"],
                                retry_policy={"schedule_s": [1]},
                            )
                        ).id
                        for i in range(args.endpoints)
                    ]
                if sc.slow:
                    await pb.create_endpoint(
                        f"{base}/slow",
                        event_types=["bench"],
                        timeout_ms=2000,
                        retry_policy={"schedule_s": [60]},
                    )
                targets = self.mix_targets(sc, base)
                expected_fast = sum(
                    1 for k in range(args.messages) if targets is None or "/fast" in targets(k)
                ) * (1 if targets is not None else args.endpoints)
                acked: dict[int, float] = {}
                submitted: dict[int, float] = {}
                semaphore = asyncio.Semaphore(args.concurrency)
                started = time.time()

                async def submit(first: int, count: int) -> None:
                    async with semaphore:
                        now = time.time()
                        batch = []
                        for k in range(first, first + count):
                            item: dict[str, object] = {
                                "event_type": "bench",
                                "payload": b'{"k":%d,"type":"recipient_delivery_report_sms","status":"Delivered","code":0}'
                                % k,
                            }
                            if targets is not None:
                                item["callback_url"] = targets(k)
                            batch.append(item)
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
                while await self.fast_arrivals() < expected_fast:
                    if time.monotonic() > deadline:
                        raise RuntimeError("deliveries did not finish within --timeout")
                    await asyncio.sleep(0.2)
                if healthy:
                    while not await self._finished(pb, healthy):  # attempts recorded too
                        if time.monotonic() > deadline:
                            raise RuntimeError("attempts were not recorded within --timeout")
                        await asyncio.sleep(0.2)
                rss_after = self.serve_rss_mb()
                cpu_used = self.postback_cpu_s() - cpu_before
                loop_cpu_used = self.postback_cpu_s(main_threads=True) - loop_cpu_before
                database_after = self.database_cpu()
                database_cpu_used = (
                    sum(t - database_before.get(pid, 0.0) for pid, t in database_after.items())
                    if database_after
                    else float("nan")
                )
                attempts_after = await self.attempts_by_outcome()
                # Each stuck case alone: the next one must not run beside this one's backlog
                # too (deleting an endpoint dead-letters its deliveries: not measured).
                for stuck_id in stuck_ids:
                    await pb.delete_endpoint(stuck_id)
            receiver_cpu = self.cpu_s_of(receiver.pid)
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
            endpoints=args.endpoints if not sc.mix else sc.mix,
            delivered=len(arrivals),
            seconds=span,
            ingest_rate=args.messages / ingest_seconds,
            latencies_ack=[at - acked[k] for _p, k, at in arrivals if k in acked],
            latencies_submit=[at - submitted[k] for _p, k, at in arrivals if k in submitted],
            per_path_rate={p: len(v) / span for p, v in per_path.items()},
            rss_mb=(rss_before, rss_after),
            cpu_s=cpu_used,
            loop_cpu_s=loop_cpu_used,
            receiver_cpu_s=receiver_cpu,
            database_cpu_s=database_cpu_used,
            attempts={
                outcome: count - attempts_before.get(outcome, 0)
                for outcome, count in attempts_after.items()
                if count > attempts_before.get(outcome, 0)
            },
        )

    def mix_targets(self, sc: Scenario, base: str) -> Callable[[int], str] | None:
        """Many customers: message k goes to one of ``sc.mix`` URLs; with ``sc.bad`` 2 % of
        the URLs answer after 300 ms and 2 % answer 503, and together they take a tenth of
        the messages (``--mix-bad`` keeps one kind only, the other's messages going to fast
        URLs)."""
        if not sc.mix:
            return None
        n_bad = max(1, sc.mix // 50)
        n_fast = sc.mix - 2 * n_bad if sc.bad else sc.mix

        def target(k: int) -> str:
            if sc.bad and k % 10 == 0:
                bad = (k // 10) % (2 * n_bad)
                kind = "delay" if bad < n_bad else "fail"
                if kind not in self.args.mix_bad:
                    return f"{base}/fast{(k * 7919) % n_fast}"
                return f"{base}/{kind}{bad}"
            return f"{base}/fast{(k * 7919) % n_fast}"

        return target

    async def fast_arrivals(self) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.receiver_port)
        writer.write(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        writer.close()
        return int(body)

    async def make_stuck(self, pb: Client, sc: Scenario, base: str) -> list[str]:
        """``sc.stuck_count`` endpoints holding ``sc.backlog`` due deliveries between them:
        they hang, answer 429, or are disabled."""
        url = f"{base}/throttle" if sc.stuck == "429" else f"{base}/slow"
        stuck = [
            await pb.create_endpoint(
                f"{url}{i}",
                event_types=["parked"],
                timeout_ms=2000,
                retry_policy={"schedule_s": [3600]},
            )
            for i in range(sc.stuck_count)
        ]
        # Every parked message goes to each of them. Messages skip disabled endpoints: a
        # disabled one gets its backlog first.
        messages = sc.backlog // sc.stuck_count
        for first in range(0, messages, 1000):
            count = min(1000, messages - first)
            await pb.send_batch(
                [{"event_type": "parked", "payload": b'{"k":-1}'} for _ in range(count)]
            )
        if sc.stuck == "disabled":
            for endpoint in stuck:
                await pb.update_endpoint(endpoint.id, disabled=True)
        print(
            f"[{sc.name}] {sc.stuck_count} stuck endpoint(s) ({sc.stuck}) hold "
            f"{messages * sc.stuck_count:,} deliveries"
        )
        return [endpoint.id for endpoint in stuck]

    async def make_scheduled(self, pb: Client, sc: Scenario, base: str) -> None:
        """``sc.scheduled`` deliveries waiting for a retry a day from now, written directly."""
        parked = await pb.create_endpoint(f"{base}/parked", event_types=["parked"])
        sent = await pb.send_batch([{"event_type": "parked", "payload": b'{"k":-2}'}])
        message_id = sent.data[0].id
        due = int((time.time() + 86_400) * 1000)
        now = int(time.time() * 1000)
        token = secrets.token_hex(3)  # unique per phase: --rounds runs the case again
        rows = (
            (f"dlv_sched{token}{i:09d}", message_id, "placeholder", parked.id, "parked", due, now)
            for i in range(sc.scheduled)
        )
        if self.schema is None:
            import sqlite3

            conn = sqlite3.connect(self.database.removeprefix("sqlite:///"), timeout=60)
            account_id = conn.execute(
                "SELECT account_id FROM endpoints WHERE id = ?", (parked.id,)
            ).fetchone()[0]
            with conn:
                conn.executemany(
                    "INSERT INTO deliveries (id, message_id, account_id, endpoint_id, event_type,"
                    " state, next_attempt_at, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                    ((r[0], r[1], account_id, r[3], r[4], r[5], r[6], r[6]) for r in rows),
                )
            conn.close()
        else:
            import asyncpg

            conn = await asyncpg.connect(
                self.args.database.split("?")[0], server_settings={"search_path": self.schema}
            )
            account_id = await conn.fetchval(
                "SELECT account_id FROM endpoints WHERE id = $1", parked.id
            )
            await conn.copy_records_to_table(
                "deliveries",
                records=[
                    (r[0], r[1], account_id, r[3], r[4], "pending", r[5], r[6], r[6]) for r in rows
                ],
                columns=[
                    "id",
                    "message_id",
                    "account_id",
                    "endpoint_id",
                    "event_type",
                    "state",
                    "next_attempt_at",
                    "created_at",
                    "updated_at",
                ],
            )
            await conn.close()
        print(f"[{sc.name}] {sc.scheduled:,} deliveries scheduled a day ahead")

    def _postback_pids(self) -> list[int]:
        """The processes started here and their descendants (``serve --processes`` children)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat[1])
        pids = {p.pid for p in self.processes}
        grown = True
        while grown:
            children = {pid for pid, ppid in parents.items() if ppid in pids} - pids
            grown = bool(children)
            pids |= children
        return sorted(pids)

    async def attempts_by_outcome(self) -> dict[str, int]:
        """``postback_attempts_total`` by outcome and ``postback_deliveries_taken_total`` by
        path (as "taken fast", "taken claim"), as serve's /metrics says now."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.api_port)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        text = (await reader.read()).decode()
        writer.close()
        counts: dict[str, int] = {}
        for match in re.finditer(r'^postback_attempts_total\{outcome="(\w+)"\} (\S+)$', text, re.M):
            counts[match[1]] = int(float(match[2]))
        for match in re.finditer(
            r'^postback_deliveries_taken_total\{path="(\w+)"\} (\S+)$', text, re.M
        ):
            counts[f"taken {match[1]}"] = int(float(match[2]))
        for match in re.finditer(r'^postback_claims_total\{result="(\w+)"\} (\S+)$', text, re.M):
            counts[f"claims {match[1]}"] = int(float(match[2]))
        return counts

    def postback_cpu_s(self, *, main_threads: bool = False) -> float:
        """user + system CPU of serve and the workers: what the deliveries cost, whatever else
        the machine is doing (the rate itself depends on the load of a shared box). With
        ``main_threads``, only their main threads (the event loops, whose thread id is the
        process id), leaving out the SQLite writer and reader threads."""
        return sum(self.cpu_s_of(pid, main_thread=main_threads) for pid in self._postback_pids())

    def database_cpu(self) -> dict[int, float]:
        """CPU seconds so far of each process of a PostgreSQL server on this machine, when the
        bench runs against PostgreSQL on 127.0.0.1 or localhost: it shares the cores, and on
        one endpoint it costs about as much per delivery as Postback itself. Empty otherwise.
        A backend that exits during a phase takes its CPU with it (the pool's do not)."""
        host = urllib.parse.urlsplit(self.args.database).hostname
        if not self.args.database.startswith("postgres") or host not in ("127.0.0.1", "localhost"):
            return {}
        used: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    name = (entry / "comm").read_text().strip()
                except OSError:
                    continue
                if name == "postgres" or name.startswith("postgres:"):
                    used[int(entry.name)] = self.cpu_s_of(int(entry.name))
        return used

    @staticmethod
    def cpu_s_of(pid: int, *, main_thread: bool = False) -> float:
        """user + system CPU seconds of a process (or of its main thread), 0 if it is gone."""
        stat = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def serve_rss_mb(self) -> float:
        """Resident memory of the serve processes (all of them with --processes)."""
        total = 0.0
        worker_pids = {p.pid for p in self.processes[1:]}
        for pid in self._postback_pids():
            if pid in worker_pids:
                continue
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
            except OSError:
                pass
        return total or float("nan")

    @staticmethod
    async def _finished(pb: Client, endpoint_ids: list[str]) -> bool:
        """Nothing left pending or in flight for the healthy endpoints."""
        for endpoint_id in endpoint_ids:
            for state in ("pending", "delivering"):
                if (await pb.list_deliveries(state=state, endpoint_id=endpoint_id, limit=1)).data:
                    return False
        return True

    async def stop(self, *, keep_files: bool) -> None:
        """Stop every process; remove the run's directory (its database reaches hundreds of
        MB) unless the run failed, when its logs are what tells why."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        if self.schema and not keep_files:
            import asyncpg

            conn = await asyncpg.connect(self.args.database.split("?")[0])
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            await conn.close()
        if keep_files:
            schema = f" (PostgreSQL schema {self.schema})" if self.schema else ""
            print(f"logs and database kept in {self.tmp}{schema}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def report(phase: Phase) -> None:
    ack = phase.latencies_ack
    sub = phase.latencies_submit
    print(
        f"[{phase.name}] {phase.delivered} deliveries ({phase.messages} messages x "
        f"{phase.endpoints} endpoints) in {phase.seconds:.2f} s = "
        f"{phase.delivered / phase.seconds:,.0f} deliveries/s; ingest {phase.ingest_rate:,.0f} msg/s"
    )
    print(
        f"[{phase.name}] Postback CPU {phase.cpu_s:.2f} s = "
        f"{phase.cpu_s / max(phase.delivered, 1) * 1e6:,.0f} µs per delivery (all its processes), "
        f"of which the event loops {phase.loop_cpu_s / max(phase.delivered, 1) * 1e6:,.0f} µs; "
        f"the receiver {phase.receiver_cpu_s / max(phase.delivered, 1) * 1e6:,.0f} µs"
        + (
            f"; PostgreSQL {phase.database_cpu_s / max(phase.delivered, 1) * 1e6:,.0f} µs"
            if not math.isnan(phase.database_cpu_s)
            else ""
        )
    )
    attempts = {k: v for k, v in phase.attempts.items() if not k.startswith(("taken ", "claims "))}
    taken = {k[6:]: v for k, v in phase.attempts.items() if k.startswith("taken ")}
    claims = {k[7:]: v for k, v in phase.attempts.items() if k.startswith("claims ")}
    if attempts:
        made = ", ".join(f"{outcome} {count:,}" for outcome, count in sorted(attempts.items()))
        paths = ", ".join(f"{path} {count:,}" for path, count in sorted(taken.items()))
        print(
            f"[{phase.name}] attempts {sum(attempts.values()):,} "
            f"({sum(attempts.values()) / max(phase.delivered, 1):.2f} per healthy "
            f"delivery; serve's /metrics): {made}; deliveries taken by path: {paths or '-'}"
        )
        all_claims = sum(claims.values())
        print(
            f"[{phase.name}] claims {all_claims:,}, of which empty "
            f"{claims.get('empty', 0):,} ({claims.get('empty', 0) / max(all_claims, 1):.0%}); "
            f"{taken.get('claim', 0) / max(claims.get('rows', 0), 1):,.0f} deliveries per claim "
            "that took any"
        )
    print(
        f"[{phase.name}] latency from 202: p50 {percentile(ack, 0.5) * 1000:,.0f} ms, "
        f"p90 {percentile(ack, 0.9) * 1000:,.0f} ms, p99 {percentile(ack, 0.99) * 1000:,.0f} ms, "
        f"max {max(ack) * 1000:,.0f} ms; from submit p50 {percentile(sub, 0.5) * 1000:,.0f} ms, "
        f"p99 {percentile(sub, 0.99) * 1000:,.0f} ms"
    )


def rate(phase: Phase) -> float:
    return phase.delivered / phase.seconds


def loop_us(phase: Phase) -> float:
    """Event-loop CPU per healthy delivery: what the case costs the healthy traffic, in a
    figure that moves less with the machine than the rate does."""
    return phase.loop_cpu_s / max(phase.delivered, 1) * 1e6


async def alternated(bench: Bench, baseline: Scenario, cases: list[Scenario], rounds: int) -> None:
    """Baseline, every case, baseline, every case, ..., baseline: each case is compared with
    the mean of the baselines run just before and just after it, which cancels a steady drift
    of the machine's speed, and the median over the rounds is printed."""
    bases: list[Phase] = []
    runs: dict[str, list[Phase]] = {case.name: [] for case in cases}
    for round_no in range(1, rounds + 1):
        bases.append(await bench.phase(dataclasses.replace(baseline, name=f"baseline {round_no}")))
        report(bases[-1])
        for case in cases:
            phase = await bench.phase(
                dataclasses.replace(case, name=f"{case.name}, round {round_no}")
            )
            runs[case.name].append(phase)
            report(phase)
    bases.append(await bench.phase(dataclasses.replace(baseline, name=f"baseline {rounds + 1}")))
    report(bases[-1])
    for name, phases in runs.items():
        ratios = []
        loop_ratios = []
        for i, phase in enumerate(phases):
            around = (bases[i], bases[i + 1])
            ratios.append(rate(phase) / (sum(rate(b) for b in around) / 2))
            loop_ratios.append(loop_us(phase) / (sum(loop_us(b) for b in around) / 2))
        print(
            f"=> healthy deliveries {name}: rate ratio to the baselines around it "
            f"{' / '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f}); "
            f"event-loop µs per healthy delivery ratio "
            f"{' / '.join(f'{r:.2f}' for r in loop_ratios)} "
            f"(median {statistics.median(loop_ratios):.2f}); rates "
            f"{' / '.join(f'{rate(p):,.0f}' for p in phases)} per s against baselines "
            f"{' / '.join(f'{rate(b):,.0f}' for b in bases)}"
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
        "--processes",
        default="",
        help="`serve --processes` (a number, or auto: one per core); default: serve's own",
    )
    parser.add_argument(
        "--slow-endpoint", action="store_true", help="run with and without a hanging endpoint"
    )
    parser.add_argument(
        "--stuck",
        default="",
        help="hang,429,disabled (any of): a stuck endpoint with --backlog due deliveries",
    )
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument(
        "--stuck-count", type=int, default=1, help="stuck endpoints sharing the --backlog"
    )
    parser.add_argument(
        "--scheduled", type=int, default=0, help="deliveries waiting for a retry a day ahead"
    )
    parser.add_argument(
        "--mix",
        type=int,
        default=0,
        help="N customer URLs (per-message callback_url); compared with 2%% slow + 2%% failing",
    )
    parser.add_argument(
        "--mix-bad",
        default="delay,fail",
        type=lambda v: set(v.split(",")),
        help="which bad customers the mix's case has: delay (300 ms), fail (503), or both; "
        "the messages of the others go to fast URLs",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the baseline and every case this many times, alternated, and print each "
        "case's ratio to the baselines either side of it, then the median (the machine's "
        "speed drifts by a fifth within a minute: one pair decides nothing)",
    )
    parser.add_argument(
        "--receiver",
        choices=("uvloop", "asyncio"),
        default="asyncio",
        help="the receiver's event loop (it shares the machine's cores with Postback; "
        "uvloop's costs it ~20%% less CPU per callback, a few µs)",
    )
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    bench = Bench(args)
    print(
        f"Postback bench: python {platform.python_version()}, {os.cpu_count()} cores, "
        f"database {args.database}, processes {args.processes or 'the default'}, workers {args.workers}, messages {args.messages}, "
        f"endpoints {args.endpoints}, batch {args.batch}, concurrency {args.concurrency}, "
        f"rate {args.rate or 'max'}; {native.status()}"
    )
    baseline = Scenario("baseline", mix=args.mix)
    cases: list[Scenario] = []
    if args.slow_endpoint:
        cases.append(Scenario("with a hanging endpoint", slow=True))
    if args.stuck:
        for kind in args.stuck.split(","):
            cases.append(
                Scenario(
                    f"beside {args.stuck_count} stuck endpoint(s) ({kind})",
                    stuck=kind,
                    backlog=args.backlog,
                    stuck_count=args.stuck_count,
                )
            )
    if args.scheduled:
        cases.append(Scenario(f"with {args.scheduled:,} scheduled", scheduled=args.scheduled))
    if args.mix:
        cases.append(Scenario("with slow and failing customers", mix=args.mix, bad=True))
    finished = False
    try:
        await bench.start()
        if args.rounds > 1 and cases:
            await alternated(bench, baseline, cases, args.rounds)
            finished = True
            return 0
        base = await bench.phase(baseline)
        report(base)
        phases = []
        for case in cases:
            phases.append((case, await bench.phase(case)))
            report(phases[-1][1])
        again = None
        if args.stuck or args.scheduled:
            # The database has grown by every case's rows: a second baseline on it tells that
            # cost apart from the stuck endpoint's (and the machine's drift during the run).
            again = await bench.phase(Scenario("baseline again", mix=args.mix))
            report(again)
        a = base.delivered / base.seconds
        for case, phase in phases:
            b = phase.delivered / phase.seconds
            line = f"=> healthy deliveries {case.name}: {b:,.0f}/s vs {a:,.0f}/s baseline"
            line += f" (ratio {b / a:.2f}"
            if again is not None:
                z = again.delivered / again.seconds
                line += f"; {z:,.0f}/s in the baseline after the cases: ratio {b / z:.2f}"
            if args.rate:
                # At a steady offered rate the baseline offered more healthy traffic than a
                # case that gives some of it to bad customers: the fair reading is how much of
                # what was offered to the healthy ones they got.
                offered = phase.delivered / (phase.messages / args.rate)
                line += (
                    f"; of the {offered:,.0f}/s offered to them they got {b / offered:.0%}, "
                    f"the baseline {a / (base.delivered / (base.messages / args.rate)):.0%}"
                )
            print(f"{line}); serve RSS {phase.rss_mb[0]:.0f} -> {phase.rss_mb[1]:.0f} MB")
        finished = True
    finally:
        await bench.stop(keep_files=not finished or bool(os.environ.get("BENCH_KEEP")))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
