"""`make demo`: Postback on SQLite delivering SMS callbacks to a local receiver, then stopping.

It starts the service and a receiver on 127.0.0.1, registers four endpoints (healthy, flaky,
rejecting, and a GOV.UK Notify-style one with a bearer token), submits Sinch-style delivery
reports and inbound messages, shows retries and a dead letter, "fixes" the rejecting endpoint,
replays its dead deliveries, and prints what happened. Every callback's signature is checked
with ``postback.receiver.verify``. It ends by itself; `postback serve` keeps a service running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import shutil
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from postback.cli.config import Settings
from postback.cli.serve import run_service
from postback.client import Client
from postback.observe.logs import configure_logging
from postback.receiver import PayloadError, WebhookVerificationError, parse, verify

DEMO_DIR = Path(".demo")
ADMIN_TOKEN = secrets.token_urlsafe(16)
NOTIFY_TOKEN = secrets.token_urlsafe(24)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DemoReceiver:
    """One aiohttp app, a path per customer endpoint, each with its own behaviour."""

    secrets: dict[str, str] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    verified: int = 0
    failed_verification: int = 0
    webhook_ids: dict[str, list[str]] = field(default_factory=dict)
    rejecting_fixed: bool = False
    parsed: Counter[str] = field(default_factory=Counter)
    unparsed: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["name"]
        body = await request.read()
        self.calls[path] += 1
        try:
            verify(request.headers, body, self.secrets[path])
            self.verified += 1
        except (WebhookVerificationError, KeyError):
            self.failed_verification += 1
            return web.Response(status=401)
        self.webhook_ids.setdefault(path, []).append(request.headers["webhook-id"])
        try:
            self.parsed[type(parse(body)).__name__] += 1  # the receiver SDK's typed events
        except PayloadError:
            self.unparsed += 1
        if path == "flaky" and self.calls[path] <= 2:
            return web.Response(status=500, text="database is warming up")
        if path == "rejecting" and not self.rejecting_fixed:
            return web.Response(status=400, text="unknown batch")
        if path == "notify" and request.headers.get("Authorization") != f"Bearer {NOTIFY_TOKEN}":
            return web.Response(status=401)
        return web.Response(status=204)


@dataclass
class OperatorInbox:
    """The platform's own endpoint for Postback's operational webhooks (verified, kept)."""

    secret: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    both_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(request.headers, body, self.secret)
        except WebhookVerificationError:
            return web.Response(status=401)
        self.events.append(json.loads(body))
        if len(self.events) >= 2:
            self.both_arrived.set()
        return web.Response(status=204)


async def gone(request: web.Request) -> web.Response:
    """A customer who removed their endpoint: 410 Gone (Standard Webhooks: disable it)."""
    return web.Response(status=410)


async def show_auto_disable(api: str, base: str, pb: Client, inbox: OperatorInbox) -> list[str]:
    """An endpoint answering 410 is disabled at once; the operators hear about it."""
    problems = []
    async with Client(api, admin_token=ADMIN_TOKEN) as admin:
        ops = await admin.create_operational_endpoint(
            f"{base}/operator", event_types=["endpoint.disabled", "delivery.dead"]
        )
    inbox.secret = str(ops.signing_secret)
    endpoint = await pb.create_endpoint(f"{base}/gone", event_types=["notify_received_text"])
    await pb.send(
        "notify_received_text",
        {
            "id": "bfd7f2a4-8d5b-4b8e-9a4c-3c0c9f1e2a11",
            "source_number": "447700900111",
            "destination_number": "07700900000",
            "message": "STOP",
            "date_received": "2017-05-14T12:15:30.000000Z",
        },
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(inbox.both_arrived.wait(), 20)
    health = await pb.endpoint_health(endpoint.id)
    print()
    print(
        f"an endpoint answering 410 Gone: status {health.status}, reason: {health.disabled_reason}"
    )
    for event in inbox.events:
        data = event["data"]
        print(
            f"  operational webhook (signature verified): {event['type']} "
            f"endpoint {data['endpoint_id']}: {data.get('reason', '')}"
        )
    if health.status != "disabled" or {e["type"] for e in inbox.events} != {
        "endpoint.disabled",
        "delivery.dead",
    }:
        problems.append("the 410 endpoint was not disabled and announced")
    return problems


class AlertCounter(logging.Handler):
    """Counts the dead-letter alerts (ERROR lines of ``postback.alerts``) and keeps one."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.example = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if not self.example:
            self.example = (
                f"{record.getMessage()} (endpoint {getattr(record, 'endpoint_id', '?')}, "
                f"message {getattr(record, 'message_id', '?')})"
            )


def _fresh_demo_dir() -> None:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir()


def sinch_reports(batch_id: str) -> list[dict[str, object]]:
    statuses = [("Dispatched", 0), ("Delivered", 0), ("Failed", 402)]
    reports: list[dict[str, object]] = []
    for i, (status, code) in enumerate(statuses * 2):
        payload = {
            "type": "recipient_delivery_report_sms",
            "batch_id": batch_id,
            "recipient": f"4670123456{i}",
            "code": code,
            "status": status,
            "at": "2026-11-23T10:15:30.000Z",
            "operator_status_at": "2026-11-23T10:15:29.000Z",
            "client_reference": f"order-{1000 + i}",
        }
        reports.append({"event_type": "recipient_delivery_report_sms", "payload": payload})
    return reports


def inbound_messages() -> list[dict[str, object]]:
    return [
        {
            "event_type": "mo_text",
            "payload": {
                "type": "mo_text",
                "id": f"01XXXXX21XXXXX119Z8P1XXXX{i}",
                "from": "16051234567",
                "to": "13185551234",
                "body": body,
                "operator_id": "310260",
                "received_at": "2022-08-24T14:15:22Z",
                "sent_at": "2022-08-24T14:15:22Z",
            },
        }
        for i, body in enumerate(["This is a test message.", "STOP", "Yes, 3pm works"])
    ]


NOTIFY_RECEIPT = {
    "id": "740e5834-3a29-46b4-9a6f-16142fde533a",
    "reference": "12345678",
    "to": "07700912345",
    "status": "delivered",
    "created_at": "2017-05-14T12:15:30.000000Z",
    "completed_at": "2017-05-14T12:15:30.000000Z",
    "sent_at": "2017-05-14T12:15:30.000000Z",
    "notification_type": "sms",
    "template_id": "f33517ff-2a88-4f6e-b855-c550268ce08a",
    "template_version": 1,
}


async def wait_settled(pb: Client, deadline: float) -> None:
    while time.monotonic() < deadline:
        pending = await pb.list_deliveries(state="pending", limit=1)
        delivering = await pb.list_deliveries(state="delivering", limit=1)
        if not pending.data and not delivering.data:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("deliveries did not settle in time")


async def main() -> int:
    configure_logging("text", level=logging.WARNING)
    alerts = AlertCounter()
    logging.getLogger("postback.alerts").addHandler(alerts)
    logging.getLogger("postback.alerts").propagate = False
    await asyncio.to_thread(_fresh_demo_dir)
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{DEMO_DIR / 'postback.db'}",
        admin_token=ADMIN_TOKEN,
        secret_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        allow_networks="127.0.0.0/8",  # the demo's receiver is local; the SSRF guard stays on
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(
        run_service(settings, host="127.0.0.1", port=port, stop=stop, ready=ready)
    )
    await asyncio.wait_for(ready.wait(), 30)
    receiver = DemoReceiver()
    app = web.Application()
    inbox = OperatorInbox()
    app.router.add_post("/hooks/operator", inbox.handle)
    app.router.add_post("/hooks/gone", gone)
    app.router.add_post("/hooks/{name}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    receiver_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
    base = f"http://127.0.0.1:{receiver_port}/hooks"
    api = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    problems: list[str] = []
    try:
        async with Client(api, admin_token=ADMIN_TOKEN) as admin:
            account = await admin.create_account("Demo SMS platform")
        print(f"Postback is running on SQLite at {api} (API docs: {api}/docs)")
        async with Client(api, account.api_key) as pb:
            sinch_types = ["recipient_delivery_report_sms", "mo_text"]
            specs: dict[str, dict[str, Any]] = {
                "healthy": {"event_types": sinch_types},
                "flaky": {"event_types": sinch_types, "retry_policy": {"schedule_s": [1, 2, 4]}},
                "rejecting": {"event_types": sinch_types},
                "notify": {
                    "event_types": ["notify_delivery_receipt"],
                    "retry_policy": {"preset": "notify"},
                    "auth": {"type": "bearer", "token": NOTIFY_TOKEN},
                },
            }
            endpoints = {}
            for name, spec in specs.items():
                created = await pb.create_endpoint(f"{base}/{name}", **spec)
                receiver.secrets[name] = str(created.signing_secret)
                endpoints[name] = created
            batch = await pb.send_batch(sinch_reports("01FC66621XXXXX119Z8PMV1QPQ"))
            await pb.send_batch(inbound_messages())
            await pb.send("notify_delivery_receipt", NOTIFY_RECEIPT)
            print(
                f"submitted {len(batch.data)} Sinch delivery reports, 3 inbound messages "
                "and 1 Notify delivery receipt"
            )
            await wait_settled(pb, time.monotonic() + 30)
            dead_before = (await pb.list_deliveries(state="dead", limit=100)).data
            print(
                f"{len(dead_before)} deliveries dead-lettered (the 'rejecting' endpoint answers "
                f"400); {alerts.count} alerts raised, e.g.: {alerts.example}"
            )
            print("fixing the rejecting endpoint and replaying its dead deliveries ...")
            receiver.rejecting_fixed = True
            replay = await pb.replay(endpoint_id=endpoints["rejecting"].id)
            await wait_settled(pb, time.monotonic() + 30)

            rows = []
            for name, endpoint in endpoints.items():
                deliveries = (await pb.list_deliveries(endpoint_id=endpoint.id, limit=100)).data
                states = Counter(d.state for d in deliveries)
                retried = sum(1 for d in deliveries if d.attempt_count > 1)
                dead_then = sum(1 for d in dead_before if d.endpoint_id == endpoint.id)
                rows.append(
                    (name, len(deliveries), states["delivered"], retried, dead_then, states["dead"])
                )
            dead_letter_alerts = alerts.count
            problems += await show_auto_disable(api, base, pb, inbox)
        behaviour = {
            "healthy": "answers 204",
            "flaky": "500 twice, then 204",
            "rejecting": "400 until fixed",
            "notify": "bearer token, 204",
        }
        print()
        header = (
            "endpoint",
            "behaviour",
            "deliveries",
            "delivered",
            "retried",
            "dead-lettered",
            "dead now",
        )
        table = [header] + [
            (n, behaviour[n], str(t), str(d), str(r), str(dl), str(dn))
            for n, t, d, r, dl, dn in rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        print()
        print(
            f"signatures verified by the receiver: {receiver.verified}, "
            f"failed: {receiver.failed_verification}"
        )
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(receiver.parsed.items()))
        print(f"parsed with postback.receiver.parse: {kinds}; unusable: {receiver.unparsed}")
        rejecting_ids = receiver.webhook_ids.get("rejecting", [])
        same_ids = len(set(rejecting_ids)) * 2 == len(rejecting_ids)
        print(
            f"replayed {replay.replayed} dead deliveries; each arrived again with the same "
            f"webhook-id: {'yes' if same_ids else 'NO'}"
        )
        by_name = {r[0]: r for r in rows}
        if dead_letter_alerts != 9:
            problems.append(f"expected 9 dead-letter alerts, saw {dead_letter_alerts}")
        if receiver.unparsed:
            problems.append("some payloads did not parse")
        if receiver.failed_verification:
            problems.append("some signatures did not verify")
        if by_name["healthy"][2] != 9 or by_name["flaky"][2] != 9 or by_name["flaky"][3] < 1:
            problems.append("healthy/flaky endpoints did not receive everything")
        if by_name["rejecting"][4] != 9 or by_name["rejecting"][2] != 9 or not same_ids:
            problems.append("dead-lettering or replay did not behave")
        if by_name["notify"][2] != 1:
            problems.append("the Notify-style endpoint did not get its receipt")
    finally:
        stop.set()
        await service
        await runner.cleanup()
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    print(
        "to keep Postback running, with `postback listen` as the receiver: the README's "
        "'Keep it running' walkthrough, copy and paste"
    )
    if problems:
        print("UNEXPECTED: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
