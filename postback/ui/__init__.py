"""The browser side of Postback, served at ``/ui``: the customer portal and the operator
dashboard. Server-rendered HTML (Jinja2 templates) with htmx for the parts that update in
place; every asset is vendored in ``static/`` (no CDN, works offline). Pages call the domain
services of ``postback.ingest``, never storage.
"""

from __future__ import annotations

import os
from importlib import resources

from aiohttp import web

from postback.ingest import Services
from postback.ui import operator, portal
from postback.ui.web import UI, UIConfig


def static_dir() -> str:
    return str(resources.files("postback.ui").joinpath("static"))


async def _index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/operator")


def add_ui(
    app: web.Application,
    services: Services,
    *,
    admin_token: str,
    key: bytes | None,
    frame_ancestors: str = "",
) -> None:
    """Mount the UI on ``app``. Without ``key`` (tests, tools) sessions are signed with a
    random key and end when the process does."""
    app[UI] = UIConfig(
        services=services,
        key=key or os.urandom(32),
        admin_token=admin_token,
        frame_ancestors=frame_ancestors,
    )
    app.router.add_get("/ui", _index)
    app.router.add_static("/ui/static", static_dir())
    portal.add_routes(app)
    operator.add_routes(app)
