"""What every process answers on its operations port: ``/metrics``, ``/livez``, ``/readyz``
(and ``/healthz``, an alias of ``/readyz`` kept for existing probes).

``serve`` adds these routes to its API; ``worker --metrics-port N`` serves them alone.

* ``/livez``: the process is running its event loop. A failure means restart it.
* ``/readyz``: the database took a small write within ``timeout_s`` and, where this process
  dispatches, the dispatcher loop went round within ``stale_after_s``. A failure means do not
  send it traffic (and page if it lasts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from postback import __version__
from postback.core.errors import PostbackError
from postback.observe.metrics import Metrics


class ReadyzBody(msgspec.Struct, kw_only=True):
    status: str
    """ok, or unavailable"""
    version: str
    checks: dict[str, str]
    """database, dispatcher: ok or why not"""


class Readiness:
    """The checks behind ``/readyz``."""

    def __init__(
        self,
        probe: Callable[[int], Awaitable[None]],
        *,
        dispatcher_tick: Callable[[], float] | None = None,
        timeout_s: float = 2.0,
        stale_after_s: float = 30.0,
    ) -> None:
        self.probe = probe
        """One small database write at the given time (``Storage.probe``)."""
        self.dispatcher_tick = dispatcher_tick
        """``time.monotonic()`` at the dispatcher loop's last round (None: no dispatcher)."""
        self.timeout_s = timeout_s
        self.stale_after_s = stale_after_s

    async def check(self) -> ReadyzBody:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.probe(int(time.time() * 1000)), self.timeout_s)
            checks["database"] = "ok"
        except TimeoutError:
            checks["database"] = f"no write within {self.timeout_s:g} s"
        except PostbackError as exc:
            checks["database"] = f"{type(exc).__name__}: {exc}"[:200]
        if self.dispatcher_tick is not None:
            idle = time.monotonic() - self.dispatcher_tick()
            checks["dispatcher"] = (
                "ok" if idle <= self.stale_after_s else f"loop stalled for {idle:.0f} s"
            )
        ok = all(v == "ok" for v in checks.values())
        return ReadyzBody(status="ok" if ok else "unavailable", version=__version__, checks=checks)


METRICS: web.AppKey[Metrics] = web.AppKey("ops_metrics", Metrics)
READINESS: web.AppKey[Readiness] = web.AppKey("ops_readiness", Readiness)
_encode = msgspec.json.Encoder().encode


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def livez(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    body = await request.app[READINESS].check()
    return web.Response(
        body=_encode(body),
        status=200 if body.status == "ok" else 503,
        content_type="application/json",
    )


def add_ops_routes(app: web.Application, metrics_: Metrics, readiness: Readiness) -> None:
    app[METRICS] = metrics_
    app[READINESS] = readiness
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", readyz)


def create_ops_app(metrics_: Metrics, readiness: Readiness) -> web.Application:
    """The operations port of a process without the API (``postback worker``)."""
    app = web.Application()
    add_ops_routes(app, metrics_, readiness)
    return app
