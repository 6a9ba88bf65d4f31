"""Running Postback: the API and the dispatcher in one process (``serve``) or alone (``worker``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from postback import native
from postback.api.app import create_app
from postback.api.protocol import ApiRunner
from postback.cli.config import (
    PROCESS_INDEX_ENV,
    ConfigError,
    Settings,
    describe_database,
    key_file_path,
)
from postback.core.breaker import BreakerRules
from postback.core.errors import StorageError, StorageUnavailable
from postback.core.health import HealthRules
from postback.core.netguard import parse_networks
from postback.dispatch.health import HealthKeeper
from postback.dispatch.loop import Dispatcher, DispatcherSettings
from postback.dispatch.sweeps import run_sweeper
from postback.ingest import Services
from postback.observe.backlog import run_backlog_poller
from postback.observe.http import Readiness, create_ops_app
from postback.observe.metrics import Metrics
from postback.store import Storage, open_storage
from postback.store.sealing import Sealer
from postback.transports.http import HTTPTransport
from postback.transports.http1 import HTTP1Transport
from postback.transports.sns import SNSTransport

log = logging.getLogger("postback.cli.serve")

# Where it listens and when it stops, said once: by a lone serve, or the first of several
# (`serve --processes`; the others say it at DEBUG).
_STARTUP = logging.DEBUG if os.environ.get(PROCESS_INDEX_ENV, "0") != "0" else logging.INFO

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf'
"""Client address, request line, status, size, seconds: no headers (they may carry keys)."""


def sealer_for(settings: Settings) -> Sealer:
    """The key that seals credentials: POSTBACK_SECRET_KEY, else the key file (made if absent)."""
    if settings.secret_key:
        return Sealer.from_base64(settings.secret_key)
    return Sealer.from_key_file(Path(key_file_path(settings)))


def _open(settings: Settings) -> Storage:
    return open_storage(settings.database_url, sealer_for(settings))


def _migrates_itself(settings: Settings) -> bool:
    # The embedded SQLite file is created and upgraded on start (one command, no setup). A
    # shared PostgreSQL is upgraded deliberately with `postback migrate`, once, not by
    # whichever node happens to start first with a new version.
    return settings.database_url.startswith("sqlite")


async def migrate_database(settings: Settings) -> None:
    """``postback migrate``: bring the database's schema up to date."""
    storage = _open(settings)
    await storage.open(migrate=True)
    await storage.close()


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """The domain services over the configured database, for one admin command."""
    storage = _open(settings)
    await storage.open(migrate=_migrates_itself(settings))
    try:
        yield Services.build(storage)
    finally:
        await storage.close()


async def run_batch_reports(
    services: Services, stop: asyncio.Event, interval_s: float = 1.0
) -> None:
    """Send batch delivery reports whose deadline passed before all recipients were final."""
    while not stop.is_set():
        try:
            await services.batches.send_due()
        except (StorageUnavailable, StorageError) as exc:
            log.warning("batch report sweep failed (%s); will try again", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


def prepare_shared_state(settings: Settings) -> None:
    """What every process of a ``--processes`` service needs done once, before any starts:
    the key file made and the SQLite file migrated, so no two children race to do either."""
    sealer_for(settings)
    if _migrates_itself(settings):
        asyncio.run(migrate_database(settings))


def cannot_listen(host: str | None, port: int, exc: OSError) -> ConfigError:
    """A busy or forbidden port is the operator's to fix: one line, no traceback (the same
    words from a single ``serve`` and from the ``--processes`` supervisor)."""
    return ConfigError(
        f"cannot listen on {host}:{port}: {exc.strerror or exc} "
        "(is another Postback running? choose another port with --port)"
    )


def _crashed(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    if not task.cancelled() and task.exception() is not None and not stop.is_set():
        log.critical("%s stopped unexpectedly", task.get_name(), exc_info=task.exception())
        stop.set()


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def run_service(
    settings: Settings,
    *,
    host: str | None = "127.0.0.1",
    port: int = 8000,
    api: bool = True,
    dispatch: bool = True,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    metrics_host: str = "127.0.0.1",
    metrics_port: int | None = None,
    reuse_port: bool = False,
) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT): stop claiming, finish, exit."""
    stop = stop or asyncio.Event()
    _stop_on_signals(stop)
    sealer = sealer_for(settings)
    storage = open_storage(settings.database_url, sealer)
    await storage.open(migrate=_migrates_itself(settings))
    # Absolute, so a process started from another directory (and so another SQLite file,
    # whose API keys differ) is noticed at once.
    log.log(_STARTUP, "database: %s", describe_database(settings.database_url))
    metrics = Metrics()
    rules = HealthRules(
        disable_after_ms=settings.disable_after_s * 1000,
        dead_limit=settings.disable_after_dead,
        failing_after=settings.failing_after,
    )
    allowed = parse_networks(settings.allow_networks)
    general = HTTPTransport(
        max_connections=settings.max_in_flight,
        allowed_networks=allowed,
        proxy=settings.egress_proxy or None,
    )
    transport: HTTPTransport | HTTP1Transport = (
        HTTP1Transport(
            general, allowed_networks=tuple(allowed), proxy=settings.egress_proxy or None
        )
        if settings.http_client == "lean"
        else general
    )
    dispatcher = Dispatcher(
        storage,
        transport,
        DispatcherSettings(
            max_in_flight=settings.max_in_flight,
            per_endpoint=settings.per_endpoint_concurrency,
            prefetch=settings.endpoint_prefetch,
            narrow_share=settings.hanging_endpoint_concurrency,
            breaker=BreakerRules(
                after_failures=settings.breaker_failures,
                cooldown_ms=round(settings.breaker_pause_s * 1000),
                max_cooldown_ms=round(
                    max(settings.breaker_max_pause_s, settings.breaker_pause_s) * 1000
                ),
            ),
            lease_ms=settings.lease_s * 1000,
            shutdown_timeout_s=settings.shutdown_timeout_s,
            lease_check_interval_s=min(5.0, settings.lease_s / 4),
        ),
        metrics=metrics,
        auth_session=transport.session,
        sns_transport=SNSTransport(transport.session),
        health=HealthKeeper(storage, metrics, rules=rules),
    )
    services = Services.build(
        storage,
        on_ingest=dispatcher.wake if dispatch else None,
        dispatcher=dispatcher if dispatch else None,
        metrics=metrics,
        allowed_networks=allowed,
    )
    dispatcher.health.announce = services.operations.announce_many
    readiness = Readiness(
        storage.probe, dispatcher_tick=(lambda: dispatcher.last_tick) if dispatch else None
    )
    access_log = logging.getLogger("postback.access") if settings.access_log else None
    runners: list[web.AppRunner] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        if api:
            app = create_app(
                services,
                admin_token=settings.admin_token,
                ui_key=sealer.derive_key("ui-sessions"),
                ui_frame_ancestors=settings.ui_frame_ancestors,
                readiness=readiness,
            )
            runner = ApiRunner(
                app,
                access_log=access_log,
                access_log_format=ACCESS_LOG_FORMAT,
                handle_signals=False,
            )
            runners.append(runner)
            await runner.setup()
            site = web.TCPSite(runner, host, port, backlog=1024, reuse_port=reuse_port or None)
            try:
                await site.start()
            except OSError as exc:
                raise cannot_listen(host, port, exc) from None
            log.log(_STARTUP, "API listening on http://%s:%d (docs at /docs)", host, port)
        if metrics_port is not None:
            ops = web.AppRunner(
                create_ops_app(metrics, readiness),
                access_log=access_log,
                access_log_format=ACCESS_LOG_FORMAT,
                handle_signals=False,
            )
            runners.append(ops)
            await ops.setup()
            await web.TCPSite(ops, metrics_host, metrics_port).start()
            log.info(
                "metrics and health checks on http://%s:%d (/metrics, /livez, /readyz)",
                metrics_host,
                metrics_port,
            )
        if api or metrics_port is not None:
            tasks.append(
                asyncio.create_task(
                    run_backlog_poller(
                        storage,
                        metrics,
                        stop,
                        interval_s=settings.metrics_interval_s,
                        top=settings.metrics_top_endpoints,
                    ),
                    name="postback-backlog-gauges",
                )
            )
        if dispatch:
            tasks.append(asyncio.create_task(dispatcher.run(stop), name="postback-dispatcher"))
            log.log(
                _STARTUP,
                "dispatcher started (database %s; %s)",
                settings.database_url.split("://")[0],
                native.status(),
            )
        tasks.append(
            asyncio.create_task(
                run_sweeper(storage, settings.retention_days, stop), name="postback-retention"
            )
        )
        tasks.append(
            asyncio.create_task(run_batch_reports(services, stop), name="postback-batch-reports")
        )
        for task in tasks:
            # A background task that dies would leave a process that looks alive but does
            # nothing: make it stop the process instead, loudly.
            task.add_done_callback(lambda t: _crashed(t, stop))
        if ready is not None:
            ready.set()
        await stop.wait()
        log.log(_STARTUP, "shutting down")
    finally:
        stop.set()
        for running in runners:
            await running.cleanup()
        for task in tasks:
            await task
        await transport.close()
        await storage.close()
