"""The operator dashboard: every account's backlog and dead letters, endpoints by health, the
dead-letter queue across accounts with bulk replay, live counters and per-endpoint plots.

Reached with the admin token (``POSTBACK_ADMIN_TOKEN``) or a platform key typed into the login
form; a portal session never opens these pages (its token is of another kind).
"""

from __future__ import annotations

from aiohttp import web

from postback.core.errors import InvalidInput
from postback.ingest.activity import health_of
from postback.ui import tokens
from postback.ui.plots import failure_rate_svg, throughput_svg
from postback.ui.tokens import Claims
from postback.ui.web import (
    admin_token_matches,
    checked_form,
    clear_session,
    config,
    page,
    redirect,
    render,
    set_session,
)

LOGIN = "/ui/operator/login"
WINDOW_MS = 5 * 60_000
"""Throughput and failures on the dashboard are counted over the last five minutes."""
ACCOUNT_SEARCH_LIMIT = 50
PLOT_WINDOWS = {"1h": (3600_000, 60_000), "24h": (86_400_000, 900_000)}


async def login_form(request: web.Request) -> web.StreamResponse:
    return render(request, "operator/login.html")


async def login(request: web.Request) -> web.StreamResponse:
    """The admin token, or a platform key (its session ends when the key is revoked)."""
    form = await request.post()
    presented = str(form.get("token", "")).strip()
    ui = config(request)
    key_id = None
    if not admin_token_matches(request, presented):
        caller = await ui.services.keys.authenticate(presented) if presented else None
        if caller is None or caller.key is None or not caller.is_platform:
            return render(
                request,
                "operator/login.html",
                401,
                error="That is neither the admin token nor a platform key.",
            )
        key_id = caller.key.id
    response = redirect("/ui/operator")
    session = tokens.issue(ui.key, "operator", ui.now_ms(), tokens.SESSION_TTL_MS, key_id=key_id)
    set_session(request, response, session)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    response = redirect("/ui/operator/login")
    clear_session(response)
    return response


@page("operator", login=LOGIN)
async def dashboard(request: web.Request, session: Claims) -> web.StreamResponse:
    services = config(request).services
    search = request.query.get("q", "").strip()
    if search:
        # Thousands of customers: find the ones asked for by name or external id, then their
        # activity one by one (a page of at most ACCOUNT_SEARCH_LIMIT).
        found = await services.accounts.page(search, None, ACCOUNT_SEARCH_LIMIT)
        accounts = [
            row
            for account in found
            for row in await services.activity.accounts(WINDOW_MS, 1, account_id=account.id)
        ]
    else:
        accounts = await services.activity.accounts(WINDOW_MS, 200)
    endpoints = await services.activity.endpoint_health(WINDOW_MS, 100)
    return render(
        request,
        "operator/dashboard.html",
        session=session,
        accounts=accounts,
        search=search,
        endpoints=[(e, health_of(e)) for e in endpoints],
        window_s=WINDOW_MS // 1000,
        now_ms=config(request).now_ms(),
        counters=await _counters(request),
    )


async def _counters(request: web.Request) -> dict[str, tuple[int, str]]:
    """name -> (value, label); every node's work from storage, "here" this process's."""
    services = config(request).services
    totals = await services.activity.live_totals(WINDOW_MS)
    minutes = WINDOW_MS // 60_000
    return {
        "pending": (totals.pending, "pending"),
        "delivering": (totals.delivering, "in flight"),
        "delivered": (totals.delivered, f"delivered / {minutes} min"),
        "failed": (totals.failed, f"failed attempts / {minutes} min"),
        "ingested here": (services.metrics.ingested_total, "ingested here"),
        "attempts here": (sum(services.metrics.attempts.values()), "attempts here"),
    }


@page("operator", login=LOGIN)
async def counters(request: web.Request, session: Claims) -> web.StreamResponse:
    """The live counters fragment, polled by htmx every two seconds."""
    return render(
        request, "operator/counters.html", session=session, counters=await _counters(request)
    )


@page("operator", login=LOGIN)
async def endpoint_plots(request: web.Request, session: Claims) -> web.StreamResponse:
    services = config(request).services
    endpoint_id = request.match_info["id"]
    window = request.query.get("window", "1h")
    if window not in PLOT_WINDOWS:
        raise InvalidInput("window", "window must be 1h or 24h")
    window_ms, bucket_ms = PLOT_WINDOWS[window]
    account = request.query.get("account", "")
    endpoint = await services.endpoints.get(account, endpoint_id)
    series = await services.activity.endpoint_series(None, endpoint_id, window_ms, bucket_ms)
    return render(
        request,
        "operator/endpoint.html",
        session=session,
        endpoint=endpoint,
        window=window,
        windows=list(PLOT_WINDOWS),
        throughput=throughput_svg(series, bucket_ms // 1000),
        failure_rate=failure_rate_svg(series, bucket_ms // 1000),
    )


@page("operator", login=LOGIN)
async def dead_letters(request: web.Request, session: Claims) -> web.StreamResponse:
    services = config(request).services
    account = request.query.get("account") or None
    rows = await services.activity.dead_letters(
        before=request.query.get("before") or None, limit=101, account_id=account
    )
    return render(
        request,
        "operator/dead_letters.html",
        session=session,
        rows=rows[:100],
        account=account,
        before=rows[99].id if len(rows) > 100 else None,
    )


@page("operator", login=LOGIN)
async def replay_dead(request: web.Request, session: Claims) -> web.StreamResponse:
    form = await checked_form(request, session)
    targets: list[tuple[str, str]] = []
    for value in form.getall("delivery", []):
        account, _, delivery = str(value).partition(":")
        if not account or not delivery:
            raise InvalidInput("delivery", "each choice is account:delivery")
        targets.append((account, delivery))
    if not targets:
        raise InvalidInput("delivery", "choose at least one dead delivery to replay")
    outcome = await config(request).services.activity.replay(targets)
    return render(
        request,
        "replayed.html",
        session=session,
        outcome=outcome,
        back="/ui/operator/dead-letters",
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/ui/operator/login", login_form)
    r.add_post("/ui/operator/login", login)
    r.add_post("/ui/logout", logout)
    r.add_get("/ui/operator", dashboard)
    r.add_get("/ui/operator/counters", counters)
    r.add_get("/ui/operator/endpoints/{id}", endpoint_plots)
    r.add_get("/ui/operator/dead-letters", dead_letters)
    r.add_post("/ui/operator/dead-letters/replay", replay_dead)
