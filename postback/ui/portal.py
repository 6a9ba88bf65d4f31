"""The customer portal: one account's endpoints, delivery log, attempts and replays.

A session here names exactly one account (``claims.account``) and every service call is made
with that account id, so the domain services' own scoping (another account's ids are "not
found") is what keeps customers apart; nothing here takes an account from the request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from postback import __version__
from postback.core.errors import InvalidInput, NotFound
from postback.core.model import Attempt, DeliveryState, Endpoint, static_headers
from postback.core.wire import EndpointCreate, EndpointUpdate
from postback.ingest import MessageSubmission
from postback.ui import tokens
from postback.ui.plots import failure_rate_svg, throughput_svg
from postback.ui.tokens import Claims, SessionTokenInvalid
from postback.ui.web import (
    checked_form,
    config,
    page,
    redirect,
    render,
    set_session,
)

PAGE_SIZE = 50
LOGIN = "/ui/portal/expired"
MASK = "•••• (masked)"
_SECRET_WORDS = ("auth", "token", "secret", "key", "password", "cookie", "signature", "session")
SEARCH_FIELDS = {
    "message_id": "Message id",
    "idempotency_key": "Idempotency key",
    "batch_id": "Batch id",
    "recipient": "Recipient number",
}


def account_of(session: Claims) -> str:
    if session.account is None:  # tokens.verify refuses these; a second lock on the door
        raise SessionTokenInvalid("no account")
    return session.account


async def open_link(request: web.Request) -> web.StreamResponse:
    """``/ui/portal?token=…``: exchange a portal link for a session cookie, then a clean URL.

    The answer is a page that moves on by itself rather than a redirect: a SameSite=Strict
    cookie set during a navigation that started on another site (the platform's dashboard)
    is not sent on redirects of that same navigation, but is on the page's own next one.
    """
    link = request.query.get("token", "")
    ui = config(request)
    try:
        claims = tokens.verify(ui.key, link, "portal-link", ui.now_ms())
    except SessionTokenInvalid:
        return render(
            request,
            "error.html",
            401,
            message="This portal link has expired or is not valid. Ask for a new one.",
        )
    session = tokens.issue(ui.key, "portal", ui.now_ms(), tokens.SESSION_TTL_MS, claims.account)
    response = render(request, "moving.html", target="/ui/portal")
    set_session(request, response, session)
    return response


async def expired(request: web.Request) -> web.StreamResponse:
    return render(
        request,
        "error.html",
        401,
        message="Your portal session has ended. Open the portal again from your provider's site.",
    )


@page("portal", login=LOGIN)
async def home(request: web.Request, session: Claims) -> web.StreamResponse:
    services = config(request).services
    account = account_of(session)
    endpoints = await services.endpoints.page(account, request.query.get("after"), 200)
    health = {
        h.endpoint_id: h
        for h in await services.activity.endpoint_health(24 * 3600_000, 500, account_id=account)
    }
    event_types = await services.event_types.all(account)
    return render(
        request,
        "portal/home.html",
        session=session,
        endpoints=[e for e in endpoints if not e.is_callback_url],
        callback_endpoints=[e for e in endpoints if e.is_callback_url],
        health=health,
        event_types=[t.name for t in event_types],
    )


@page("portal", login=LOGIN)
async def create_endpoint(request: web.Request, session: Claims) -> web.StreamResponse:
    form = await checked_form(request, session)
    chosen = [str(v) for v in form.getall("event_types", [])]
    every = form.get("all_event_types") == "on" or not chosen
    spec = EndpointCreate(
        url=str(form.get("url", "")).strip(),
        description=str(form.get("description", "")).strip(),
        event_types=None if every else chosen,
    )
    endpoint, _ = await config(request).services.endpoints.create(account_of(session), spec)
    return redirect(f"/ui/portal/endpoints/{endpoint.id}")


@page("portal", login=LOGIN)
async def endpoint_page(request: web.Request, session: Claims) -> web.StreamResponse:
    services = config(request).services
    account = account_of(session)
    endpoint = await services.endpoints.get(account, request.match_info["id"])
    window_ms, bucket_ms = 3600_000, 60_000
    series = await services.activity.endpoint_series(account, endpoint.id, window_ms, bucket_ms)
    event_types = await services.event_types.all(account)
    recent = await services.deliveries.page(account, endpoint_id=endpoint.id, limit=10)
    return render(
        request,
        "portal/endpoint.html",
        session=session,
        endpoint=endpoint,
        event_types=[t.name for t in event_types],
        throughput=throughput_svg(series, bucket_ms // 1000),
        failure_rate=failure_rate_svg(series, bucket_ms // 1000),
        recent=recent,
    )


@page("portal", login=LOGIN)
async def update_event_types(request: web.Request, session: Claims) -> web.StreamResponse:
    form = await checked_form(request, session)
    chosen = [str(v) for v in form.getall("event_types", [])]
    every = form.get("all_event_types") == "on" or not chosen
    endpoint_id = request.match_info["id"]
    await config(request).services.endpoints.update(
        account_of(session),
        endpoint_id,
        EndpointUpdate(event_types=None if every else chosen),
    )
    return redirect(f"/ui/portal/endpoints/{endpoint_id}")


@page("portal", login=LOGIN)
async def toggle_endpoint(request: web.Request, session: Claims) -> web.StreamResponse:
    await checked_form(request, session)
    services = config(request).services
    account = account_of(session)
    endpoint = await services.endpoints.get(account, request.match_info["id"])
    await services.endpoints.update(
        account, endpoint.id, EndpointUpdate(disabled=not endpoint.disabled)
    )
    return redirect(f"/ui/portal/endpoints/{endpoint.id}")


@page("portal", login=LOGIN)
async def reveal_secret(request: web.Request, session: Claims) -> web.StreamResponse:
    """A fragment (htmx) with the signing secrets; shown on request, never in the page."""
    await checked_form(request, session)
    services = config(request).services
    endpoint_id = request.match_info["id"]
    secrets = await services.endpoints.signing_secrets(account_of(session), endpoint_id)
    return render(
        request, "portal/secret.html", session=session, secrets=secrets, endpoint_id=endpoint_id
    )


@page("portal", login=LOGIN)
async def rotate_secret(request: web.Request, session: Claims) -> web.StreamResponse:
    await checked_form(request, session)
    services = config(request).services
    endpoint_id = request.match_info["id"]
    secrets = await services.endpoints.rotate_secret(account_of(session), endpoint_id)
    return render(
        request,
        "portal/secret.html",
        session=session,
        secrets=secrets,
        endpoint_id=endpoint_id,
        rotated=True,
    )


@page("portal", login=LOGIN)
async def send_test(request: web.Request, session: Claims) -> web.StreamResponse:
    """A test event to this endpoint only (its payload checked like any other message)."""
    form = await checked_form(request, session)
    services = config(request).services
    account = account_of(session)
    endpoint = await services.endpoints.get(account, request.match_info["id"])
    payload = str(form.get("payload", "")).strip().encode()
    try:
        msgspec.json.decode(payload)
    except msgspec.DecodeError:
        raise InvalidInput("payload", "the test payload must be JSON") from None
    [result] = await services.messages.submit(
        account,
        [
            MessageSubmission(
                event_type=str(form.get("event_type", "")),
                payload=payload,
                target_endpoint_id=endpoint.id,
            )
        ],
    )
    return redirect(f"/ui/portal/deliveries?message_id={result.message_id}")


def _ms(raw: str | None, field: str) -> int | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(field, f"{field} must be a date and time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


@page("portal", login=LOGIN)
async def deliveries(request: web.Request, session: Claims) -> web.StreamResponse:
    services = config(request).services
    account = account_of(session)
    q = request.query
    state = None
    if q.get("state"):
        try:
            state = DeliveryState(q["state"])
        except ValueError:
            raise InvalidInput(
                "state", "state must be pending, delivering, delivered or dead"
            ) from None
    search_by = q.get("search_by", "message_id")
    if search_by not in SEARCH_FIELDS:
        raise InvalidInput(
            "search_by", "search by message id, idempotency key, batch id or recipient"
        )
    term = (q.get("q") or q.get("message_id") or "").strip()
    if q.get("message_id"):
        search_by = "message_id"
    search = {search_by: term} if term else {}
    rows = await services.deliveries.page(
        account,
        state=state,
        endpoint_id=q.get("endpoint_id") or None,
        event_type=q.get("event_type") or None,
        since=_ms(q.get("since"), "since"),
        until=_ms(q.get("until"), "until"),
        after=q.get("after") or None,
        limit=PAGE_SIZE + 1,
        **search,
    )
    endpoints = await services.endpoints.page(account, None, 500)
    event_types = await services.event_types.all(account)
    next_query = None
    if len(rows) > PAGE_SIZE:
        params = {k: v for k, v in q.items() if k != "after"}
        params["after"] = rows[PAGE_SIZE - 1].id
        next_query = urlencode(params)
    return render(
        request,
        "portal/deliveries.html",
        session=session,
        rows=rows[:PAGE_SIZE],
        endpoints=endpoints,
        event_types=[t.name for t in event_types],
        states=[s.value for s in DeliveryState],
        search_fields=SEARCH_FIELDS,
        search_by=search_by,
        term=term,
        filters=q,
        next_query=next_query,
    )


def masked_request_headers(
    endpoint: Endpoint, message_id: str, attempt: Attempt
) -> list[tuple[str, str]]:
    """The headers an attempt sent, rebuilt from the endpoint's settings (attempts do not
    store them), credentials and signatures masked."""
    if endpoint.destination is not None:
        return [("(SNS)", f"Publish to {endpoint.destination.topic_arn}, SigV4-signed")]
    shown: list[tuple[str, str]] = []
    for name, value in static_headers(endpoint, f"Postback/{__version__}").items():
        secret = any(word in name.lower() for word in _SECRET_WORDS)
        shown.append((name, MASK if secret else value))
    if endpoint.auth is not None and endpoint.auth.__struct_config__.tag != "none":
        scheme = "Basic" if endpoint.auth.__struct_config__.tag == "basic" else "Bearer"
        shown.append(("authorization", f"{scheme} {MASK}"))
    shown.append(("webhook-id", message_id))
    shown.append(("webhook-timestamp", str(attempt.started_at // 1000)))
    if endpoint.signature_scheme == "sinch":
        shown.append(("x-sinch-webhook-signature", MASK))
        shown.append(("x-sinch-webhook-signature-nonce", MASK))
    else:
        shown.append(("webhook-signature", f"v1,{MASK}"))
    return shown


@page("portal", login=LOGIN)
async def delivery_page(request: web.Request, session: Claims) -> web.StreamResponse:
    services = config(request).services
    account = account_of(session)
    delivery = await services.deliveries.get(account, request.match_info["id"])
    attempts = await services.deliveries.attempts(account, delivery.id, after=None, limit=200)
    try:
        endpoint: Endpoint | None = await services.endpoints.get(account, delivery.endpoint_id)
    except NotFound:
        endpoint = None  # deleted since: its deliveries stay readable
    return render(
        request,
        "portal/delivery.html",
        session=session,
        delivery=delivery,
        endpoint=endpoint,
        attempts=[
            (a, masked_request_headers(endpoint, delivery.message_id, a) if endpoint else [])
            for a in attempts
        ],
    )


@page("portal", login=LOGIN)
async def replay_one(request: web.Request, session: Claims) -> web.StreamResponse:
    await checked_form(request, session)
    delivery_id = request.match_info["id"]
    await config(request).services.messages.replay_delivery(account_of(session), delivery_id)
    return redirect(f"/ui/portal/deliveries/{delivery_id}")


@page("portal", login=LOGIN)
async def replay_many(request: web.Request, session: Claims) -> web.StreamResponse:
    form = await checked_form(request, session)
    account = account_of(session)
    ids = [str(v) for v in form.getall("delivery_id", [])]
    if not ids:
        raise InvalidInput("delivery_id", "choose at least one dead delivery to replay")
    outcome = await config(request).services.activity.replay([(account, i) for i in ids])
    return render(
        request, "replayed.html", session=session, outcome=outcome, back="/ui/portal/deliveries"
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/ui/portal/expired", expired)
    r.add_get("/ui/portal", _home_or_link)
    r.add_post("/ui/portal/endpoints", create_endpoint)
    r.add_get("/ui/portal/endpoints/{id}", endpoint_page)
    r.add_post("/ui/portal/endpoints/{id}/event-types", update_event_types)
    r.add_post("/ui/portal/endpoints/{id}/toggle", toggle_endpoint)
    r.add_post("/ui/portal/endpoints/{id}/secret", reveal_secret)
    r.add_post("/ui/portal/endpoints/{id}/secret/rotate", rotate_secret)
    r.add_post("/ui/portal/endpoints/{id}/test", send_test)
    r.add_get("/ui/portal/deliveries", deliveries)
    r.add_post("/ui/portal/deliveries/replay", replay_many)
    r.add_get("/ui/portal/deliveries/{id}", delivery_page)
    r.add_post("/ui/portal/deliveries/{id}/replay", replay_one)


async def _home_or_link(request: web.Request) -> web.StreamResponse:
    if "token" in request.query:
        return await open_link(request)
    return await home(request)
