"""The OpenAPI 3.1 document (built from the same Structs the handlers decode) and /docs.

Every operation has an ``operationId`` and a tag; query parameters carry their real types
(``limit`` an integer, ``state`` an enum, times ``date-time``); every error answer refers to the
one error schema, ``ErrorBody``. /docs is Swagger UI 5 (it reads OpenAPI 3.1), vendored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import msgspec

from postback import __version__
from postback.core import wire as s
from postback.core.model import DeliveryState


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    body: Any = None
    status: int = 200
    response: Any = None
    query: tuple[str, ...] = ()
    per_account: bool = False
    """Also served at /v1/accounts/{account}/... (platform keys name the account there)."""


_PAGE = ("limit", "cursor")
_OPERATIONS: list[Operation] = [
    Operation(
        "post",
        "/v1/accounts",
        "createAccount",
        "Accounts",
        "Create an account (a customer; platform key or admin token)",
        s.AccountCreate,
        201,
        s.AccountCreated,
    ),
    Operation(
        "get",
        "/v1/accounts",
        "listAccounts",
        "Accounts",
        "List accounts, searchable by name or external id (platform key or admin token)",
        None,
        200,
        s.AccountPage,
        ("q", *_PAGE),
    ),
    Operation(
        "get",
        "/v1/accounts/{account}",
        "getAccount",
        "Accounts",
        "Get an account by id or external id",
        None,
        200,
        s.AccountOut,
    ),
    Operation(
        "post",
        "/v1/accounts/{account}/portal-sessions",
        "createPortalSession",
        "Accounts",
        "A short-lived link to one account's customer portal (platform key or admin token)",
        None,
        201,
        s.PortalSessionOut,
    ),
    Operation(
        "post",
        "/v1/keys",
        "createKey",
        "Keys",
        "Create an API key (platform keys: admin token only); the key is shown once",
        s.KeyCreate,
        201,
        s.KeyCreated,
    ),
    Operation(
        "get",
        "/v1/keys",
        "listKeys",
        "Keys",
        "List API keys (never the keys themselves)",
        None,
        200,
        s.KeyPage,
        ("account", *_PAGE),
    ),
    Operation(
        "post",
        "/v1/keys/{id}/rotate",
        "rotateKey",
        "Keys",
        "Replace a key by a new one; the old one works grace_s more",
        s.KeyRotate,
        201,
        s.KeyCreated,
    ),
    Operation(
        "post",
        "/v1/keys/{id}/revoke",
        "revokeKey",
        "Keys",
        "Revoke a key (effective on every node within a second)",
        None,
        200,
        s.KeyOut,
    ),
    Operation(
        "post",
        "/v1/endpoints",
        "createEndpoint",
        "Endpoints",
        "Register a callback endpoint",
        s.EndpointCreate,
        201,
        s.EndpointOut,
        per_account=True,
    ),
    Operation(
        "get",
        "/v1/endpoints",
        "listEndpoints",
        "Endpoints",
        "List endpoints, each with its health",
        None,
        200,
        s.EndpointHealthPage,
        _PAGE,
        per_account=True,
    ),
    Operation(
        "get",
        "/v1/endpoints/{id}",
        "getEndpoint",
        "Endpoints",
        "Get an endpoint",
        None,
        200,
        s.EndpointOut,
        per_account=True,
    ),
    Operation(
        "patch",
        "/v1/endpoints/{id}",
        "updateEndpoint",
        "Endpoints",
        "Change an endpoint",
        s.EndpointUpdate,
        200,
        s.EndpointOut,
        per_account=True,
    ),
    Operation(
        "delete",
        "/v1/endpoints/{id}",
        "deleteEndpoint",
        "Endpoints",
        "Delete an endpoint",
        None,
        204,
        None,
        per_account=True,
    ),
    Operation(
        "get",
        "/v1/endpoints/{id}/secret",
        "getEndpointSecret",
        "Endpoints",
        "Current signing secrets",
        None,
        200,
        s.SecretOut,
        per_account=True,
    ),
    Operation(
        "post",
        "/v1/endpoints/{id}/secret/rotate",
        "rotateEndpointSecret",
        "Endpoints",
        "Rotate the signing secret (old one signs 24 h more)",
        s.SecretRotate,
        200,
        s.SecretOut,
        per_account=True,
    ),
    Operation(
        "post",
        "/v1/event-types",
        "createEventType",
        "Event types",
        "Register a custom event type with its JSON Schema",
        s.EventTypeCreate,
        201,
        s.EventTypeOut,
        per_account=True,
    ),
    Operation(
        "get",
        "/v1/event-types",
        "listEventTypes",
        "Event types",
        "List built-in and custom event types with their schemas",
        None,
        200,
        s.EventTypeList,
        per_account=True,
    ),
    Operation(
        "post",
        "/v1/messages",
        "createMessage",
        "Messages",
        "Submit an event",
        s.MessageCreate,
        202,
        s.MessageAccepted,
        per_account=True,
    ),
    Operation(
        "post",
        "/v1/messages/batch",
        "createMessageBatch",
        "Messages",
        "Submit up to 1000 events (platform keys: each names its account)",
        list[s.MessageCreate],
        202,
        s.BatchAccepted,
        per_account=True,
    ),
    Operation(
        "get",
        "/v1/messages/{id}",
        "getMessage",
        "Messages",
        "Get a message and its deliveries",
        None,
        200,
        s.MessageOut,
        per_account=True,
    ),
    Operation(
        "post",
        "/v1/batches/{batch_id}/recipient-status",
        "postRecipientStatus",
        "Batches",
        "Per-recipient status updates; delivery reports per the batch's mode",
        s.RecipientStatusRequest,
        202,
        s.RecipientStatusAccepted,
        per_account=True,
    ),
    Operation(
        "get",
        "/v1/deliveries",
        "listDeliveries",
        "Deliveries",
        "List deliveries",
        None,
        200,
        s.DeliveryPage,
        ("state", "endpoint_id", "message_id", "since", "until", *_PAGE),
        per_account=True,
    ),
    Operation(
        "get",
        "/v1/deliveries/{id}",
        "getDelivery",
        "Deliveries",
        "Get a delivery",
        None,
        200,
        s.DeliveryOut,
        per_account=True,
    ),
    Operation(
        "get",
        "/v1/deliveries/{id}/attempts",
        "listAttempts",
        "Deliveries",
        "List a delivery's attempts",
        None,
        200,
        s.AttemptPage,
        _PAGE,
        per_account=True,
    ),
    Operation(
        "post",
        "/v1/deliveries/{id}/replay",
        "replayDelivery",
        "Deliveries",
        "Replay a dead delivery",
        None,
        202,
        s.ReplayResult,
        per_account=True,
    ),
    Operation(
        "post",
        "/v1/replay",
        "replayDeliveries",
        "Deliveries",
        "Replay dead deliveries in bulk",
        s.ReplayRequest,
        202,
        s.ReplayResult,
        per_account=True,
    ),
    Operation(
        "get",
        "/v1/endpoints/{id}/health",
        "getEndpointHealth",
        "Endpoints",
        "An endpoint's health: recent successes and failures, streak, latency, backlog",
        None,
        200,
        s.EndpointHealthOut,
        per_account=True,
    ),
    Operation(
        "post",
        "/v1/endpoints/{id}/enable",
        "enableEndpoint",
        "Endpoints",
        "Enable a disabled endpoint (a fresh failure streak); optionally replay what was held",
        s.EndpointEnable,
        200,
        s.EndpointEnabled,
        per_account=True,
    ),
    Operation(
        "patch",
        "/v1/accounts/{account}",
        "updateAccountSettings",
        "Accounts",
        "Change an account's auto-disable period (platform key or admin token)",
        s.AccountSettings,
        200,
        s.AccountSettingsOut,
    ),
    Operation(
        "post",
        "/v1/operational-endpoints",
        "createOperationalEndpoint",
        "Operations",
        "Register an operator endpoint for Postback's operational events (platform key or "
        "admin token); the signing secret is in this answer only",
        s.OperationalEndpointCreate,
        201,
        s.EndpointOut,
    ),
    Operation(
        "get",
        "/v1/operational-endpoints",
        "listOperationalEndpoints",
        "Operations",
        "List the operator endpoints",
        None,
        200,
        s.EndpointPage,
    ),
    Operation(
        "get",
        "/v1/operational-endpoints/{id}/secret",
        "getOperationalEndpointSecret",
        "Operations",
        "An operator endpoint's signing secrets",
        None,
        200,
        s.SecretOut,
    ),
    Operation(
        "delete",
        "/v1/operational-endpoints/{id}",
        "deleteOperationalEndpoint",
        "Operations",
        "Remove an operator endpoint",
        None,
        204,
        None,
    ),
    Operation(
        "get", "/healthz", "health", "Service", "Readiness (alias of /readyz)", None, 200, s.Health
    ),
    Operation(
        "get", "/livez", "livez", "Service", "Liveness: the process runs", None, 200, s.Health
    ),
    Operation(
        "get",
        "/readyz",
        "readyz",
        "Service",
        "Readiness: the database takes a write and the dispatcher loop goes round",
        None,
        200,
        s.Health,
    ),
]
_OPTIONAL_BODIES = (s.SecretRotate, s.ReplayRequest, s.KeyRotate, s.EndpointEnable)
_PATH_PARAMETERS = ("account", "id", "batch_id")
_CONFLICTS = (
    "createAccount",
    "createEventType",
    "replayDelivery",
    "postRecipientStatus",  # a batch keeps the report mode it was created with
    "rotateKey",  # a revoked key cannot be rotated
)
"""Operations that answer 409 when the object's state forbids them."""

# The schema of each query parameter: the same rules the handlers enforce.
TEXT_PATTERN = "^[^\\u0000]*$"
"""Every string the API takes has no NUL, as the decoding seam enforces it
(``core.validation.check_text``, which also refuses lone surrogates: no regex engine a
JSON Schema tool uses can say that)."""

_LINKS: dict[str, tuple[tuple[str, str], ...]] = {
    # operationId -> (operation, its path parameter) that take the answer's ``id``, so a
    # stateful client (schemathesis) reuses what it created.
    "createEndpoint": tuple(
        (target, "id")
        for target in (
            "getEndpoint",
            "updateEndpoint",
            "deleteEndpoint",
            "getEndpointSecret",
            "rotateEndpointSecret",
        )
    ),
    "createMessage": (("getMessage", "id"),),
    "createKey": (("rotateKey", "id"), ("revokeKey", "id")),
    "createAccount": (("getAccount", "account"),),
}

_QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
    "cursor": {"type": "string", "description": "next_cursor of the previous page"},
    "state": {"type": "string", "enum": [x.value for x in DeliveryState]},
    "endpoint_id": {"type": "string"},
    "message_id": {"type": "string"},
    "since": {"type": "string", "format": "date-time"},
    "until": {"type": "string", "format": "date-time"},
    "q": {"type": "string", "description": "part of the name or external id, any case"},
    "account": {"type": "string", "description": "account id or external id"},
}


def operations() -> list[Operation]:
    """Every operation, the account-scoped ones also under /v1/accounts/{account}."""
    result: list[Operation] = []
    for op in _OPERATIONS:
        result.append(op)
        if op.per_account:
            result.append(
                replace(
                    op,
                    path="/v1/accounts/{account}" + op.path.removeprefix("/v1"),
                    operation_id=op.operation_id + "ForAccount",
                    summary=op.summary + " (of the account in the path)",
                    per_account=False,
                )
            )
    return result


@cache
def openapi_document() -> dict[str, Any]:
    ops = operations()
    types = [t for op in ops for t in (op.body, op.response) if t is not None]
    types.append(s.ErrorBody)
    schemas, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    by_type = dict(zip(types, schemas, strict=True))
    error = {"content": {"application/json": {"schema": by_type[s.ErrorBody]}}}
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        spec: dict[str, Any] = {
            "operationId": op.operation_id,
            "tags": [op.tag],
            "summary": op.summary,
            "responses": {},
        }
        params: list[dict[str, Any]] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": TEXT_PATTERN},
            }
            for name in _PATH_PARAMETERS
            if "{" + name + "}" in op.path
        ]
        params += [{"name": q, "in": "query", "schema": _QUERY_SCHEMAS[q]} for q in op.query]
        if op.method == "post" and op.path.endswith("/messages"):
            params.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "description": "alias of the idempotency_key field (both: they must agree)",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                }
            )
        if params:
            spec["parameters"] = params
        if op.body is not None:
            spec["requestBody"] = {
                "required": op.body not in _OPTIONAL_BODIES,
                "content": {"application/json": {"schema": by_type[op.body]}},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if op.response is not None:
            ok["content"] = {"application/json": {"schema": by_type[op.response]}}
        links = _LINKS.get(op.operation_id)
        if links:
            ok["links"] = {
                target: {"operationId": target, "parameters": {param: "$response.body#/id"}}
                for target, param in links
            }
        spec["responses"][str(op.status)] = ok
        if op.path not in ("/healthz", "/livez", "/readyz"):
            spec["security"] = [{"bearer": []}]
            for code, what in (
                ("400", "Invalid input"),
                ("401", "Missing, wrong or revoked key"),
                ("403", "The key may not do this (e.g. an account key listing accounts)"),
                ("404", "Not found (or another account's)"),
                ("503", "Database unavailable, or its disk full (storage_full, Retry-After)"),
            ):
                spec["responses"][code] = {"description": what, **error}
            if op.operation_id.removesuffix("ForAccount") in _CONFLICTS:
                spec["responses"]["409"] = {"description": "Conflicts with the state", **error}
            if op.method == "post" and op.path.endswith(("/messages", "/messages/batch")):
                spec["responses"]["409"] = {
                    "description": "idempotency_conflict: the key was used for a different request",
                    **error,
                }
            if op.body is not None:
                spec["responses"]["413"] = {"description": "Body over 32 MB", **error}
        paths.setdefault(op.path, {})[op.method] = spec
    # Errors may quote what was refused (a field name with a NUL in it): no pattern there.
    _forbid_nul({k: v for k, v in components.items() if k not in ("ErrorBody", "ErrorDetail")})
    _forbid_nul(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Postback",
            "version": __version__,
            "description": "Durable, signed callback (webhook) delivery.",
        },
        "tags": [{"name": name} for name in dict.fromkeys(op.tag for op in _OPERATIONS)],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _forbid_nul(node: Any) -> None:
    """Give every free-form string of the document the text rule of the decoding seam."""
    if isinstance(node, dict):
        if node.get("type") == "string" and not {"pattern", "enum", "const", "format"} & set(node):
            node["pattern"] = TEXT_PATTERN
        for value in node.values():
            _forbid_nul(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_nul(value)


def swagger_static_dir() -> str:
    """Swagger UI 5's files, vendored in the package (postback/ui/static/vendor): no CDN."""
    return str(resources.files("postback.ui").joinpath("static", "vendor", "swagger-ui"))


def docs_html() -> str:
    return """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Postback API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/docs/static/favicon-32x32.png">
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>
"""


DOCS_INIT_JS = (
    'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", deepLinking: true});\n'
)
"""Kept out of the page so a Content-Security-Policy without 'unsafe-inline' can hold."""
