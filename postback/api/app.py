"""The HTTP API: an aiohttp adapter over the domain services of ``postback.ingest``.

Handlers decode JSON into ``schemas`` Structs, call the service, encode the answer. Every
error is JSON: ``{"error": {"code", "message", "field"?}}``, never a traceback.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from postback import __version__
from postback.api.openapi import docs_html, openapi_document, swagger_static_dir
from postback.core import wire as s
from postback.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    StorageError,
    StorageUnavailable,
)
from postback.core.event_schemas import BUILT_IN_SCHEMAS
from postback.core.model import Account, DeliveryState
from postback.core.validation import MAX_BATCH
from postback.ingest import MessageSubmission, Services
from postback.ingest.endpoints import EndpointChanges
from postback.observe.metrics import Metrics

log = logging.getLogger("postback.api")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
ADMIN_TOKEN: web.AppKey[str] = web.AppKey("admin_token", str)


def services(request: web.Request) -> Services:
    """The domain services this app was built with (typed, so jump-to-definition works)."""
    return request.app[SERVICES]


_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_PATH = re.compile(r" - at `\$(?:\.)?([^`]*)`$")
_NAMED_FIELD = re.compile(r"field `([^`]+)`")


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
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "invalid_request", "request body must be JSON")
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        value: T = decoder.decode(raw)
        return value
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise ApiError(400, "invalid_request", text, _field_of(text)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.field)
    except InvalidInput as exc:
        return error_response(400, "invalid_request", exc.message, exc.field)
    except NotFound as exc:
        return error_response(404, "not_found", str(exc))
    except Conflict as exc:
        return error_response(409, "conflict", str(exc))
    except StorageUnavailable:
        log.warning("storage unavailable while serving %s %s", request.method, request.path)
        return error_response(503, "unavailable", "the database is unavailable; retry shortly")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
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
    return token.strip()


async def account_of(request: web.Request) -> Account:
    account = await services(request).accounts.authenticate(_bearer(request))
    if account is None:
        raise ApiError(401, "unauthorized", "unknown API key")
    return account


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


async def health(request: web.Request) -> web.Response:
    return json_response(s.Health(status="ok", version=__version__))


async def metrics(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].render(), content_type="text/plain")


async def create_account(request: web.Request) -> web.Response:
    expected = request.app[ADMIN_TOKEN]
    if not expected:
        raise ApiError(
            403, "forbidden", "account creation over HTTP needs POSTBACK_ADMIN_TOKEN set"
        )
    if not hmac.compare_digest(_bearer(request).encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "wrong admin token")
    body = await decode(request, s.AccountCreate)
    account, api_key = await services(request).accounts.create(body.name)
    out = s.AccountCreated(
        id=account.id,
        name=account.name,
        api_key=api_key,
        created_at=s.iso(account.created_at) or "",
    )
    return json_response(out, 201)


async def create_endpoint(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = await decode(request, s.EndpointCreate)
    endpoint, secret = await services(request).endpoints.create(
        account.id,
        url=body.url,
        description=body.description,
        event_types=body.event_types,
        retry_policy=body.retry_policy,
        timeout_ms=body.timeout_ms,
        rate_limit_per_s=body.rate_limit_per_s,
        headers=body.headers,
        auth=body.auth,
        tls=body.tls,
        destination=body.destination,
        signing_secret=body.signing_secret,
        signature_scheme=body.signature_scheme,
        disabled=body.disabled,
    )
    return json_response(s.EndpointOut.of(endpoint, secret), 201)


async def list_endpoints(request: web.Request) -> web.Response:
    account = await account_of(request)
    limit = _limit(request)
    rows = await services(request).endpoints.page(
        account.id, request.query.get("cursor"), limit + 1
    )
    page = rows[:limit]
    cursor = page[-1].id if len(rows) > limit else None
    return json_response(
        s.EndpointPage(data=[s.EndpointOut.of(e) for e in page], next_cursor=cursor)
    )


async def get_endpoint(request: web.Request) -> web.Response:
    account = await account_of(request)
    endpoint = await services(request).endpoints.get(account.id, request.match_info["id"])
    return json_response(s.EndpointOut.of(endpoint))


async def update_endpoint(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = await decode(request, s.EndpointUpdate)
    changes = EndpointChanges(**msgspec.structs.asdict(body))
    endpoint = await services(request).endpoints.update(
        account.id, request.match_info["id"], changes
    )
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
    )


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
    account = await account_of(request)
    body = await decode(request, s.MessageCreate)
    [result] = await services(request).messages.submit(account.id, [_submission(body)])
    return json_response(_accepted(result), 202)


async def create_messages_batch(request: web.Request) -> web.Response:
    account = await account_of(request)
    body = await decode(request, list[s.MessageCreate])
    if len(body) > MAX_BATCH:
        raise ApiError(400, "invalid_request", f"at most {MAX_BATCH} messages per batch", "$")
    results = await services(request).messages.submit(
        account.id, [_submission(m) for m in body], field_prefix="$"
    )
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


def create_app(services: Services, *, admin_token: str = "") -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=32 * 1024 * 1024)
    app[SERVICES] = services
    app[METRICS] = services.metrics
    app[ADMIN_TOKEN] = admin_token
    r = app.router
    r.add_get("/healthz", health)
    r.add_get("/metrics", metrics)
    r.add_get("/openapi.json", openapi)
    r.add_get("/docs", docs)
    static_dir = swagger_static_dir()
    if static_dir is not None:
        r.add_static("/docs/static", static_dir)
    r.add_post("/v1/accounts", create_account)
    r.add_post("/v1/endpoints", create_endpoint)
    r.add_get("/v1/endpoints", list_endpoints)
    r.add_get("/v1/endpoints/{id}", get_endpoint)
    r.add_patch("/v1/endpoints/{id}", update_endpoint)
    r.add_delete("/v1/endpoints/{id}", delete_endpoint)
    r.add_get("/v1/endpoints/{id}/secret", get_secret)
    r.add_post("/v1/endpoints/{id}/secret/rotate", rotate_secret)
    r.add_post("/v1/event-types", create_event_type)
    r.add_get("/v1/event-types", list_event_types)
    r.add_post("/v1/messages", create_message)
    r.add_post("/v1/messages/batch", create_messages_batch)
    r.add_get("/v1/messages/{id}", get_message)
    r.add_post("/v1/batches/{batch_id}/recipient-status", batch_recipient_status)
    r.add_get("/v1/deliveries", list_deliveries)
    r.add_get("/v1/deliveries/{id}", get_delivery)
    r.add_get("/v1/deliveries/{id}/attempts", list_attempts)
    r.add_post("/v1/deliveries/{id}/replay", replay_delivery)
    r.add_post("/v1/replay", replay_bulk)
    return app
