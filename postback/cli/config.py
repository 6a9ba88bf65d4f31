"""Settings from environment variables (and CLI flags that override them)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from postback.core.breaker import (
    DEFAULT_AFTER_FAILURES,
    DEFAULT_COOLDOWN_MS,
    DEFAULT_MAX_COOLDOWN_MS,
)
from postback.core.errors import PostbackError
from postback.core.netguard import parse_networks

DEFAULT_DATABASE_URL = "sqlite:///./postback.db"
PROCESS_INDEX_ENV = "POSTBACK_PROCESS_INDEX"
"""Set by ``serve --processes`` in each child to its index: only the first says at INFO where it
listens and when it stops (not once per process)."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(PostbackError, ValueError):
    """A setting with a value that cannot be used; the message names the variable."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container's cpuset sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_processes() -> int:
    """``serve`` processes when nothing is set: two where there are two cores or more.

    One Python process uses about one core. Measured on two cores (docs/deployment.md, session
    17), two processes beat one in every bench case: SQLite one endpoint 1.11-1.19x, four
    endpoints 1.11-1.19x, a thousand customers 1.38-1.44x, PostgreSQL 1.08-1.21x, with backlog
    isolation kept and a lower p99. Not more by default: on SQLite every process queues for the
    one write lock, and more than two were never measured.
    """
    return min(2, available_cores())


def _processes(name: str) -> int:
    raw = os.environ.get(name, "")
    if raw == "auto":
        return available_cores()
    if raw and not (raw.isdigit() and 1 <= int(raw) <= 256):
        raise ConfigError(f"{name} must be from 1 to 256 or auto, got {raw!r}")
    return int(raw) if raw else default_processes()


def _int(name: str, default: int, minimum: int, maximum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be from {minimum} to {maximum}, got {value}")
    return value


_ORIGIN = re.compile(r"^https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$")


def _origins(name: str) -> str:
    raw = os.environ.get(name, "").split()
    for origin in raw:
        if not _ORIGIN.match(origin):
            raise ConfigError(
                f"{name} must be space-separated origins like https://app.example.com, "
                f"got {origin!r}"
            )
    return " ".join(raw)


def _networks(name: str) -> str:
    raw = os.environ.get(name, "")
    try:
        parse_networks(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated CIDRs: {exc}") from None
    return raw


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    admin_token: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    """Base64 of 32 bytes that seals credentials at rest; empty: use ``secret_key_file``."""
    secret_key_file: str = ""
    """Where the key is kept when ``secret_key`` is empty (created on first start)."""
    max_in_flight: int = 512
    per_endpoint_concurrency: int = 32
    processes: int = field(default_factory=default_processes)
    """``serve`` processes sharing the port and the database (one Python process is one core)."""
    endpoint_prefetch: int = 512
    """Deliveries of an endpoint kept leased and ready beyond its share (DispatcherSettings)."""
    hanging_endpoint_concurrency: int = 4
    """An endpoint's share after three timeouts in a row, until it answers again."""
    breaker_failures: int = DEFAULT_AFTER_FAILURES
    """Retryable failures in a row that pause an endpoint (its circuit breaker); 0: never."""
    breaker_pause_s: float = DEFAULT_COOLDOWN_MS / 1000
    """The first pause; each failed probe after it doubles it."""
    breaker_max_pause_s: float = DEFAULT_MAX_COOLDOWN_MS / 1000
    log_format: str = "text"
    allow_networks: str = ""
    """CIDRs the SSRF guard lets through (e.g. 127.0.0.0/8 for local development)."""
    egress_proxy: str = ""
    """An HTTP proxy every delivery goes through (a fixed, publishable source address)."""
    http_client: str = "lean"
    """lean: Postback's own HTTP/1.1 client (aiohttp only for proxies and client certificates);
    aiohttp: aiohttp for every delivery (a switch back, should the lean client misbehave)."""
    retention_days: float = 30.0
    shutdown_timeout_s: int = 10
    """On SIGTERM, how long in-flight attempts may finish before they are handed back."""
    lease_s: int = 30
    """How long a claimed delivery belongs to its worker unless renewed (a live worker renews
    every third of it); a dead worker's work waits this long."""
    ui_frame_ancestors: str = ""
    """Origins (space-separated) whose pages may embed the portal in a frame; empty: none but
    Postback itself. The session cookie is SameSite=Strict, so only same-site embedding works."""
    log_level: str = "INFO"
    access_log: bool = False
    """One line per API request on the ``postback.access`` logger (no headers, no bodies)."""
    metrics_interval_s: int = 15
    """How often the backlog gauges are read from the database."""
    metrics_top_endpoints: int = 10
    """Per-endpoint series for at most this many busiest and this many failing endpoints."""
    disable_after_s: int = 5 * 86_400
    """Auto-disable an endpoint after this long failing continuously (0: never)."""
    disable_after_dead: int = 0
    """Auto-disable an endpoint after this many consecutive dead deliveries (0: never)."""
    failing_after: int = 5
    """Consecutive failed attempts that make an endpoint "failing" (endpoint.failing)."""

    @classmethod
    def from_env(cls) -> Settings:
        log_level = os.environ.get("POSTBACK_LOG_LEVEL", "INFO").upper()
        if log_level not in LOG_LEVELS:
            raise ConfigError(
                f"POSTBACK_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}"
            )
        access_log = os.environ.get("POSTBACK_ACCESS_LOG", "0")
        if access_log not in ("0", "1", "true", "false", ""):
            raise ConfigError(f"POSTBACK_ACCESS_LOG must be 1 or 0, got {access_log!r}")
        log_format = os.environ.get("POSTBACK_LOG_FORMAT", "text")
        if log_format not in ("text", "json"):
            raise ConfigError(f"POSTBACK_LOG_FORMAT must be text or json, got {log_format!r}")
        http_client = os.environ.get("POSTBACK_HTTP_CLIENT", "lean")
        if http_client not in ("lean", "aiohttp"):
            raise ConfigError(f"POSTBACK_HTTP_CLIENT must be lean or aiohttp, got {http_client!r}")
        return cls(
            http_client=http_client,
            database_url=os.environ.get("POSTBACK_DATABASE_URL") or DEFAULT_DATABASE_URL,
            admin_token=os.environ.get("POSTBACK_ADMIN_TOKEN", ""),
            secret_key=os.environ.get("POSTBACK_SECRET_KEY", ""),
            secret_key_file=os.environ.get("POSTBACK_SECRET_KEY_FILE", ""),
            max_in_flight=_int("POSTBACK_MAX_IN_FLIGHT", 512, 1, 100_000),
            per_endpoint_concurrency=_int("POSTBACK_ENDPOINT_CONCURRENCY", 32, 1, 10_000),
            processes=_processes("POSTBACK_PROCESSES"),
            endpoint_prefetch=_int("POSTBACK_ENDPOINT_PREFETCH", 512, 0, 10_000),
            hanging_endpoint_concurrency=_int(
                "POSTBACK_HANGING_ENDPOINT_CONCURRENCY", 4, 1, 10_000
            ),
            breaker_failures=_int(
                "POSTBACK_BREAKER_FAILURES", DEFAULT_AFTER_FAILURES, 0, 1_000_000
            ),
            breaker_pause_s=_int(
                "POSTBACK_BREAKER_PAUSE_SECONDS", DEFAULT_COOLDOWN_MS // 1000, 1, 86_400
            ),
            breaker_max_pause_s=_int(
                "POSTBACK_BREAKER_MAX_PAUSE_SECONDS", DEFAULT_MAX_COOLDOWN_MS // 1000, 1, 86_400
            ),
            log_format=log_format,
            allow_networks=_networks("POSTBACK_ALLOW_NETWORKS"),
            egress_proxy=os.environ.get("POSTBACK_EGRESS_PROXY", ""),
            retention_days=_int("POSTBACK_RETENTION_DAYS", 30, 1, 36_500),
            # Longer than the longest attempt (60 s timeout), or live work would be re-sent.
            shutdown_timeout_s=_int("POSTBACK_SHUTDOWN_TIMEOUT_SECONDS", 10, 0, 3600),
            lease_s=_int("POSTBACK_LEASE_SECONDS", 30, 2, 86_400),
            ui_frame_ancestors=_origins("POSTBACK_UI_FRAME_ANCESTORS"),
            log_level=log_level,
            access_log=access_log in ("1", "true"),
            metrics_interval_s=_int("POSTBACK_METRICS_INTERVAL_SECONDS", 15, 1, 3600),
            metrics_top_endpoints=_int("POSTBACK_METRICS_TOP_ENDPOINTS", 10, 0, 1000),
            disable_after_s=_int(
                "POSTBACK_DISABLE_AFTER_SECONDS", 5 * 86_400, 0, 10 * 365 * 86_400
            ),
            disable_after_dead=_int("POSTBACK_DISABLE_AFTER_DEAD", 0, 0, 1_000_000),
            failing_after=_int("POSTBACK_FAILING_AFTER", 5, 1, 1_000_000),
        )


def sqlite_path(database_url: str) -> str | None:
    """The SQLite file a URL names, absolute (relative paths are relative to the current
    directory), or None for another database."""
    if not database_url.startswith("sqlite://"):
        return None
    path = database_url.removeprefix("sqlite://")
    # sqlite:///relative.db -> "relative.db"; sqlite:////abs/x.db -> "/abs/x.db"
    path = path[1:] if path.startswith("/") else path
    return os.path.abspath(path)


def describe_database(database_url: str) -> str:
    """Where the data lives, for the start-up line: the absolute SQLite file, or the
    PostgreSQL host and database (never the password)."""
    path = sqlite_path(database_url)
    if path is not None:
        return f"SQLite file {path}"
    parts = urlsplit(database_url)
    return f"PostgreSQL {parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


def key_file_path(settings: Settings) -> str:
    """The key file: as configured, else beside the SQLite file, else ./postback.key."""
    if settings.secret_key_file:
        return settings.secret_key_file
    path = sqlite_path(settings.database_url)
    if path is not None:
        return os.path.join(os.path.dirname(path), "postback.key")
    return "postback.key"
