"""The ``postback`` command line.

Service commands (serve, worker, migrate, accounts create) open the database named by
POSTBACK_DATABASE_URL; the others talk to a running Postback through ``postback.Client``
(POSTBACK_URL, POSTBACK_API_KEY). Errors print one line and exit non-zero, no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from postback import __version__
from postback.cli.config import Settings
from postback.client import Client
from postback.core.errors import PostbackError
from postback.core.policy import PRESETS, PolicyError, RetryPolicy, resolve_policy, validate_policy


class CLIError(PostbackError):
    """A user-facing error: printed as one line."""


def _print_json(value: Any) -> None:
    print(json.dumps(msgspec.to_builtins(value), indent=2))


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "database_url", None):
        settings = dataclasses.replace(settings, database_url=args.database_url)
    return settings


def _client(args: argparse.Namespace, *, admin: bool = False) -> Client:
    """A client with the API key; ``admin``: with the admin token (POSTBACK_ADMIN_TOKEN) too,
    which is enough on its own."""
    api_key = args.api_key or os.environ.get("POSTBACK_API_KEY")
    admin_token = os.environ.get("POSTBACK_ADMIN_TOKEN") if admin else None
    if not api_key and not admin_token:
        if admin:
            raise CLIError(
                "no credentials: set POSTBACK_ADMIN_TOKEN (or pass a platform --api-key)"
            )
        raise CLIError("no API key: pass --api-key or set POSTBACK_API_KEY")
    return Client(
        args.url,
        api_key,
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


# -- commands ---------------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> None:
    import base64
    import secrets

    print(base64.b64encode(secrets.token_bytes(32)).decode())


def cmd_policies_show(args: argparse.Namespace) -> None:
    policy = resolve_policy(parse_policy(args.policy))
    statuses = ", ".join(policy.retry_statuses or ("429", "5xx", "timeout", "network"))
    print(f"policy: {args.policy if args.policy in PRESETS else 'custom'}")
    print(f"retried failures: {statuses}; every other failure is permanent")
    if policy.timeout_ms:
        print(f"attempt timeout: {policy.timeout_ms} ms")
    total = 0.0
    rows = [["1", "0s", "0s", "first attempt"]]
    for i, delay in enumerate(policy.schedule(), start=2):
        total += delay
        rows.append([str(i), _duration(delay), _duration(total), f"retry {i - 1}"])
    print(_table(rows, ["attempt", "delay", "after first", ""]))
    print(f"then dead-lettered: {policy.retry_count} retries over {_duration(total)}")


async def cmd_serve(args: argparse.Namespace, *, api: bool, dispatch: bool) -> None:
    from postback.cli.serve import run_service
    from postback.observe.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_format)
    await run_service(
        settings,
        host=getattr(args, "host", None),
        port=getattr(args, "port", 0),
        api=api,
        dispatch=dispatch,
    )


async def cmd_migrate(args: argparse.Namespace) -> None:
    from postback.cli.serve import migrate_database

    await migrate_database(_settings(args))
    print("database is up to date")


async def cmd_accounts_create(args: argparse.Namespace) -> None:
    from postback.cli.serve import open_services
    from postback.core.errors import Conflict, InvalidInput

    # Like `serve`: SQLite migrates itself, PostgreSQL waits for `postback migrate`.
    async with open_services(_settings(args)) as services:
        try:
            account, api_key = await services.accounts.create(
                args.name, external_id=args.external_id, with_key=not args.no_key
            )
        except InvalidInput as exc:
            raise CLIError(f"{exc.field}: {exc.message}") from None
        except Conflict as exc:
            raise CLIError(str(exc)) from None
    out = {"id": account.id, "name": account.name, "external_id": account.external_id}
    if api_key is not None:
        out["api_key"] = api_key
    print(json.dumps(out, indent=2))


async def cmd_accounts_list(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        page = await client.list_accounts(q=args.search, limit=args.limit, cursor=args.cursor)
    rows = [[a.id, a.external_id or "", a.name, a.created_at] for a in page.data]
    print(_table(rows, ["id", "external id", "name", "created"]))
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")


async def cmd_accounts_show(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        _print_json(await client.get_account(args.account_ref))


async def cmd_accounts_portal_link(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        _print_json(await client.create_portal_session(args.account_ref))


async def cmd_keys_create(args: argparse.Namespace) -> None:
    if args.platform and args.account:
        raise CLIError("a platform key has no account: pass --platform or --account, not both")
    async with _client(args, admin=args.platform) as client:
        created = await client.create_key(
            platform=args.platform, account=args.account, name=args.name or ""
        )
    _print_json(created)
    print("store the key now: it is shown only once", file=sys.stderr)


async def cmd_keys_list(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        page = await client.list_keys(account=args.account, limit=args.limit)
    rows = [
        [
            k.id,
            "platform" if k.platform else (k.account_id or ""),
            k.name,
            f"{k.prefix}…{k.last4}",
            k.created_at,
            k.revoked_at or "",
        ]
        for k in page.data
    ]
    print(_table(rows, ["id", "scope", "name", "key", "created", "revoked"]))


async def cmd_keys_rotate(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        _print_json(await client.rotate_key(args.key_id, grace_s=args.grace_s))
    print("store the key now: it is shown only once", file=sys.stderr)


async def cmd_keys_revoke(args: argparse.Namespace) -> None:
    async with _client(args, admin=True) as client:
        key = await client.revoke_key(args.key_id)
    print(f"revoked {key.id} ({key.prefix}…{key.last4})")


def _header_pairs(values: list[str]) -> dict[str, str]:
    headers = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise CLIError(f"--header must be NAME=VALUE, got {item!r}")
        headers[name.strip()] = value
    return headers


async def cmd_endpoints_add(args: argparse.Namespace) -> None:
    fields: dict[str, Any] = {}
    if args.event_type:
        fields["event_types"] = args.event_type
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
    async with _client(args) as client:
        _print_json(await client.create_endpoint(args.endpoint_url, **fields))


async def cmd_endpoints_list(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        page = await client.list_endpoints(limit=args.limit)
    rows = [
        [
            e.id,
            e.url,
            ",".join(e.event_types) if e.event_types is not None else "*",
            "disabled" if e.disabled else "enabled",
        ]
        for e in page.data
    ]
    print(_table(rows, ["id", "url", "event types", "status"]))


async def cmd_endpoints_show(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        _print_json(await client.get_endpoint(args.endpoint_id))


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror}") from None


async def cmd_event_types_add(args: argparse.Namespace) -> None:
    schema: Any = {"type": "object"}
    if args.schema:
        raw = await asyncio.to_thread(_read_input, args.schema)
        try:
            schema = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise CLIError(f"{args.schema} is not valid JSON: {exc}") from None
    async with _client(args) as client:
        _print_json(await client.create_event_type(args.name, schema, args.description or ""))


async def cmd_event_types_list(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        listing = await client.list_event_types()
    rows = [[t.name, "built-in" if t.built_in else "custom", t.description] for t in listing.data]
    print(_table(rows, ["name", "kind", "description"]))


async def cmd_send(args: argparse.Namespace) -> None:
    raw = await asyncio.to_thread(_read_input, args.file)
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise CLIError(f"{args.file} is not valid JSON: {exc}") from None
    async with _client(args) as client:
        _print_json(
            await client.send(
                args.event_type,
                raw,
                idempotency_key=args.idempotency_key,
                callback_url=args.callback_url,
                fanout=args.fanout,
            )
        )


async def cmd_deliveries_list(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        page = await client.list_deliveries(
            state=args.state, endpoint_id=args.endpoint, limit=args.limit
        )
    rows = [
        [
            d.id,
            d.message_id,
            d.endpoint_id,
            d.state,
            str(d.attempt_count),
            str(d.last_status_code or ""),
            d.dead_reason or d.last_error or "",
        ]
        for d in page.data
    ]
    print(_table(rows, ["id", "message", "endpoint", "state", "attempts", "last status", "reason"]))


async def cmd_replay(args: argparse.Namespace) -> None:
    async with _client(args) as client:
        if args.delivery_id:
            result = await client.replay_delivery(args.delivery_id)
        else:
            result = await client.replay(endpoint_id=args.endpoint)
    print(f"replayed {result.replayed} deliveries")


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="postback", description="Durable callback delivery.")
    parser.add_argument("--version", action="version", version=f"postback {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--database-url", help="default: $POSTBACK_DATABASE_URL or sqlite:///./postback.db"
        )
        return p

    def with_api(p: argparse.ArgumentParser, scoped: bool = True) -> argparse.ArgumentParser:
        """``scoped``: an account-scoped command, which a platform key aims with --account."""
        p.add_argument("--url", default=os.environ.get("POSTBACK_URL", "http://127.0.0.1:8000"))
        p.add_argument("--api-key", help="default: $POSTBACK_API_KEY")
        if scoped:
            p.add_argument(
                "--account",
                dest="scope_account",
                help="with a platform key: the account (id or external id) to act on",
            )
        return p

    serve = with_db(sub.add_parser("serve", help="run the API and the dispatcher"))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    with_db(sub.add_parser("worker", help="run the dispatcher only"))
    with_db(sub.add_parser("migrate", help="create or upgrade the database schema"))
    sub.add_parser("keygen", help="print a new POSTBACK_SECRET_KEY")

    accounts = sub.add_parser("accounts", help="manage accounts").add_subparsers(
        dest="action", required=True
    )
    create = with_db(accounts.add_parser("create", help="create an account; prints its API key"))
    create.add_argument("name")
    create.add_argument("--external-id", help="your own id for this customer (unique)")
    create.add_argument(
        "--no-key", action="store_true", help="no account key (you act with a platform key)"
    )
    alist = accounts.add_parser("list", help="list accounts (platform key or admin token)")
    alist.add_argument("--search", help="part of the name or external id")
    alist.add_argument("--limit", type=int, default=100)
    alist.add_argument("--cursor")
    with_api(alist, scoped=False)
    ashow = with_api(
        accounts.add_parser("show", help="one account, by id or external id"), scoped=False
    )
    ashow.add_argument("account_ref", metavar="ACCOUNT")
    alink = with_api(
        accounts.add_parser(
            "portal-link", help="a 10-minute link to one account's customer portal (/ui)"
        ),
        scoped=False,
    )
    alink.add_argument("account_ref", metavar="ACCOUNT")

    keys = sub.add_parser("keys", help="API keys: create, list, rotate, revoke").add_subparsers(
        dest="action", required=True
    )
    kcreate = keys.add_parser(
        "create", help="a new key, shown once (--platform: needs POSTBACK_ADMIN_TOKEN)"
    )
    kcreate.add_argument("--platform", action="store_true", help="a key that acts on every account")
    kcreate.add_argument("--account", help="the account (id or external id) of an account key")
    kcreate.add_argument("--name", help="what the key is for")
    with_api(kcreate, scoped=False)
    klist = keys.add_parser("list", help="keys by id, prefix and last four characters")
    klist.add_argument("--account", help="only this account's keys")
    klist.add_argument("--limit", type=int, default=100)
    with_api(klist, scoped=False)
    krotate = with_api(
        keys.add_parser("rotate", help="replace a key; prints the new one"), scoped=False
    )
    krotate.add_argument("key_id")
    krotate.add_argument(
        "--grace-s", type=int, default=0, help="seconds the old key keeps working (default 0)"
    )
    krevoke = with_api(
        keys.add_parser("revoke", help="revoke a key (every node within 1 s)"), scoped=False
    )
    krevoke.add_argument("key_id")

    endpoints = sub.add_parser("endpoints", help="manage endpoints").add_subparsers(
        dest="action", required=True
    )
    add = with_api(endpoints.add_parser("add", help="register a callback URL"))
    add.add_argument("endpoint_url", metavar="URL")
    add.add_argument("--event-type", action="append", help="repeat for several; default: all")
    add.add_argument("--policy", help="sinch, notify, vibes or a JSON retry policy")
    add.add_argument("--timeout-ms", type=int)
    add.add_argument("--rate-limit", type=float, help="deliveries per second")
    add.add_argument("--header", action="append", help="NAME=VALUE, repeatable")
    add.add_argument("--basic", help="USERNAME:PASSWORD for HTTP Basic auth")
    add.add_argument("--bearer", help="static bearer token")
    listing = with_api(endpoints.add_parser("list", help="list endpoints"))
    listing.add_argument("--limit", type=int, default=100)
    show = with_api(endpoints.add_parser("show", help="show one endpoint"))
    show.add_argument("endpoint_id")

    event_types = sub.add_parser(
        "event-types", help="event types and their schemas"
    ).add_subparsers(dest="action", required=True)
    et_add = with_api(event_types.add_parser("add", help="register a custom event type"))
    et_add.add_argument("name")
    et_add.add_argument("--schema", help="JSON Schema file ('-': stdin); default: any object")
    et_add.add_argument("--description")
    with_api(event_types.add_parser("list", help="built-in and custom event types"))

    send = with_api(sub.add_parser("send", help="submit an event from a JSON file or stdin"))
    send.add_argument("event_type")
    send.add_argument("file", nargs="?", default="-", help="JSON file; '-' or omitted: stdin")
    send.add_argument("--idempotency-key")
    send.add_argument("--callback-url", help="deliver here instead of the subscribed endpoints")
    send.add_argument(
        "--fanout", action="store_true", help="with --callback-url: the subscribed endpoints too"
    )

    deliveries = sub.add_parser("deliveries", help="inspect deliveries").add_subparsers(
        dest="action", required=True
    )
    dl = with_api(deliveries.add_parser("list", help="list deliveries, newest first"))
    dl.add_argument("--state", choices=["pending", "delivering", "delivered", "dead"])
    dl.add_argument("--endpoint")
    dl.add_argument("--limit", type=int, default=50)

    replay = with_api(sub.add_parser("replay", help="replay one dead delivery, or all of them"))
    replay.add_argument("delivery_id", nargs="?")
    replay.add_argument("--endpoint", help="only this endpoint's dead deliveries")

    policies = sub.add_parser("policies", help="retry policies").add_subparsers(
        dest="action", required=True
    )
    pshow = policies.add_parser("show", help="print a policy's full schedule")
    pshow.add_argument("policy", help="sinch, notify, vibes or a JSON retry policy")
    return parser


def dispatch(args: argparse.Namespace) -> None:
    command = (args.command, getattr(args, "action", None))
    if command == ("policies", "show"):
        cmd_policies_show(args)
        return
    if command[0] == "keygen":
        cmd_keygen(args)
        return
    coroutine: Any
    match command:
        case ("serve", _):
            coroutine = cmd_serve(args, api=True, dispatch=True)
        case ("worker", _):
            coroutine = cmd_serve(args, api=False, dispatch=True)
        case ("migrate", _):
            coroutine = cmd_migrate(args)
        case ("accounts", "create"):
            coroutine = cmd_accounts_create(args)
        case ("accounts", "list"):
            coroutine = cmd_accounts_list(args)
        case ("accounts", "show"):
            coroutine = cmd_accounts_show(args)
        case ("accounts", "portal-link"):
            coroutine = cmd_accounts_portal_link(args)
        case ("keys", "create"):
            coroutine = cmd_keys_create(args)
        case ("keys", "list"):
            coroutine = cmd_keys_list(args)
        case ("keys", "rotate"):
            coroutine = cmd_keys_rotate(args)
        case ("keys", "revoke"):
            coroutine = cmd_keys_revoke(args)
        case ("endpoints", "add"):
            coroutine = cmd_endpoints_add(args)
        case ("endpoints", "list"):
            coroutine = cmd_endpoints_list(args)
        case ("endpoints", "show"):
            coroutine = cmd_endpoints_show(args)
        case ("event-types", "add"):
            coroutine = cmd_event_types_add(args)
        case ("event-types", "list"):
            coroutine = cmd_event_types_list(args)
        case ("send", _):
            coroutine = cmd_send(args)
        case ("deliveries", "list"):
            coroutine = cmd_deliveries_list(args)
        case ("replay", _):
            coroutine = cmd_replay(args)
        case _:
            raise CLIError(f"unknown command {' '.join(filter(None, command))}")
    if args.command in ("serve", "worker"):
        try:
            import uvloop

            uvloop.run(coroutine)
            return
        except ImportError:
            pass
    asyncio.run(coroutine)


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
