"""What every UI page shares: the session cookie, CSRF checks, templates, error pages.

Sessions are signed tokens (``tokens.py``) in one cookie, ``HttpOnly`` and ``SameSite=Strict``
and limited to ``/ui``: JavaScript cannot read it and another site cannot send it. Every
form that changes something carries the session's CSRF token (a hidden field, or the
``X-CSRF-Token`` header htmx sends), checked before anything else happens.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from postback import __version__
from postback.core.errors import Conflict, InvalidInput, NotFound, PostbackError, StorageError
from postback.ingest import Services
from postback.ingest.keys import ADMIN
from postback.ui import tokens
from postback.ui.tokens import Claims, Kind, SessionTokenInvalid

COOKIE = "postback_session"
CSRF_HEADER = "X-CSRF-Token"
ACCOUNT_NAME: web.RequestKey[str] = web.RequestKey("account_name", str)
"""Where a portal page keeps its account's name for the header."""


@dataclass(frozen=True, slots=True)
class UIConfig:
    services: Services
    key: bytes
    """Signs links, sessions and CSRF tokens (derived from the process's secret key)."""
    admin_token: str
    frame_ancestors: str = ""
    """Origins that may embed these pages in a frame (besides Postback itself)."""
    clock: Callable[[], float] = time.time

    def now_ms(self) -> int:
        return int(self.clock() * 1000)


UI: web.AppKey[UIConfig] = web.AppKey("ui", UIConfig)


def config(request: web.Request) -> UIConfig:
    return request.app[UI]


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(ms: int | None, now_ms: int | None = None) -> str:
    if ms is None:
        return "-"
    seconds = max(0, ((now_ms if now_ms is not None else int(time.time() * 1000)) - ms) // 1000)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172_800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("postback.ui", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["when"] = _when
_env.filters["age"] = _age
_env.globals["version"] = __version__


def render(
    request: web.Request,
    template: str,
    status: int = 200,
    session: Claims | None = None,
    **context: Any,
) -> web.Response:
    csrf = tokens.csrf_token(config(request).key, session) if session is not None else ""
    html = _env.get_template(template).render(
        request=request,
        session=session,
        csrf=csrf,
        csrf_header=CSRF_HEADER,
        account_name=request.get(ACCOUNT_NAME, ""),
        **context,
    )
    response = web.Response(text=html, status=status, content_type="text/html")
    _protect(response, config(request).frame_ancestors)
    return response


def _protect(response: web.StreamResponse, frame_ancestors: str = "") -> None:
    """Every page: no framing by other sites (unless configured), no inline script, no
    referrer leaks of links."""
    ancestors = " ".join(("'self'", frame_ancestors)).strip()
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        f"frame-ancestors {ancestors}; form-action 'self'; base-uri 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"


def reached_over_https(request: web.Request) -> bool:
    """Whether the browser is on HTTPS: this connection, or, behind a proxy that ends TLS,
    what the proxy says (``X-Forwarded-Proto``, RFC 7239 ``Forwarded: proto=``). Only the
    cookie's ``Secure`` flag rests on it: a client that lies gets a cookie it cannot send back
    over plain HTTP, nothing more."""
    if request.secure:
        return True
    forwarded_proto = request.headers.get("X-Forwarded-Proto", "")
    if forwarded_proto.split(",")[0].strip().lower() == "https":
        return True
    forwarded = request.headers.get("Forwarded", "").split(",")[0]
    return any(
        part.strip().lower().replace('"', "") == "proto=https" for part in forwarded.split(";")
    )


def set_session(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        path="/ui",
        httponly=True,
        samesite="Strict",
        secure=reached_over_https(request),
        max_age=tokens.SESSION_TTL_MS // 1000,
    )


def clear_session(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/ui")


def session_of(request: web.Request, kind: Kind) -> Claims | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return tokens.verify(config(request).key, token, kind, config(request).now_ms())
    except SessionTokenInvalid:
        return None


async def checked_form(request: web.Request, session: Claims) -> MultiDictProxy[str | Any]:
    """The posted form, once its CSRF token matched the session's (else 403)."""
    form = await request.post()
    presented = request.headers.get(CSRF_HEADER) or str(form.get("csrf", ""))
    if not presented or not tokens.check_csrf(config(request).key, session, presented):
        raise web.HTTPForbidden(text="the form's CSRF token does not match this session")
    return form


def redirect(location: str) -> web.Response:
    """303 See Other: after a POST the browser GETs the result (reload does not resubmit)."""
    response = web.Response(status=303, headers={"Location": location})
    _protect(response)
    return response


def admin_token_matches(request: web.Request, presented: str) -> bool:
    expected = config(request).admin_token
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


Page = Callable[[web.Request, Claims], Awaitable[web.StreamResponse]]


def page(
    kind: Kind, *, login: str
) -> Callable[[Page], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """A handler that needs a session of ``kind``; without one the browser goes to ``login``.

    Domain errors become an HTML page with the message (the API's JSON errors are not for
    people), 4xx, never a traceback.
    """

    def wrap(handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            session = session_of(request, kind)
            if session is not None and session.key_id is not None:
                # Signed in with a platform key: revoking the key ends the session too.
                ui = config(request)
                try:
                    key = await ui.services.keys.get(ADMIN, session.key_id)
                    if not key.live(ui.now_ms()):
                        session = None
                except NotFound:
                    session = None
            if session is None:
                if request.method == "GET" and "HX-Request" not in request.headers:
                    return redirect(login)
                return render(request, "error.html", 401, message="Your session has ended.")
            try:
                if session.account is not None:
                    account = await config(request).services.accounts.get(session.account)
                    request[ACCOUNT_NAME] = account.name
                return await handler(request, session)
            except web.HTTPForbidden as exc:
                return render(request, "error.html", 403, session, message=exc.text or "")
            except InvalidInput as exc:
                where = f" ({exc.field})" if exc.field else ""
                return render(request, "error.html", 400, session, message=exc.message + where)
            except NotFound as exc:
                return render(request, "error.html", 404, session, message=str(exc))
            except Conflict as exc:
                return render(request, "error.html", 409, session, message=str(exc))
            except SessionTokenInvalid:
                return render(request, "error.html", 401, message="Your session has ended.")
            except StorageError:
                raise  # the API's middleware answers 503 (unavailable) or 500, and logs it
            except PostbackError as exc:
                return render(request, "error.html", 400, session, message=str(exc))

        return run

    return wrap
