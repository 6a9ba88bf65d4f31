"""The ``postback`` command line.

Service commands (serve, worker, migrate, accounts create) open the database named by
POSTBACK_DATABASE_URL; the API commands talk to a running Postback through ``postback.Client``
(``--url``/``--api-key``, or POSTBACK_URL/POSTBACK_API_KEY); ``listen`` is a local receiver.

Every command prints for people by default (tables, ``key: value`` lines), ``--json`` for
programs, and ``--field NAME`` for one value in a shell variable
(``KEY=$(postback accounts create acme --field api_key)``). The global options may be given
before or after the command. Errors print one line and exit non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import msgspec

from postback import __version__
from postback.cli.config import Settings, available_cores
from postback.client import DEFAULT_URL, APIError, Client
from postback.core import wire as s
from postback.core.errors import PostbackError
from postback.core.policy import PRESETS, PolicyError, RetryPolicy, resolve_policy, validate_policy

T = TypeVar("T")


class CLIError(PostbackError):
    """A user-facing error: printed as one line."""


# -- output -----------------------------------------------------------------------------------


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``key: value`` lines, aligned; None and empty values are left out."""
    shown = [(k, v) for k, v in pairs if v not in (None, "", [], {})]
    width = max((len(k) for k, _ in shown), default=0)
    return "\n".join(f"{k + ':':<{width + 1}} {_text(v)}" for k, v in shown)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return json.dumps(msgspec.to_builtins(value), ensure_ascii=False)


def _pick(value: Any, path: str) -> Any:
    """``a.b.0.c`` out of a JSON-like value, or a CLIError naming what exists."""
    current = value
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            known = ", ".join(current) if isinstance(current, dict) else "none"
            raise CLIError(f"--field {path}: no {part!r} in the result (fields: {known})")
    return current


def emit(args: argparse.Namespace, value: Any, human: Callable[[], str]) -> None:
    """Print a result: ``--field`` one value, ``--json`` all of it, else the human form."""
    # Through JSON, not to_builtins: a message's payload is raw JSON bytes (msgspec.Raw).
    builtins = json.loads(msgspec.json.encode(value))
    field = _opt(args, "field")
    if field:
        picked = _pick(builtins, field)
        print(picked if isinstance(picked, str) else json.dumps(picked))
    elif _opt(args, "json"):
        print(json.dumps(builtins, indent=2, ensure_ascii=False))
    else:
        print(human())


def _opt(args: argparse.Namespace, name: str) -> Any:
    """A global option, wherever it was given (before or after the command)."""
    value = getattr(args, name, None)
    if value is None and name == "url":
        return os.environ.get("POSTBACK_URL") or DEFAULT_URL
    return value


# -- shared helpers ---------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "database_url", None):
        settings = dataclasses.replace(settings, database_url=args.database_url)
    if _opt(args, "json"):
        settings = dataclasses.replace(settings, log_format="json")
    return settings


def _client(args: argparse.Namespace, *, admin: bool = False) -> Client:
    """A client with the API key; ``admin``: with the admin token (POSTBACK_ADMIN_TOKEN) too,
    which is enough on its own. ``--account`` aims a platform key at one account."""
    api_key = _opt(args, "api_key") or os.environ.get("POSTBACK_API_KEY")
    admin_token = os.environ.get("POSTBACK_ADMIN_TOKEN") if admin else None
    if not api_key and not admin_token:
        if admin:
            raise CLIError(
                "no credentials: set POSTBACK_ADMIN_TOKEN (or pass a platform --api-key)"
            )
        raise CLIError("no API key: pass --api-key or set POSTBACK_API_KEY")
    return Client(
        _opt(args, "url"),
        api_key or "",
        admin_token=admin_token or None,
        account=getattr(args, "scope_account", None),
    )


def parse_policy(text: str) -> RetryPolicy:
    """A preset name or a JSON policy object, validated."""
    if text in PRESETS:
        return RetryPolicy(preset=text)
    if not text.lstrip().startswith("{"):
        names = ", ".join(PRESETS)
        raise CLIError(
            f"unknown policy {text!r}: presets are {names}; "
            "or give a JSON object such as '{\"schedule_s\": [5, 60, 600]}'"
        )
    try:
        policy = msgspec.json.decode(text.encode(), type=RetryPolicy)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        names = ", ".join(PRESETS)
        raise CLIError(f"policy must be one of {names} or a JSON object: {exc}") from None
    try:
        return validate_policy(policy)
    except PolicyError as exc:
        raise CLIError(str(exc)) from None


def _duration(seconds: float) -> str:
    if seconds > 100 * 365 * 86400:  # what no retry schedule means; also infinity
        return "centuries"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return " ".join(
        part
        for part in (
            f"{hours}h" if hours else "",
            f"{minutes}m" if minutes else "",
            f"{secs}s" if secs or not seconds else "",
        )
        if part
    )


def _port(text: str) -> int:
    """A TCP port for argparse: 1-65535 (the OS would silently pick one for 0 or wrap others)."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return int(text)


def _processes(text: str) -> int:
    """``--processes``: 1-256, or ``auto`` for one per core."""
    if text == "auto":
        return available_cores()
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"must be from 1 to 256 or auto, got {text!r}")
    return int(text)


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"must be from 1 to 1000, got {text!r}")
    return int(text)


def _status(text: str) -> int:
    if not text.isdigit() or not 200 <= int(text) <= 599:
        raise argparse.ArgumentTypeError(f"must be an HTTP status from 200 to 599, got {text!r}")
    return int(text)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None


def _header_pairs(values: list[str]) -> dict[str, str]:
    headers = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CLIError(f"--header must be NAME=VALUE, got {item!r}")
        headers[name.strip()] = value
    return headers


async def _collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]


def _paged(
    args: argparse.Namespace,
    data: list[Any],
    next_cursor: str | None,
    rows: Callable[[list[Any]], list[list[str]]],
    headers: list[str],
) -> None:
    """A listing: a table for people, with how to get the next page when there is one."""

    def human() -> str:
        text = _table(rows(data), headers) if data else "(none)"
        if next_cursor:
            text += f"\nmore: add --cursor {next_cursor} (or --all for every page)"
        return text

    emit(args, {"data": data, "next_cursor": next_cursor}, human)


# -- human forms ------------------------------------------------------------------------------


def _endpoint_text(e: s.EndpointOut) -> str:
    secret = e.signing_secret if isinstance(e.signing_secret, str) else None
    pairs: list[tuple[str, Any]] = [
        ("id", e.id),
        ("url", e.url),
        ("description", e.description),
        ("event types", e.event_types if e.event_types is not None else "all"),
        ("status", "disabled" if e.disabled else "enabled"),
        ("retry policy", e.retry_policy),
        ("timeout", f"{e.timeout_ms} ms" if e.timeout_ms else None),
        ("rate limit", f"{e.rate_limit_per_s}/s" if e.rate_limit_per_s else None),
        ("headers", e.headers),
        ("auth", e.auth.type if e.auth else None),
        ("signature", e.signature_scheme),
        ("kind", e.kind),
        ("created", e.created_at),
        ("updated", e.updated_at),
    ]
    if secret:
        pairs.append(("signing secret", f"{secret}  (your receiver verifies with it)"))
    return _fields(pairs)


def _endpoint_rows(page: list[s.EndpointOut]) -> list[list[str]]:
    return [
        [
            e.id,
            e.url,
            ",".join(e.event_types) if e.event_types is not None else "*",
            "disabled" if e.disabled else "enabled",
        ]
        for e in page
    ]


def _delivery_rows(page: list[s.DeliveryOut]) -> list[list[str]]:
    return [
        [
            d.id,
            d.message_id,
            d.endpoint_id,
            d.state,
            str(d.attempt_count),
            str(d.last_status_code or ""),
            d.dead_reason or d.last_error or "",
        ]
        for d in page
    ]


_DELIVERY_HEADERS = ["id", "message", "endpoint", "state", "attempts", "last status", "reason"]


def _delivery_text(d: s.DeliveryOut) -> str:
    return _fields(
        [
            ("id", d.id),
            ("message", d.message_id),
            ("endpoint", d.endpoint_id),
            ("event type", d.event_type),
            ("state", d.state),
            ("attempts", str(d.attempt_count)),
            ("next attempt", d.next_attempt_at),
            ("last status", str(d.last_status_code) if d.last_status_code else None),
            ("last error", d.last_error),
            ("dead because", d.dead_reason),
            ("created", d.created_at),
            ("updated", d.updated_at),
        ]
    )


def _attempt_rows(page: list[s.AttemptOut]) -> list[list[str]]:
    return [
        [
            str(a.attempt_number),
            a.started_at,
            f"{a.duration_ms:.0f} ms",
            a.outcome,
            str(a.status_code or ""),
            a.error or (a.response_body or "")[:60].replace("\n", " "),
        ]
        for a in page
    ]


# -- commands: local ----------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> None:
    import base64
    import secrets

    key = base64.b64encode(secrets.token_bytes(32)).decode()
    emit(args, {"key": key}, lambda: key)


def cmd_policies_show(args: argparse.Namespace) -> None:
    policy = resolve_policy(parse_policy(args.policy))
    statuses = list(policy.retry_statuses or ("429", "5xx", "timeout", "network"))
    name = args.policy if args.policy in PRESETS else "custom"
    schedule = list(policy.schedule())

    def human() -> str:
        lines = [
            f"policy: {name}",
            f"retried failures: {', '.join(statuses)}; every other failure is permanent",
        ]
        if policy.timeout_ms:
            lines.append(f"attempt timeout: {policy.timeout_ms} ms")
        total = 0.0
        rows = [["1", "0s", "0s", "first attempt"]]
        for i, delay in enumerate(schedule, start=2):
            total += delay
            rows.append([str(i), _duration(delay), _duration(total), f"retry {i - 1}"])
        lines.append(_table(rows, ["attempt", "delay", "after first", ""]))
        lines.append(f"then dead-lettered: {policy.retry_count} retries over {_duration(total)}")
        return "\n".join(lines)

    emit(
        args,
        {
            "policy": name,
            "retry_statuses": statuses,
            "timeout_ms": policy.timeout_ms,
            "schedule_s": schedule,
            "retries": policy.retry_count,
        },
        human,
    )


GIL_SWITCH_INTERVAL_S = 0.0005
"""How long the event loop may keep Python's lock while the SQLite writer thread waits for it
(CPython's default is 5 ms). The writer gives the lock up around every statement and holds
the database's write lock (and, with several processes, the file lock the others queue on)
until it commits, so each wait for the busy loop stretches every other writer's wait too.
Measured with `bench/throughput.py --endpoints 1` (session 12): +6 and +9 % in one process;
with `--processes 2`, five pairs from -12 to +47 % (mean +10 %). With no thread waiting (the
PostgreSQL adapter has none) it changes nothing."""


GC_THRESHOLDS = (20_000, 20, 20)
"""The cyclic garbage collector's thresholds in a serving process (CPython's are 700, 10, 10).

Why: a delivery allocates many short-lived objects and few cycles, and with the defaults the
collector ran ~550 times per process in a 60,000-delivery run, 0.40 s of its 8 s of CPU
(5 %, timed with ``gc.callbacks``); with the modules frozen at start and these thresholds, 3
times and 0.01 s (session 19, docs/deployment.md). Cycles still go, just in larger,
rarer batches."""


def settle_garbage_collector() -> None:
    """Everything imported so far moves out of the collector's sight (``gc.freeze``): modules,
    classes and functions live as long as the process, yet every full collection walked them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def cmd_serve(args: argparse.Namespace, *, api: bool, dispatch: bool) -> None:
    from postback.cli.serve import run_service
    from postback.observe.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_format, settings.log_level)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    settle_garbage_collector()
    await run_service(
        settings,
        host=getattr(args, "host", None),
        port=getattr(args, "port", 0),
        api=api,
        dispatch=dispatch,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        reuse_port=getattr(args, "reuse_port", False),
    )


def cmd_serve_processes(args: argparse.Namespace, count: int) -> int:
    """``serve --processes N``: N whole serve processes on one port (see cli/processes.py)."""
    from postback.cli.processes import Supervisor, child_argv, ensure_port_free, metrics_env
    from postback.cli.serve import prepare_shared_state
    from postback.observe.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_format, settings.log_level)
    ensure_port_free(args.host, args.port)  # before anything is written: a refusal changes nothing
    prepare_shared_state(settings)
    base = [
        "serve",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--processes",
        "1",
        "--reuse-port",
    ]
    if args.database_url:
        base += ["--database-url", args.database_url]
    if _opt(args, "json"):
        base.append("--json")

    def argv_for(index: int) -> list[str]:
        metrics = ["--metrics-port", str(args.metrics_port), "--metrics-host", args.metrics_host]
        return child_argv(base + (metrics if index == 0 and args.metrics_port else []))

    logging.getLogger("postback.cli.serve").info(
        "starting %d serve processes on port %d, sharing the database (POSTBACK_PROCESSES=1 "
        "for a single one)",
        count,
        args.port,
    )
    supervisor = Supervisor(
        count,
        argv_for,
        env=metrics_env(dict(os.environ)),
        shutdown_timeout_s=settings.shutdown_timeout_s + 20,
    )
    return supervisor.run()


async def cmd_migrate(args: argparse.Namespace) -> None:
    from postback.cli.config import describe_database
    from postback.cli.serve import migrate_database

    settings = _settings(args)
    await migrate_database(settings)
    where = describe_database(settings.database_url)
    emit(
        args,
        {"status": "up to date", "database": where},
        lambda: f"database is up to date ({where})",
    )


async def cmd_accounts_create(args: argparse.Namespace) -> None:
    from postback.cli.config import describe_database
    from postback.cli.serve import open_services
    from postback.core.errors import Conflict, InvalidInput

    settings = _settings(args)
    # Like `serve`: SQLite migrates itself, PostgreSQL waits for `postback migrate`.
    async with open_services(settings) as services:
        try:
            account, api_key = await services.accounts.create(
                args.name, external_id=args.external_id, with_key=not args.no_key
            )
        except InvalidInput as exc:
            raise CLIError(f"{exc.field}: {exc.message}") from None
        except Conflict as exc:
            raise CLIError(str(exc)) from None
    where = describe_database(settings.database_url)
    result: dict[str, Any] = {
        "id": account.id,
        "name": account.name,
        "external_id": account.external_id,
    }
    if api_key is not None:
        result["api_key"] = api_key
    result["database"] = where
    emit(
        args,
        result,
        lambda: _fields(
            [
                ("id", account.id),
                ("name", account.name),
                ("external id", account.external_id),
                (
                    "api key",
                    f"{api_key}  (shown once: export POSTBACK_API_KEY=...)" if api_key else None,
                ),
                ("database", where),
            ]
        ),
    )


async def cmd_accounts_list(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        if args.all:
            data, cursor = await _collect(client.iter_accounts(q=args.search)), None
        else:
            page = await client.list_accounts(q=args.search, limit=args.limit, cursor=args.cursor)
            data, cursor = page.data, page.next_cursor

    def rows(accounts: list[s.AccountOut]) -> list[list[str]]:
        return [[a.id, a.external_id or "", a.name, a.created_at] for a in accounts]

    _paged(args, data, cursor, rows, ["id", "external id", "name", "created"])


async def cmd_accounts_show(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        account = await client.get_account(args.account_ref)
    emit(
        args,
        account,
        lambda: _fields(
            [
                ("id", account.id),
                ("name", account.name),
                ("external id", account.external_id),
                ("created", account.created_at),
            ]
        ),
    )


async def cmd_accounts_portal_link(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        link = await client.create_portal_session(args.account_ref)
    emit(args, link, lambda: _fields([("url", link.url), ("expires", link.expires_at)]))


def _key_text(key: s.KeyOut) -> str:
    pairs: list[tuple[str, Any]] = [
        ("id", key.id),
        ("scope", "platform" if key.platform else key.account_id),
        ("name", key.name),
        ("recognised by", f"{key.prefix}…{key.last4}"),
        ("created", key.created_at),
        ("revoked", key.revoked_at),
    ]
    if isinstance(key, s.KeyCreated):
        pairs.append(("key", f"{key.key}  (shown once: store it now)"))
    return _fields(pairs)


async def cmd_keys_create(args: argparse.Namespace) -> None:
    if args.platform and args.account:
        raise CLIError("a platform key has no account: pass --platform or --account, not both")
    async with _client(args, admin=args.platform) as client:
        created = await client.create_key(
            platform=args.platform, account=args.account, name=args.name or ""
        )
    emit(args, created, lambda: _key_text(created))
    print("store the key now: it is shown only once", file=sys.stderr)


async def cmd_keys_list(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        page = await client.list_keys(account=args.account, limit=args.limit, cursor=args.cursor)

    def rows(keys: list[s.KeyOut]) -> list[list[str]]:
        return [
            [
                k.id,
                "platform" if k.platform else (k.account_id or ""),
                k.name,
                f"{k.prefix}…{k.last4}",
                k.created_at,
                k.revoked_at or "",
            ]
            for k in keys
        ]

    _paged(
        args,
        page.data,
        page.next_cursor,
        rows,
        ["id", "scope", "name", "key", "created", "revoked"],
    )


async def cmd_keys_rotate(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        rotated = await client.rotate_key(args.key_id, grace_s=args.grace_s)
    emit(args, rotated, lambda: _key_text(rotated))
    print("store the key now: it is shown only once", file=sys.stderr)


async def cmd_keys_revoke(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        key = await client.revoke_key(args.key_id)
    emit(args, key, lambda: f"revoked {key.id} ({key.prefix}…{key.last4})")


async def cmd_listen(args: argparse.Namespace) -> None:
    from postback.cli.listen import ListenOptions, Verdict, print_report, run_listener

    secrets = [*(args.secret or [])]
    if not secrets and os.environ.get("POSTBACK_LISTEN_SECRET"):
        secrets.append(os.environ["POSTBACK_LISTEN_SECRET"])
    if not secrets:
        raise CLIError(
            "listen needs the endpoint's signing secret: --secret whsec_... "
            "(or POSTBACK_LISTEN_SECRET), to verify what it receives"
        )
    if args.forward_to and not args.forward_to.startswith(("http://", "https://")):
        raise CLIError(f"--forward-to must be an http(s) URL, got {args.forward_to!r}")
    options = ListenOptions(
        secrets=tuple(secrets),
        host=args.host,
        port=args.port,
        status=args.status,
        forward_to=args.forward_to,
    )

    def out_json(verdict: Verdict, method: str, path: str, answer: str) -> None:
        record = {**msgspec.to_builtins(dataclasses.asdict(verdict)), "path": path}
        record["answer"] = answer
        print(json.dumps(record, ensure_ascii=False), flush=True)

    await run_listener(options, out=out_json if _opt(args, "json") else print_report)


# -- commands: the API --------------------------------------------------------------------------


async def cmd_health(args: argparse.Namespace) -> None:
    client = Client(_opt(args, "url"), None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.wait
    async with client:
        while True:
            try:
                health = await client.health()
                break
            except APIError:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.2)
    emit(args, health, lambda: f"{health.status}: postback {health.version} at {client.base_url}")


async def cmd_endpoints_add(args: argparse.Namespace) -> None:
    if not args.endpoint_url:
        raise CLIError(
            "endpoints add needs the customer's callback URL as its argument, e.g. "
            "`postback endpoints add https://customer.example.com/callbacks` "
            "(--url is the Postback server, not the endpoint)"
        )
    fields = _endpoint_fields(args)
    if args.secret:
        fields["signing_secret"] = args.secret
    if args.signature_scheme:
        fields["signature_scheme"] = args.signature_scheme
    async with _client(args) as client:
        endpoint = await client.create_endpoint(args.endpoint_url, **fields)
    emit(args, endpoint, lambda: _endpoint_text(endpoint))


def _endpoint_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The endpoint settings shared by ``add`` and ``update``, as API fields."""
    fields: dict[str, Any] = {}
    if args.event_type:
        fields["event_types"] = args.event_type
    if getattr(args, "all_event_types", False):
        fields["event_types"] = None
    if args.description is not None:
        fields["description"] = args.description
    if args.policy:
        fields["retry_policy"] = parse_policy(args.policy)
    if args.timeout_ms is not None:
        fields["timeout_ms"] = args.timeout_ms
    if args.rate_limit is not None:
        fields["rate_limit_per_s"] = args.rate_limit
    if args.header:
        fields["headers"] = _header_pairs(args.header)
    if args.basic:
        username, sep, password = args.basic.partition(":")
        if not sep:
            raise CLIError("--basic must be USERNAME:PASSWORD")
        fields["auth"] = {"type": "basic", "username": username, "password": password}
    if args.bearer:
        fields["auth"] = {"type": "bearer", "token": args.bearer}
    return fields


async def cmd_endpoints_list(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        if args.all:
            data, cursor = await _collect(client.iter_endpoints()), None
        else:
            page = await client.list_endpoints(limit=args.limit, cursor=args.cursor)
            data, cursor = page.data, page.next_cursor
    _paged(args, data, cursor, _endpoint_rows, ["id", "url", "event types", "status"])


async def cmd_endpoints_show(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        endpoint = await client.get_endpoint(args.endpoint_id)
    emit(args, endpoint, lambda: _endpoint_text(endpoint))


async def cmd_endpoints_enable(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        result = await client.enable_endpoint(args.endpoint_id, replay=args.replay)
    emit(
        args,
        result.endpoint,
        lambda: f"endpoint {result.endpoint.id} enabled; replayed {result.replayed} deliveries",
    )


async def cmd_endpoints_health(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        health = await client.endpoint_health(args.endpoint_id)

    def human() -> str:
        b = health.backlog
        lines = [
            f"{health.endpoint_id}: {health.status}"
            + (f" ({health.disabled_reason})" if health.disabled_reason else ""),
            f"recent: {health.recent.successes} ok, {health.recent.failures} failed; "
            f"{health.consecutive_failures} failures in a row"
            + (f" since {health.failing_since}" if health.failing_since else ""),
            f"latency p50/p90/p99: {health.latency.p50_ms}/{health.latency.p90_ms}/"
            f"{health.latency.p99_ms} ms",
            f"backlog: {b.pending} pending ({b.due} due), {b.delivering} in flight, {b.dead} dead;"
            f" oldest pending {b.oldest_pending_age_s:.0f} s",
        ]
        return "\n".join(lines)

    emit(args, health, human)


async def cmd_endpoints_update(args: argparse.Namespace) -> None:
    changes = _endpoint_fields(args)
    if args.endpoint_url:
        changes["url"] = args.endpoint_url
    if not changes:
        raise CLIError("nothing to change: give at least one option (see --help)")
    await _update(args, changes)


async def _update(args: argparse.Namespace, changes: dict[str, Any]) -> None:
    async with _client(args) as client:
        endpoint = await client.update_endpoint(args.endpoint_id, **changes)
    emit(args, endpoint, lambda: _endpoint_text(endpoint))


async def cmd_endpoints_delete(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        await client.delete_endpoint(args.endpoint_id)
    emit(
        args,
        {"id": args.endpoint_id, "deleted": True},
        lambda: f"deleted {args.endpoint_id} (its unfinished deliveries are dead-lettered)",
    )


async def cmd_event_types_add(args: argparse.Namespace) -> None:
    schema: Any = {"type": "object"}
    if args.schema:
        raw = await asyncio.to_thread(_read_input, args.schema)
        try:
            schema = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise CLIError(f"{args.schema} is not valid JSON: {exc}") from None
        if not isinstance(schema, dict):
            raise CLIError(f"{args.schema} must hold a JSON Schema object")
    async with _client(args) as client:
        created = await client.create_event_type(args.name, schema, args.description or "")
    emit(
        args,
        created,
        lambda: _fields([("name", created.name), ("description", created.description)]),
    )


async def cmd_event_types_list(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        listing = await client.list_event_types()
    rows = [[t.name, "built-in" if t.built_in else "custom", t.description] for t in listing.data]
    emit(args, listing, lambda: _table(rows, ["name", "kind", "description"]))


async def cmd_send(args: argparse.Namespace) -> None:
    raw = await asyncio.to_thread(_read_input, args.file)
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise CLIError(f"{args.file} is not valid JSON: {exc}") from None
    async with _client(args) as client:
        accepted = await client.send(
            args.event_type,
            raw,
            idempotency_key=args.idempotency_key,
            callback_url=args.callback_url,
            fanout=args.fanout,
        )

    def human() -> str:
        head = f"{'duplicate of' if accepted.duplicate else 'accepted'} {accepted.id}"
        rows = [[d.id, d.endpoint_id, d.state] for d in accepted.deliveries]
        if not rows:
            return f"{head}: no endpoint is subscribed to {args.event_type}"
        return f"{head}\n{_table(rows, ['delivery', 'endpoint', 'state'])}"

    emit(args, accepted, human)


async def cmd_messages_show(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        message = await client.get_message(args.message_id)

    def human() -> str:
        payload = json.dumps(json.loads(bytes(message.payload)), indent=2, ensure_ascii=False)
        head = _fields(
            [
                ("id", message.id),
                ("event type", message.event_type),
                ("created", message.created_at),
            ]
        )
        deliveries = _table(_delivery_rows(message.deliveries), _DELIVERY_HEADERS)
        return f"{head}\npayload:\n{payload}\ndeliveries:\n{deliveries}"

    emit(args, message, human)


async def cmd_deliveries_list(args: argparse.Namespace) -> None:
    filters: dict[str, Any] = {
        "state": args.state,
        "endpoint_id": args.endpoint,
        "message_id": args.message,
    }
    async with _client(args) as client:
        if args.all:
            data, cursor = await _collect(client.iter_deliveries(**filters)), None
        else:
            page = await client.list_deliveries(**filters, limit=args.limit, cursor=args.cursor)
            data, cursor = page.data, page.next_cursor
    _paged(args, data, cursor, _delivery_rows, _DELIVERY_HEADERS)


async def cmd_deliveries_show(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        delivery = await client.get_delivery(args.delivery_id)
    emit(args, delivery, lambda: _delivery_text(delivery))


async def cmd_deliveries_attempts(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        if args.all:
            data, cursor = await _collect(client.iter_attempts(args.delivery_id)), None
        else:
            page = await client.list_attempts(
                args.delivery_id, limit=args.limit, cursor=args.cursor
            )
            data, cursor = page.data, page.next_cursor
    _paged(
        args,
        data,
        cursor,
        _attempt_rows,
        ["attempt", "started", "took", "outcome", "status", "error / response"],
    )


async def cmd_replay(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        if args.delivery_id:
            result = await client.replay_delivery(args.delivery_id)
        else:
            result = await client.replay(endpoint_id=args.endpoint)
    emit(args, result, lambda: f"replayed {result.replayed} deliveries")


# -- parser -----------------------------------------------------------------------------------


def _global_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name. SUPPRESS keeps a value given
    before the command from being reset by the subcommand's own default."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("global options")
    group.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"the Postback server (default: $POSTBACK_URL or {DEFAULT_URL})",
    )
    group.add_argument(
        "--api-key",
        default=argparse.SUPPRESS,
        help="the account's key (default: $POSTBACK_API_KEY)",
    )
    group.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON, for programs"
    )
    group.add_argument(
        "--field",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="print only this field of the JSON result (dotted: deliveries.0.id)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = argparse.ArgumentParser(
        prog="postback", description="Durable callback delivery.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"postback {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        parent: Any, name: str, help: str, *, db: bool = False, scoped: bool = False
    ) -> argparse.ArgumentParser:
        """``scoped``: an account-scoped API command, which a platform key aims with --account."""
        p: argparse.ArgumentParser = parent.add_parser(name, help=help, parents=[common])
        if scoped:
            p.add_argument(
                "--account",
                dest="scope_account",
                help="with a platform key: the account (id or external id) to act on",
            )
        if db:
            p.add_argument(
                "--database-url",
                help="default: $POSTBACK_DATABASE_URL or sqlite:///./postback.db "
                "(postback.db in the current directory)",
            )
        return p

    def group(name: str, help: str) -> Any:
        return sub.add_parser(name, help=help).add_subparsers(
            dest="action", required=True, metavar="ACTION"
        )

    def paging(p: argparse.ArgumentParser, default: int) -> None:
        p.add_argument("--limit", type=_limit, default=default, help="per page (1-1000)")
        p.add_argument("--cursor", help="the next page, as printed under the previous one")
        p.add_argument("--all", action="store_true", help="every page")

    serve = command(sub, "serve", "run the API and the dispatcher", db=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument(
        "--processes",
        type=_processes,
        help="serve processes sharing the port and the database, or auto: one per core "
        "(default: $POSTBACK_PROCESSES, else 2 on a machine with two cores or more)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    worker = command(sub, "worker", "run the dispatcher only", db=True)
    for p in (serve, worker):
        p.add_argument(
            "--metrics-port",
            type=_port,
            help="serve /metrics, /livez, /readyz on this port (serve also has them on --port)",
        )
        p.add_argument("--metrics-host", default="127.0.0.1")
    command(sub, "migrate", "create or upgrade the database schema", db=True)
    command(sub, "keygen", "print a new POSTBACK_SECRET_KEY")
    health = command(sub, "health", "check that Postback (or `postback listen`) answers")
    health.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="keep trying this long"
    )

    listen = command(sub, "listen", "a local receiver: verify and print callbacks")
    listen.add_argument("--host", default="127.0.0.1")
    listen.add_argument("--port", type=_port, default=9000)
    listen.add_argument(
        "--secret",
        action="append",
        help="the endpoint's signing secret (whsec_..., or the Sinch secret); repeatable",
    )
    listen.add_argument(
        "--status", type=_status, default=200, help="answer this status (500: watch retries)"
    )
    listen.add_argument(
        "--forward-to",
        metavar="URL",
        help="POST each verified callback to your app; its answer is returned",
    )

    accounts = group("accounts", "manage accounts")
    create = command(accounts, "create", "create an account; prints its API key", db=True)
    create.add_argument("name")
    create.add_argument("--external-id", help="your own id for this customer (unique)")
    create.add_argument(
        "--no-key", action="store_true", help="no account key (you act with a platform key)"
    )
    alist = command(accounts, "list", "list accounts (platform key or admin token)")
    alist.add_argument("--search", help="part of the name or external id")
    paging(alist, 100)
    command(accounts, "show", "one account, by id or external id").add_argument(
        "account_ref", metavar="ACCOUNT"
    )
    command(
        accounts, "portal-link", "a 10-minute link to one account's customer portal (/ui)"
    ).add_argument("account_ref", metavar="ACCOUNT")

    keys = group("keys", "API keys: create, list, rotate, revoke")
    kcreate = command(
        keys, "create", "a new key, shown once (--platform: needs POSTBACK_ADMIN_TOKEN)"
    )
    kcreate.add_argument("--platform", action="store_true", help="a key that acts on every account")
    kcreate.add_argument("--account", help="the account (id or external id) of an account key")
    kcreate.add_argument("--name", help="what the key is for")
    klist = command(keys, "list", "keys by id, prefix and last four characters")
    klist.add_argument("--account", help="only this account's keys")
    klist.add_argument("--limit", type=_limit, default=100, help="per page (1-1000)")
    klist.add_argument("--cursor", help="the next page, as printed under the previous one")
    krotate = command(keys, "rotate", "replace a key; prints the new one")
    krotate.add_argument("key_id")
    krotate.add_argument(
        "--grace-s", type=int, default=0, help="seconds the old key keeps working (default 0)"
    )
    command(keys, "revoke", "revoke a key (every node within 1 s)").add_argument("key_id")

    endpoints = group("endpoints", "manage endpoints")

    def endpoint_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--event-type", action="append", help="repeat for several; default: all")
        p.add_argument("--description")
        p.add_argument("--policy", help="sinch, notify, vibes or a JSON retry policy")
        p.add_argument("--timeout-ms", type=int)
        p.add_argument("--rate-limit", type=float, help="deliveries per second")
        p.add_argument("--header", action="append", help="NAME=VALUE, repeatable")
        p.add_argument("--basic", help="USERNAME:PASSWORD for HTTP Basic auth")
        p.add_argument("--bearer", help="static bearer token")

    add = command(endpoints, "add", "register a customer's callback URL", scoped=True)
    add.add_argument(
        "endpoint_url",
        metavar="ENDPOINT_URL",
        nargs="?",
        help="where callbacks go (the customer's URL; --url is the Postback server)",
    )
    endpoint_options(add)
    add.add_argument("--secret", help="signing secret to use (default: a new whsec_...)")
    add.add_argument("--signature-scheme", choices=["standard-webhooks", "sinch"])
    paging(command(endpoints, "list", "list endpoints", scoped=True), 100)
    command(endpoints, "show", "show one endpoint", scoped=True).add_argument("endpoint_id")
    update = command(endpoints, "update", "change an endpoint's settings", scoped=True)
    update.add_argument("endpoint_id")
    update.add_argument("--endpoint-url", help="a new callback URL for it")
    update.add_argument("--all-event-types", action="store_true", help="subscribe to every type")
    endpoint_options(update)
    command(
        endpoints, "disable", "stop delivering to it (kept, resumable)", scoped=True
    ).add_argument("endpoint_id")
    enable = command(
        endpoints, "enable", "deliver to it again (a fresh failure streak)", scoped=True
    )
    enable.add_argument("endpoint_id")
    enable.add_argument(
        "--replay", action="store_true", help="also replay what was held or died since it failed"
    )
    command(
        endpoints, "health", "its health: failures, streak, latency, backlog", scoped=True
    ).add_argument("endpoint_id")
    command(
        endpoints, "delete", "delete it; its unfinished deliveries die", scoped=True
    ).add_argument("endpoint_id")

    event_types = group("event-types", "event types and their schemas")
    et_add = command(event_types, "add", "register a custom event type", scoped=True)
    et_add.add_argument("name")
    et_add.add_argument("--schema", help="JSON Schema file ('-': stdin); default: any object")
    et_add.add_argument("--description")
    command(event_types, "list", "built-in and custom event types", scoped=True)

    send = command(sub, "send", "submit an event from a JSON file or stdin", scoped=True)
    send.add_argument("event_type")
    send.add_argument("file", nargs="?", default="-", help="JSON file; '-' or omitted: stdin")
    send.add_argument("--idempotency-key")
    send.add_argument("--callback-url", help="deliver here instead of the subscribed endpoints")
    send.add_argument(
        "--fanout", action="store_true", help="with --callback-url: the subscribed endpoints too"
    )

    messages = group("messages", "inspect messages")
    command(
        messages, "show", "a message, its payload and its deliveries", scoped=True
    ).add_argument("message_id")

    deliveries = group("deliveries", "inspect deliveries")
    dl = command(deliveries, "list", "list deliveries, newest first", scoped=True)
    dl.add_argument("--state", choices=["pending", "delivering", "delivered", "dead"])
    dl.add_argument("--endpoint", help="only this endpoint's")
    dl.add_argument("--message", help="only this message's")
    paging(dl, 50)
    command(deliveries, "show", "one delivery", scoped=True).add_argument("delivery_id")
    attempts = command(deliveries, "attempts", "a delivery's attempts, in order", scoped=True)
    attempts.add_argument("delivery_id")
    paging(attempts, 50)

    replay = command(sub, "replay", "replay one dead delivery, or all of them", scoped=True)
    replay.add_argument("delivery_id", nargs="?")
    replay.add_argument("--endpoint", help="only this endpoint's dead deliveries")

    policies = group("policies", "retry policies")
    pshow = command(policies, "show", "print a policy's full schedule")
    pshow.add_argument("policy", help="sinch, notify, vibes or a JSON retry policy")
    return parser


_COMMANDS: dict[
    tuple[str, str | None], Callable[[argparse.Namespace], Coroutine[Any, Any, None]]
] = {
    ("migrate", None): cmd_migrate,
    ("health", None): cmd_health,
    ("listen", None): cmd_listen,
    ("accounts", "create"): cmd_accounts_create,
    ("accounts", "list"): cmd_accounts_list,
    ("accounts", "show"): cmd_accounts_show,
    ("accounts", "portal-link"): cmd_accounts_portal_link,
    ("keys", "create"): cmd_keys_create,
    ("keys", "list"): cmd_keys_list,
    ("keys", "rotate"): cmd_keys_rotate,
    ("keys", "revoke"): cmd_keys_revoke,
    ("endpoints", "add"): cmd_endpoints_add,
    ("endpoints", "list"): cmd_endpoints_list,
    ("endpoints", "show"): cmd_endpoints_show,
    ("endpoints", "update"): cmd_endpoints_update,
    ("endpoints", "disable"): lambda args: _update(args, {"disabled": True}),
    ("endpoints", "enable"): cmd_endpoints_enable,
    ("endpoints", "health"): cmd_endpoints_health,
    ("endpoints", "delete"): cmd_endpoints_delete,
    ("event-types", "add"): cmd_event_types_add,
    ("event-types", "list"): cmd_event_types_list,
    ("send", None): cmd_send,
    ("messages", "show"): cmd_messages_show,
    ("deliveries", "list"): cmd_deliveries_list,
    ("deliveries", "show"): cmd_deliveries_show,
    ("deliveries", "attempts"): cmd_deliveries_attempts,
    ("replay", None): cmd_replay,
}


def dispatch(args: argparse.Namespace) -> None:
    command = (args.command, getattr(args, "action", None))
    if command == ("policies", "show"):
        cmd_policies_show(args)
        return
    if command[0] == "keygen":
        cmd_keygen(args)
        return
    if command[0] == "serve":
        count = args.processes or _settings(args).processes
        if count > 1 and not args.reuse_port:
            code = cmd_serve_processes(args, count)
            if code:
                sys.exit(code)
            return
    if command[0] in ("serve", "worker"):
        coroutine = cmd_serve(args, api=command[0] == "serve", dispatch=True)
        try:
            import uvloop
        except ImportError:  # only the import: an ImportError inside the service is a crash
            asyncio.run(coroutine)
            return
        uvloop.run(coroutine)
        return
    handler = _COMMANDS.get(command)
    if handler is None:
        raise CLIError(f"unknown command {' '.join(filter(None, command))}")
    asyncio.run(handler(args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        dispatch(args)
    except PostbackError as exc:
        print(f"postback: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "postback":
            raise
        # The bare package is the client and the receiver SDK; the service is an extra.
        print(
            f"postback: error: {args.command} needs the service's dependencies "
            f"({exc.name} is not installed): pip install 'postback[server]'",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1  # the reader went away (`postback deliveries list | head`)
    except Exception as exc:
        # A bug of ours, not the user's input: still one line, with the way to the details.
        if os.environ.get("POSTBACK_DEBUG"):
            raise
        print(
            f"postback: internal error: {type(exc).__name__}: {exc} "
            "(POSTBACK_DEBUG=1 shows the traceback; please report it)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
