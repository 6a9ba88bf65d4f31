"""The OpenAPI 3.1 document (built from the same Structs the handlers decode) and /docs."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import msgspec

from postback import __version__
from postback.core import wire as s

# (method, path, summary, request body type, success status, response type, query params)
_ROUTES: list[tuple[str, str, str, Any, int, Any, tuple[str, ...]]] = [
    (
        "post",
        "/v1/accounts",
        "Create an account (admin token)",
        s.AccountCreate,
        201,
        s.AccountCreated,
        (),
    ),
    (
        "post",
        "/v1/endpoints",
        "Register a callback endpoint",
        s.EndpointCreate,
        201,
        s.EndpointOut,
        (),
    ),
    ("get", "/v1/endpoints", "List endpoints", None, 200, s.EndpointPage, ("limit", "cursor")),
    ("get", "/v1/endpoints/{id}", "Get an endpoint", None, 200, s.EndpointOut, ()),
    ("patch", "/v1/endpoints/{id}", "Change an endpoint", s.EndpointUpdate, 200, s.EndpointOut, ()),
    ("delete", "/v1/endpoints/{id}", "Delete an endpoint", None, 204, None, ()),
    ("get", "/v1/endpoints/{id}/secret", "Current signing secrets", None, 200, s.SecretOut, ()),
    (
        "post",
        "/v1/endpoints/{id}/secret/rotate",
        "Rotate the signing secret (old one signs 24 h more)",
        s.SecretRotate,
        200,
        s.SecretOut,
        (),
    ),
    (
        "post",
        "/v1/event-types",
        "Register a custom event type with its JSON Schema",
        s.EventTypeCreate,
        201,
        s.EventTypeOut,
        (),
    ),
    (
        "get",
        "/v1/event-types",
        "List built-in and custom event types with their schemas",
        None,
        200,
        s.EventTypeList,
        (),
    ),
    ("post", "/v1/messages", "Submit an event", s.MessageCreate, 202, s.MessageAccepted, ()),
    (
        "post",
        "/v1/messages/batch",
        "Submit up to 1000 events",
        list[s.MessageCreate],
        202,
        s.BatchAccepted,
        (),
    ),
    ("get", "/v1/messages/{id}", "Get a message and its deliveries", None, 200, s.MessageOut, ()),
    (
        "post",
        "/v1/batches/{batch_id}/recipient-status",
        "Per-recipient status updates; delivery reports per the batch's mode",
        s.RecipientStatusRequest,
        202,
        s.RecipientStatusAccepted,
        (),
    ),
    (
        "get",
        "/v1/deliveries",
        "List deliveries",
        None,
        200,
        s.DeliveryPage,
        ("state", "endpoint_id", "message_id", "since", "until", "limit", "cursor"),
    ),
    ("get", "/v1/deliveries/{id}", "Get a delivery", None, 200, s.DeliveryOut, ()),
    (
        "get",
        "/v1/deliveries/{id}/attempts",
        "List a delivery's attempts",
        None,
        200,
        s.AttemptPage,
        ("limit", "cursor"),
    ),
    ("post", "/v1/deliveries/{id}/replay", "Replay a dead delivery", None, 202, s.ReplayResult, ()),
    (
        "post",
        "/v1/replay",
        "Replay dead deliveries in bulk",
        s.ReplayRequest,
        202,
        s.ReplayResult,
        (),
    ),
    ("get", "/healthz", "Liveness", None, 200, s.Health, ()),
]


@cache
def openapi_document() -> dict[str, Any]:
    types = [t for route in _ROUTES for t in (route[3], route[5]) if t is not None]
    types.append(s.ErrorBody)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    by_type = dict(zip(types, schemas, strict=True))
    error = {"content": {"application/json": {"schema": by_type[s.ErrorBody]}}}
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, status, response, query in _ROUTES:
        op: dict[str, Any] = {"summary": summary, "responses": {}}
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in ("id", "batch_id")
            if "{" + name + "}" in path
        ]
        params += [{"name": q, "in": "query", "schema": {"type": "string"}} for q in query]
        if params:
            op["parameters"] = params
        if body is not None:
            op["requestBody"] = {
                "required": body is not s.SecretRotate and body is not s.ReplayRequest,
                "content": {"application/json": {"schema": by_type[body]}},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if response is not None:
            ok["content"] = {"application/json": {"schema": by_type[response]}}
        op["responses"][str(status)] = ok
        if path != "/healthz":
            op["security"] = [{"bearer": []}]
            for code, what in (
                ("400", "Invalid input"),
                ("401", "Missing or wrong key"),
                ("404", "Not found"),
                ("503", "Database unavailable"),
            ):
                op["responses"][code] = {"description": what, **error}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Postback",
            "version": __version__,
            "description": "Durable, signed callback (webhook) delivery.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def swagger_static_dir() -> str | None:
    """Swagger UI's files, shipped by the swagger-ui-bundle package (no CDN needed)."""
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = str(swagger_ui_bundle.swagger_ui_path)
    return path if os.path.isdir(path) else None


def docs_html() -> str:
    return """<!doctype html>
<html><head><meta charset="utf-8"><title>Postback API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""
