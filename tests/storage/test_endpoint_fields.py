"""Every endpoint field survives the whole path on both backends: request body -> ingest
service -> storage -> read back -> response, on create and on change.

The samples must give every writable field a non-default value, so a new field fails here
until it is carried everywhere (core/model.py's table names the places).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trustme

from postback.core.model import (
    ENDPOINT_CREATE_ONLY,
    ENDPOINT_SETTINGS,
    ENDPOINT_WRITE_ONLY,
    BasicAuth,
    BearerAuth,
    ClientTLS,
    Endpoint,
    SNSDestination,
)
from postback.core.policy import RetryPolicy
from postback.core.wire import EndpointCreate, EndpointOut, EndpointUpdate
from postback.ingest import Services
from postback.store import open_storage
from tests.support.postgres import fresh_schema

CA_PEM = trustme.CA().cert_pem.bytes().decode()

ON_CREATE: dict[str, Any] = {
    "url": "https://hooks.example.com/in",
    "description": "orders",
    "event_types": ["mo_text", "mo_binary"],
    "retry_policy": RetryPolicy(preset="notify"),
    "timeout_ms": 1500,
    "rate_limit_per_s": 12.5,
    "headers": {"x-tenant": "t1"},
    "auth": BasicAuth(username="user", password="pw-1"),
    "tls": ClientTLS(ca_bundle_pem=CA_PEM),
    "destination": None,  # an SNS destination replaces the URL: set by the change below
    "disabled": True,
    "signature_scheme": "sinch",
}

ON_CHANGE: dict[str, Any] = {
    "url": "https://hooks.example.com/other",
    "description": "orders, moved",
    "event_types": None,
    "retry_policy": RetryPolicy(schedule_s=(1.0, 2.0)),
    "timeout_ms": 2500,
    "rate_limit_per_s": None,
    "headers": {"x-tenant": "t2", "x-more": "yes"},
    "auth": BearerAuth(token="tok-2"),
    "tls": None,
    "destination": SNSDestination(
        topic_arn="arn:aws:sns:eu-west-1:123456789012:orders",
        region="eu-west-1",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="secret-3",
    ),
    "disabled": False,
}


def stored_form(name: str, value: Any) -> Any:
    return tuple(sorted(value)) if name == "event_types" and value is not None else value


def test_the_samples_cover_every_writable_field() -> None:
    assert set(ON_CREATE) == {*ENDPOINT_SETTINGS, *ENDPOINT_CREATE_ONLY}, "add a sample value"
    assert set(ON_CHANGE) == set(ENDPOINT_SETTINGS), "add a sample value"
    plain = Endpoint(id="ep", account_id="acc", url="")
    for name in ENDPOINT_SETTINGS:
        assert ON_CHANGE[name] != ON_CREATE[name], f"{name}: the change must change it"
        if name != "destination":
            assert ON_CREATE[name] != getattr(plain, name), f"{name}: not the default"


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'postback.db'}"
    else:
        async with fresh_schema() as url:
            yield url


async def test_every_field_is_stored_read_back_and_shown(database_url: str) -> None:
    storage = open_storage(database_url)
    await storage.open(migrate=True)
    try:
        services = Services.build(storage, guard_destinations=False)
        account, _ = await services.accounts.create("fields")

        created, _ = await services.endpoints.create(account.id, EndpointCreate(**ON_CREATE))
        read = await services.endpoints.get(account.id, created.id)
        assert read == created
        for name, value in ON_CREATE.items():
            assert getattr(read, name) == stored_form(name, value), name

        changed = await services.endpoints.update(
            account.id, created.id, EndpointUpdate(**ON_CHANGE)
        )
        read = await services.endpoints.get(account.id, created.id)
        assert read == changed
        for name, value in ON_CHANGE.items():
            if name != "url":  # an SNS endpoint shows its topic as its URL
                assert getattr(read, name) == stored_form(name, value), name
        assert read.url == ON_CHANGE["destination"].topic_arn
        assert read.signature_scheme == ON_CREATE["signature_scheme"]  # fixed at creation

        shown = msgspec.to_builtins(EndpointOut.of(read))
        for name in set(ENDPOINT_SETTINGS) - ENDPOINT_WRITE_ONLY:
            assert shown[name] == msgspec.to_builtins(getattr(read, name)), name
    finally:
        await storage.close()
