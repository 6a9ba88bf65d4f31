"""``postback listen``: a local receiver for the people who receive callbacks.

Point an endpoint at it (``http://127.0.0.1:9000/...``) and watch what Postback sends: each
callback is verified with ``postback.receiver.verify`` (Standard Webhooks or the Sinch scheme),
parsed with ``postback.receiver.parse`` and printed (event type, ids, payload). It answers a
chosen status (``--status 500`` shows the retries), or forwards the callback to your own app
(``--forward-to``) and answers what that app answered. A callback that does not verify is
answered 401 and printed as rejected, so a misconfigured secret is seen at once.

Like ``stripe listen`` or ``svix listen``, but local: the callbacks come straight from your
Postback; nothing is tunnelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from postback import __version__
from postback.cli.config import ConfigError
from postback.core import signing
from postback.receiver import PayloadError, WebhookVerificationError, parse, verify

# Hop-by-hop and framing headers are the forwarding hop's own business (RFC 9110 section 7.6.1);
# every other header, the signature's included, reaches the forward target unchanged.
_NOT_FORWARDED = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
)
# Payload fields that identify something, printed on the summary line when present.
_ID_FIELDS = ("id", "batch_id", "message_id", "client_reference", "reference", "from", "to")


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenOptions:
    secrets: tuple[str, ...]
    """Signing secrets to verify with (several during a rotation)."""
    host: str = "127.0.0.1"
    port: int = 9000
    status: int = 200
    """What to answer a verified callback when nothing is forwarded."""
    forward_to: str | None = None
    """Your own app: verified callbacks are POSTed there and its answer is returned."""
    tolerance_s: float = 300
    forward_timeout_s: float = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What ``postback listen`` made of one callback, before answering it."""

    verified: bool
    scheme: str
    event_type: str
    ids: tuple[tuple[str, str], ...]
    payload: Any
    problem: str | None = None
    """Why it was rejected, or why the payload did not parse (still answered)."""


def _scheme(headers: Mapping[str, str]) -> str:
    names = {k.lower() for k in headers}
    return "sinch" if signing.SINCH_SIGNATURE in names else "standard-webhooks"


def examine(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    tolerance_s: float = 300,
    now_s: float | None = None,
) -> Verdict:
    """Verify and parse one callback; never raises (a bad callback is a verdict)."""
    scheme = _scheme(headers)
    lowered = {k.lower(): v for k, v in headers.items()}
    ids: list[tuple[str, str]] = []
    if "webhook-id" in lowered:
        ids.append(("webhook-id", lowered["webhook-id"]))
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = body.decode("utf-8", "replace")
    try:
        verify(headers, body, list(secrets), tolerance=tolerance_s, now_s=now_s)
    except WebhookVerificationError as exc:
        return Verdict(
            verified=False,
            scheme=scheme,
            event_type="?",
            ids=tuple(ids),
            payload=payload,
            problem=str(exc),
        )
    problem = None
    event_type = payload.get("type") if isinstance(payload, dict) else None
    try:
        event = parse(body)
        event_type = getattr(event, "type", None) or type(event).__name__
    except PayloadError as exc:
        # A custom event type is not the SDK's to parse: shown as JSON, and not a failure.
        if not (exc.path == "$.type" and "unknown event type" in exc.message):
            problem = f"payload does not parse: {exc}"
    if isinstance(payload, dict):
        ids += [(k, str(payload[k])) for k in _ID_FIELDS if isinstance(payload.get(k), str | int)]
    return Verdict(
        verified=True,
        scheme=scheme,
        event_type=str(event_type or "(no type field)"),
        ids=tuple(ids),
        payload=payload,
        problem=problem,
    )


def render(method: str, path: str, verdict: Verdict, answer: str) -> str:
    """The block printed for one callback."""
    clock = time.strftime("%H:%M:%S")
    if not verdict.verified:
        head = f"{clock}  REJECTED {method} {path}  {verdict.problem}  -> {answer}"
        return head
    ids = "  ".join(f"{k}={v}" for k, v in verdict.ids)
    lines = [f"{clock}  {verdict.event_type}  verified ({verdict.scheme})  -> {answer}"]
    if ids:
        lines.append(f"  {ids}")
    if verdict.problem:
        lines.append(f"  {verdict.problem}")
    pretty = (
        json.dumps(verdict.payload, indent=2, ensure_ascii=False)
        if not isinstance(verdict.payload, str)
        else verdict.payload
    )
    lines += ["  " + line for line in pretty.splitlines()]
    return "\n".join(lines)


Report = Callable[[Verdict, str, str, str], None]
"""Told of each callback: its verdict, the method, the path and what was answered."""


def print_report(verdict: Verdict, method: str, path: str, answer: str) -> None:
    print(render(method, path, verdict, answer), flush=True)


class Listener:
    """The aiohttp app behind ``postback listen``; ``out`` is told of every callback."""

    def __init__(self, options: ListenOptions, out: Report) -> None:
        self.options = options
        self.out = out
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/healthz", self.health)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    async def health(self, request: web.Request) -> web.Response:
        """So scripts can wait for it like for Postback: ``postback health --url ...``."""
        return web.json_response({"status": "ok", "version": __version__})

    async def handle(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.Response(status=405, text="postback listen: send callbacks with POST\n")
        body = await request.read()
        verdict = examine(
            request.headers, body, self.options.secrets, tolerance_s=self.options.tolerance_s
        )
        if not verdict.verified:
            self.out(verdict, request.method, request.path_qs, "401")
            return web.json_response(
                {"error": {"code": "invalid_signature", "message": verdict.problem}}, status=401
            )
        if self.options.forward_to is None:
            self.out(verdict, request.method, request.path_qs, str(self.options.status))
            return web.Response(status=self.options.status, text="")
        response, note = await self._forward(request.headers, body)
        self.out(verdict, request.method, request.path_qs, note)
        return response

    async def _forward(self, headers: Mapping[str, str], body: bytes) -> tuple[web.Response, str]:
        """POST to the forward target; its status, body and content type are the answer."""
        target = self.options.forward_to or ""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.options.forward_timeout_s)
            )
        outgoing = {k: v for k, v in headers.items() if k.lower() not in _NOT_FORWARDED}
        try:
            async with self._session.post(target, data=body, headers=outgoing) as answer:
                content = await answer.read()
                forwarded = web.Response(
                    status=answer.status,
                    body=content,
                    content_type=answer.content_type if content else None,
                )
                return forwarded, f"{answer.status} from {target}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            # 502: the receiver is there but its app is not; Postback will retry.
            return (
                web.Response(status=502, text=f"forward to {target} failed: {reason}\n"),
                f"502 (forward to {target} failed: {reason})",
            )


async def run_listener(
    options: ListenOptions,
    *,
    stop: asyncio.Event | None = None,
    out: Report = print_report,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set or SIGINT/SIGTERM arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(Listener(options, out).app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc} "
                "(choose another with --port)"
            ) from None
        where = (
            f"forwarding to {options.forward_to}"
            if options.forward_to
            else (f"answering {options.status}")
        )
        print(
            f"postback listen: ready on http://{options.host}:{options.port}/ "
            f"({len(options.secrets)} secret(s), {where}); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await runner.cleanup()
