"""The HTTP API: an aiohttp adapter over the domain services of ``postback.ingest``.

Handlers decode JSON into ``schemas`` Structs, call the service, encode the answer. Every
error is JSON: ``{"error": {"code", "message", "field"?}}``, never a traceback.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from postback.api.openapi import DOCS_INIT_JS, docs_html, openapi_document, swagger_static_dir
from postback.core import wire as s
from postback.core.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    StorageError,
    StorageFull,
    StorageUnavailable,
)
from postback.core.event_schemas import BUILT_IN_SCHEMAS, OPERATIONAL_SCHEMAS
from postback.core.model import Account, DeliveryState, Endpoint
from postback.core.validation import (
    MAX_BATCH,
    MAX_JSON_DEPTH,
    check_json_depth,
    check_text,
    check_utf8,
)
from postback.ingest import MessageSubmission, Services
from postback.ingest.health import HealthReport
from postback.ingest.keys import ADMIN, Caller, NewKey
from postback.observe.http import Readiness, add_ops_routes
from postback.observe.logs import STORAGE_FULL
from postback.ui import add_ui, tokens
from postback.ui.web import UI

log = logging.getLogger("postback.api")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
ADMIN_TOKEN: web.AppKey[str] = web.AppKey("admin_token", str)


def services(request: web.Request) -> Services:
    """The domain services this app was built with (typed, so jump-to-definition works)."""
    return request.app[SERVICES]


_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_PATH = re.compile(r" - at `\$(?:\.)?([^`]*)`$")
_NAMED_FIELD = re.compile(r"field `([^`]+)`")


STORAGE_FULL_RETRY_AFTER_S = 30
"""What a client is told to wait when the disk is full (freeing space takes an operator)."""


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    return json_response(
        s.ErrorBody(error=s.ErrorDetail(code=code, message=message, field=field)), status
    )


def _field_of(message: str) -> str | None:
    """The JSON path a msgspec error names: ``$.auth.token`` -> ``auth.token``."""
    path_match = _PATH.search(message)
    path = path_match.group(1) if path_match else ""
    named = _NAMED_FIELD.search(message)
    if named and ("missing required" in message or "unknown field" in message):
        return f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None


async def decode(request: web.Request, type_: type[T]) -> T:
    """The request body as ``type_`` (see ``decode_body``)."""
    return decode_body(await request.read(), type_)


def decode_body(raw: bytes, type_: type[T]) -> T:
    """The one seam every JSON request body passes: ``type_`` or an ``ApiError`` (400).

    Before anything recursive or a database sees it, the body must be UTF-8 throughout
    (strings included), nest at most ``MAX_JSON_DEPTH`` levels, and carry no NUL or lone
    surrogate in any decoded string (payloads stay bytes, escapes and all).
    """
    if not raw.strip():
        raise ApiError(400, "invalid_request", "request body must be JSON")
    try:
        check_utf8(raw)
    except InvalidInput as exc:
        raise ApiError(400, "invalid_json", exc.message) from None
    try:
        check_json_depth(raw, MAX_JSON_DEPTH)
    except InvalidInput as exc:
        raise ApiError(400, "invalid_request", exc.message, exc.field) from None
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        value: T = decoder.decode(raw)
    except msgspec.ValidationError as refused:
        text = str(refused)
        raise ApiError(400, "invalid_request", text, _field_of(text)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as malformed:
        raise ApiError(
            400, "invalid_json", f"request body is not valid JSON: {malformed}"
        ) from None
    if b"\\u" not in raw:
        # Valid UTF-8 holds no lone surrogate and JSON no raw control character: only a \u
        # escape can decode to text the rule refuses, so without one there is nothing to walk.
        return value
    try:
        check_text(value)
    except InvalidInput as exc:
        raise ApiError(400, "invalid_request", exc.message, exc.field) from None
    return value


def check_parameters(request: web.Request) -> None:
    """Path and query parameters obey the same text rule as bodies (no NUL, no lone
    surrogate), so an id never reaches a database that cannot store it."""
    for name, value in (*request.match_info.items(), *request.query.items()):
        check_text(value, name)


async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        check_parameters(request)
        response = await handler(request)
        if STORAGE_FULL.active and request.method != "GET" and response.status < 300:
            STORAGE_FULL.cleared()  # a write went through: there is room again
        return response
    # One name per exception type: compiled (postback/native.py), a name shared by handlers
    # of different types keeps the first one's type and refuses the others.
    except ApiError as api_error:
        return error_response(api_error.status, api_error.code, api_error.message, api_error.field)
    except InvalidInput as invalid:
        return error_response(400, "invalid_request", invalid.message, invalid.field)
    except NotFound as missing:
        return error_response(404, "not_found", str(missing))
    except IdempotencyConflict as reused:
        return error_response(409, "idempotency_conflict", str(reused), reused.field)
    except Conflict as conflict:
        return error_response(409, "conflict", str(conflict))
    except Forbidden as forbidden:
        return error_response(403, "forbidden", str(forbidden))
    except StorageFull as full:
        STORAGE_FULL.occurred(str(full))
        response = error_response(
            503, "storage_full", "the database's disk is full; nothing was stored, retry later"
        )
        response.headers["Retry-After"] = str(STORAGE_FULL_RETRY_AFTER_S)
        return response
    except StorageUnavailable:
        log.warning("storage unavailable while serving %s %s", request.method, request.path)
        return error_response(503, "unavailable", "the database is unavailable; retry shortly")
    except web.HTTPException as http:
        if http.status < 400:
            raise
        response = error_response(http.status, http.reason.lower().replace(" ", "_"), http.reason)
        if "Allow" in http.headers:
            # RFC 9110 section 15.5.6: a 405 "MUST generate an Allow header field".
            response.headers["Allow"] = http.headers["Allow"]
        return response
    except StorageError:
        log.exception("storage error while serving %s %s", request.method, request.path)
        return error_response(500, "internal", "internal storage error")
    except Exception:
        log.exception("unexpected error while serving %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error")


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "send the API key as 'Authorization: Bearer <key>'")
    if not token.isascii():
        # Keys and tokens are ASCII; other header bytes arrive surrogate-escaped and must
        # not reach a hash or a comparison that cannot encode them.
        raise ApiError(401, "unauthorized", "unknown API key")
    return token.strip()


async def caller_of(request: web.Request) -> Caller:
    """Who is calling: the admin token, a platform key or an account key (else 401)."""
    token = _bearer(request)
    expected = request.app[ADMIN_TOKEN]
    if expected and hmac.compare_digest(token.encode(), expected.encode()):
        return ADMIN
    caller = await services(request).keys.authenticate(token)
    if caller is None:
        raise ApiError(401, "unauthorized", "unknown or revoked API key")
    return caller


async def account_of(request: web.Request) -> Account:
    """The account a call acts on: ``{account}`` in the path (id or external id), else the
    account key's own. An account key naming another account gets 404."""
    caller = await caller_of(request)
    return await services(request).accounts.resolve(caller, request.match_info.get("account"))


async def platform_caller(request: web.Request) -> Caller:
    caller = await caller_of(request)
    if not caller.is_platform:
        raise ApiError(403, "forbidden", "this needs a platform key or the admin token")
    return caller


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ApiError(400, "invalid_request", "limit must be from 1 to 1000", "limit")
    return int(raw)


def _time_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return s.to_ms(msgspec.json.decode(f'"{raw}"'.encode(), type=datetime))
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise ApiError(
            400, "invalid_request", f"{name} must be an RFC 3339 date-time", name
        ) from None


# -- handlers ---------------------------------------------------------------------------------


async def create_account(request: web.Request) -> web.Response:
    await platform_caller(request)
    body = await decode(request, s.AccountCreate)
    account, api_key = await services(request).accounts.create(
        body.name, external_id=body.external_id, with_key=body.create_key
    )
    out = s.AccountCreated(
        id=account.id,
        name=account.name,
        external_id=account.external_id,
        api_key=api_key,
        created_at=s.iso(account.created_at) or "",
    )
    return json_response(out, 201)


async def list_accounts(request: web.Request) -> web.Response:
    await platform_caller(request)
    limit = _limit(request)
    rows = await services(request).accounts.page(
        request.query.get("q"), request.query.get("cursor"), limit + 1
    )
    page = rows[:limit]
    cursor = page[-1].id if len(rows) > limit else None
    return json_response(s.AccountPage(data=[s.AccountOut.of(a) for a in page], next_cursor=cursor))


async def get_account(request: web.Request) -> web.Response:
    return json_response(s.AccountOut.of(await account_of(request)))


def _key_created(new: NewKey) -> s.KeyCreated:
    listed = s.KeyOut.of(new.record)
    return s.KeyCreated(**msgspec.structs.asdict(listed), key=new.secret)


async def create_key(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    body = await decode(request, s.KeyCreate)
    account = None
    if body.platform:
        if body.account is not None:
            raise ApiError(400, "invalid_request", "a platform key has no account", "account")
    else:
        account = await services(request).accounts.resolve(caller, body.account)
    new = await services(request).keys.create(caller, account, body.name)
    return json_response(_key_created(new), 201)


async def list_keys(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    limit = _limit(request)
    ref = request.query.get("account")
    account = None if ref is None else await services(request).accounts.resolve(caller, ref)
    rows = await services(request).keys.page(
        caller, account, after=request.query.get("cursor"), limit=limit + 1
    )
    page = rows[:limit]
    cursor = page[-1].id if len(rows) > limit else None
    return json_response(s.KeyPage(data=[s.KeyOut.of(k) for k in page], next_cursor=cursor))


async def rotate_key(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    body = s.KeyRotate()
    if (await request.read()).strip():
        body = await decode(request, s.KeyRotate)
    new = await services(request).keys.rotate(caller, request.match_info["id"], body.grace_s)
    return json_response(_key_created(new), 201)


async def revoke_key(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    key = await services(request).keys.revoke(caller, request.match_info["id"])
    return json_response(s.KeyOut.of(key))


async def create_portal_session(request: web.Request) -> web.Response:
    """A short-lived link that opens one account's customer portal (platform key or admin)."""
    caller = await platform_caller(request)
    account = await services(request).accounts.resolve(caller, request.match_info["account"])
    ui = request.app[UI]
    now = ui.now_ms()
    link = tokens.issue(ui.key, "portal-link", now, tokens.PORTAL_LINK_TTL_MS, account.id)
    out = s.PortalSessionOut(
        url=f"{request.url.origin()}/ui/portal?token={link}",
        expires_at=s.iso(now + tokens.PORTAL_LINK_TTL_MS) or "",
    )
    return json_response(out, 201)


async def create_endpoint(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = await decode(request, s.EndpointCreate)
    endpoint, secret = await services(request).endpoints.create(account.id, body)
    return json_response(s.EndpointOut.of(endpoint, secret), 201)


async def list_endpoints(request: web.Request) -> web.Response:
    account = await account_of(request)
    limit = _limit(request)
    rows = await services(request).endpoints.page(
        account.id, request.query.get("cursor"), limit + 1
    )
    page = rows[:limit]
    cursor = page[-1].id if len(rows) > limit else None
    reports = await services(request).health.reports(page)
    return json_response(
        s.EndpointHealthPage(
            data=[_with_health(e, reports[e.id]) for e in page], next_cursor=cursor
        )
    )


def _with_health(endpoint: Endpoint, report: HealthReport) -> s.EndpointWithHealth:
    out = s.EndpointOut.of(endpoint)
    return s.EndpointWithHealth(**msgspec.structs.asdict(out), health=_health_out(report))


def _health_out(report: HealthReport) -> s.EndpointHealthOut:
    return s.EndpointHealthOut.of(report.endpoint, report.health, report.backlog, report.now_ms)


async def get_endpoint_health(request: web.Request) -> web.Response:
    account = await account_of(request)
    report = await services(request).health.report(account.id, request.match_info["id"])
    return json_response(_health_out(report))


async def enable_endpoint(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = s.EndpointEnable()
    if (await request.read()).strip():
        body = await decode(request, s.EndpointEnable)
    endpoint, replayed = await services(request).health.enable(
        account.id, request.match_info["id"], replay=body.replay
    )
    return json_response(
        s.EndpointEnabled(
            endpoint=s.EndpointOut.of(endpoint), replayed=len(replayed), delivery_ids=replayed
        )
    )


async def create_operational_endpoint(request: web.Request) -> web.Response:
    await platform_caller(request)
    body = await decode(request, s.OperationalEndpointCreate)
    for i, name in enumerate(body.event_types or []):
        if name not in OPERATIONAL_SCHEMAS:
            raise ApiError(
                400,
                "invalid_request",
                f"{name!r} is not an operational event type ({', '.join(OPERATIONAL_SCHEMAS)})",
                f"event_types[{i}]",
            )
    endpoint, secret = await services(request).operations.register(
        body.url, body.event_types, body.description
    )
    return json_response(s.EndpointOut.of(endpoint, secret), 201)


async def list_operational_endpoints(request: web.Request) -> web.Response:
    await platform_caller(request)
    endpoints = await services(request).operations.endpoints_page()
    return json_response(
        s.EndpointPage(data=[s.EndpointOut.of(e) for e in endpoints], next_cursor=None)
    )


async def get_operational_endpoint_secret(request: web.Request) -> web.Response:
    await platform_caller(request)
    endpoint = await services(request).operations.get(request.match_info["id"])
    secrets = await services(request).endpoints.signing_secrets(endpoint.account_id, endpoint.id)
    return json_response(_secret_out(secrets))


async def delete_operational_endpoint(request: web.Request) -> web.Response:
    await platform_caller(request)
    await services(request).operations.delete(request.match_info["id"])
    return web.Response(status=204)


async def update_account_settings(request: web.Request) -> web.Response:
    await platform_caller(request)
    body = await decode(request, s.AccountSettings)
    if body.disable_after_s is not None and not 0 <= body.disable_after_s <= 10 * 365 * 86_400:
        raise ApiError(
            400,
            "invalid_request",
            "disable_after_s must be from 0 (never) to ten years, or null",
            "disable_after_s",
        )
    account_id = request.match_info["id"]
    if not await services(request).accounts.set_disable_after(account_id, body.disable_after_s):
        raise NotFound(f"no account {account_id}")
    return json_response(s.AccountSettingsOut(id=account_id, disable_after_s=body.disable_after_s))


async def get_endpoint(request: web.Request) -> web.Response:
    account = await account_of(request)
    endpoint = await services(request).endpoints.get(account.id, request.match_info["id"])
    return json_response(s.EndpointOut.of(endpoint))


async def update_endpoint(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = await decode(request, s.EndpointUpdate)
    endpoint = await services(request).endpoints.update(account.id, request.match_info["id"], body)
    return json_response(s.EndpointOut.of(endpoint))


async def delete_endpoint(request: web.Request) -> web.Response:
    account = await account_of(request)
    await services(request).endpoints.delete(account.id, request.match_info["id"])
    return web.Response(status=204)


def _secret_out(secrets: list[Any]) -> s.SecretOut:
    return s.SecretOut(
        key=secrets[0].secret,
        active=[
            s.SecretInfo(
                key=x.secret, created_at=s.iso(x.created_at) or "", expires_at=s.iso(x.expires_at)
            )
            for x in secrets
        ],
    )


async def get_secret(request: web.Request) -> web.Response:
    account = await account_of(request)
    secrets = await services(request).endpoints.signing_secrets(
        account.id, request.match_info["id"]
    )
    return json_response(_secret_out(secrets))


async def rotate_secret(request: web.Request) -> web.Response:
    account = await account_of(request)
    new_key = None
    if (await request.read()).strip():
        new_key = (await decode(request, s.SecretRotate)).key
    secrets = await services(request).endpoints.rotate_secret(
        account.id, request.match_info["id"], new_key
    )
    return json_response(_secret_out(secrets))


def _submission(m: s.MessageCreate) -> MessageSubmission:
    return MessageSubmission(
        event_type=m.event_type,
        payload=bytes(m.payload),
        idempotency_key=m.idempotency_key,
        callback_url=m.callback_url,
        fanout=m.fanout,
    )


async def _message_account(
    request: web.Request, caller: Caller, message: s.MessageCreate, field: str
) -> str:
    """A message's account: the path's, else its own ``account`` (platform keys), else the
    account key's. A message may not name another account than the path."""
    path_ref = request.match_info.get("account")
    accounts = services(request).accounts
    if path_ref is not None:
        account = await accounts.resolve(caller, path_ref)
        if message.account is not None and message.account not in (
            account.id,
            account.external_id,
        ):
            raise ApiError(400, "invalid_request", f"this path is for account {path_ref}", field)
        return account.id
    return (await accounts.resolve(caller, message.account, field)).id


def _accepted(result: Any) -> s.MessageAccepted:
    return s.MessageAccepted(
        id=result.message_id,
        deliveries=[
            s.DeliveryBrief(id=d.id, endpoint_id=d.endpoint_id, state=d.state.value)
            for d in result.deliveries
        ],
        duplicate=result.duplicate,
    )


async def create_message(request: web.Request) -> web.Response:
    caller = await caller_of(request)
    body = await decode(request, s.MessageCreate)
    # The Idempotency-Key header (as Stripe, Svix and the IETF draft name it) is an alias of
    # the body field; both may be sent, but then they must agree.
    header_key = request.headers.get("Idempotency-Key")
    if header_key is not None:
        if body.idempotency_key is not None and body.idempotency_key != header_key:
            raise ApiError(
                400,
                "invalid_request",
                "the Idempotency-Key header and the idempotency_key field differ; send one",
                "idempotency_key",
            )
        body.idempotency_key = header_key
    account_id = await _message_account(request, caller, body, "account")
    [result] = await services(request).messages.submit(account_id, [_submission(body)])
    return json_response(_accepted(result), 202)


async def create_messages_batch(request: web.Request) -> web.Response:
    """One request, one or many accounts: with a platform key each message names its own."""
    caller = await caller_of(request)
    body = await decode(request, list[s.MessageCreate])
    if len(body) > MAX_BATCH:
        raise ApiError(400, "invalid_request", f"at most {MAX_BATCH} messages per batch", "$")
    resolved: dict[str | None, str] = {}  # each account looked up once per request
    items = []
    for i, m in enumerate(body):
        account_id = resolved.get(m.account)
        if account_id is None:
            account_id = await _message_account(request, caller, m, f"$[{i}].account")
            resolved[m.account] = account_id
        items.append((account_id, _submission(m)))
    results = await services(request).messages.submit_many(items, field_prefix="$")
    return json_response(s.BatchAccepted(data=[_accepted(r) for r in results]), 202)


async def get_message(request: web.Request) -> web.Response:
    account = await account_of(request)
    message, deliveries = await services(request).messages.get(account.id, request.match_info["id"])
    out = s.MessageOut(
        id=message.id,
        event_type=message.event_type,
        payload=msgspec.Raw(message.payload),
        created_at=s.iso(message.created_at) or "",
        deliveries=[s.DeliveryOut.of(d) for d in deliveries],
    )
    return json_response(out)


async def list_deliveries(request: web.Request) -> web.Response:
    account = await account_of(request)
    limit = _limit(request)
    state_raw = request.query.get("state")
    state = None
    if state_raw is not None:
        try:
            state = DeliveryState(state_raw)
        except ValueError:
            names = ", ".join(x.value for x in DeliveryState)
            raise ApiError(
                400, "invalid_request", f"state must be one of {names}", "state"
            ) from None
    rows = await services(request).deliveries.page(
        account.id,
        state=state,
        endpoint_id=request.query.get("endpoint_id"),
        message_id=request.query.get("message_id"),
        since=_time_param(request, "since"),
        until=_time_param(request, "until"),
        after=request.query.get("cursor"),
        limit=limit + 1,
    )
    page = rows[:limit]
    cursor = page[-1].id if len(rows) > limit else None
    return json_response(
        s.DeliveryPage(data=[s.DeliveryOut.of(d) for d in page], next_cursor=cursor)
    )


async def get_delivery(request: web.Request) -> web.Response:
    account = await account_of(request)
    delivery_id = request.match_info["id"]
    delivery = await services(request).deliveries.get(account.id, delivery_id)
    return json_response(s.DeliveryOut.of(delivery))


async def list_attempts(request: web.Request) -> web.Response:
    account = await account_of(request)
    delivery_id = request.match_info["id"]
    limit = _limit(request)
    rows = await services(request).deliveries.attempts(
        account.id, delivery_id, after=request.query.get("cursor"), limit=limit + 1
    )
    page = rows[:limit]
    cursor = page[-1].id if len(rows) > limit else None
    return json_response(s.AttemptPage(data=[s.AttemptOut.of(a) for a in page], next_cursor=cursor))


async def replay_delivery(request: web.Request) -> web.Response:
    account = await account_of(request)
    delivery_id = await services(request).messages.replay_delivery(
        account.id, request.match_info["id"]
    )
    return json_response(s.ReplayResult(replayed=1, delivery_ids=[delivery_id]), 202)


async def replay_bulk(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = s.ReplayRequest()
    if (await request.read()).strip():
        body = await decode(request, s.ReplayRequest)
    ids = await services(request).messages.replay(
        account.id,
        endpoint_id=body.endpoint_id,
        since=s.to_ms(body.since),
        until=s.to_ms(body.until),
    )
    return json_response(s.ReplayResult(replayed=len(ids), delivery_ids=ids), 202)


async def create_event_type(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = await decode(request, s.EventTypeCreate)
    definition = await services(request).event_types.create(
        account.id, body.name, body.schema, body.description
    )
    return json_response(s.EventTypeOut.of(definition, built_in=False), 201)


async def list_event_types(request: web.Request) -> web.Response:
    account = await account_of(request)
    definitions = await services(request).event_types.all(account.id)
    return json_response(
        s.EventTypeList(
            data=[s.EventTypeOut.of(d, built_in=d.name in BUILT_IN_SCHEMAS) for d in definitions]
        )
    )


async def batch_recipient_status(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = await decode(request, s.RecipientStatusRequest)
    batch_id = request.match_info["batch_id"]
    progress = await services(request).batches.batch_recipient_status(
        account.id,
        batch_id,
        mode=body.delivery_report,
        kind=body.type,
        recipients=body.recipients,
        updates=body.statuses,
        callback_url=body.callback_url,
        client_reference=body.client_reference,
        report_deadline_s=body.report_deadline_s,
    )
    out = s.RecipientStatusAccepted(
        batch_id=batch_id,
        delivery_report=progress.batch.mode,
        messages=[_accepted(r) for r in progress.messages],
        final_recipients=progress.final_recipients,
        known_recipients=progress.known_recipients,
        batch_report_sent=progress.batch_report_sent,
    )
    return json_response(out, 202)


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=docs_html(), content_type="text/html")


async def docs_init(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_INIT_JS, content_type="text/javascript")


ACCOUNT_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/endpoints", create_endpoint),
    ("GET", "/endpoints", list_endpoints),
    ("GET", "/endpoints/{id}", get_endpoint),
    ("GET", "/endpoints/{id}/health", get_endpoint_health),
    ("POST", "/endpoints/{id}/enable", enable_endpoint),
    ("PATCH", "/endpoints/{id}", update_endpoint),
    ("DELETE", "/endpoints/{id}", delete_endpoint),
    ("GET", "/endpoints/{id}/secret", get_secret),
    ("POST", "/endpoints/{id}/secret/rotate", rotate_secret),
    ("POST", "/event-types", create_event_type),
    ("GET", "/event-types", list_event_types),
    ("POST", "/messages", create_message),
    ("POST", "/messages/batch", create_messages_batch),
    # Not "batch": GET /v1/messages/batch is no message, and its 405 must not allow GET.
    ("GET", "/messages/{id:(?!batch$)[^/]+}", get_message),
    ("POST", "/batches/{batch_id}/recipient-status", batch_recipient_status),
    ("GET", "/deliveries", list_deliveries),
    ("GET", "/deliveries/{id}", get_delivery),
    ("GET", "/deliveries/{id}/attempts", list_attempts),
    ("POST", "/deliveries/{id}/replay", replay_delivery),
    ("POST", "/replay", replay_bulk),
]
"""Routes that act on one account; each is served at /v1/... and /v1/accounts/{account}/..."""


def create_app(
    services: Services,
    *,
    admin_token: str = "",
    ui_key: bytes | None = None,
    ui_frame_ancestors: str = "",
    readiness: Readiness | None = None,
) -> web.Application:
    """The API, /docs, and the UI at /ui (``ui_key`` signs its links and sessions)."""
    # aiohttp's @web.middleware marks the function with an attribute, which a function
    # compiled by mypyc (postback/native.py) refuses: a partial of it takes the mark instead.
    middleware = web.middleware(functools.partial(errors_middleware))
    app = web.Application(middlewares=[middleware], client_max_size=32 * 1024 * 1024)
    app[SERVICES] = services
    app[ADMIN_TOKEN] = admin_token
    # /metrics, /livez, /readyz and /healthz: the same on serve and on workers.
    add_ops_routes(app, services.metrics, readiness or Readiness(services.health.probe))
    r = app.router
    r.add_get("/openapi.json", openapi)
    r.add_get("/docs", docs)
    r.add_get("/docs/init.js", docs_init)
    r.add_static("/docs/static", swagger_static_dir())
    r.add_post("/v1/accounts", create_account)
    r.add_get("/v1/accounts", list_accounts)
    r.add_get("/v1/accounts/{account}", get_account)
    r.add_post("/v1/accounts/{account}/portal-sessions", create_portal_session)
    r.add_patch("/v1/accounts/{account}", update_account_settings)
    r.add_post("/v1/operational-endpoints", create_operational_endpoint)
    r.add_get("/v1/operational-endpoints", list_operational_endpoints)
    r.add_get("/v1/operational-endpoints/{id}/secret", get_operational_endpoint_secret)
    r.add_delete("/v1/operational-endpoints/{id}", delete_operational_endpoint)
    r.add_post("/v1/keys", create_key)
    r.add_get("/v1/keys", list_keys)
    r.add_post("/v1/keys/{id}/rotate", rotate_key)
    r.add_post("/v1/keys/{id}/revoke", revoke_key)
    # Every account-scoped route twice: the account key's own account, or /v1/accounts/{account}
    # (id or external id) for platform keys.
    for prefix in ("/v1", "/v1/accounts/{account}"):
        for method, path, handler in ACCOUNT_ROUTES:
            r.add_route(method, prefix + path, handler)
    add_ui(
        app,
        services,
        admin_token=admin_token,
        key=ui_key,
        frame_ancestors=ui_frame_ancestors,
    )
    return app
