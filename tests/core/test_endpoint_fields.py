"""One definition of an endpoint's fields: ``core.model.Endpoint`` plus the table beside it.

Everything else that lists endpoint fields is checked against them here, so adding a field
to ``Endpoint`` fails exactly the checks that name the other places to touch. The round trip
through ingest and both storage backends is in tests/storage/test_endpoint_fields.py.
"""

from __future__ import annotations

import msgspec

from postback.core.model import (
    ENDPOINT_CREATE_ONLY,
    ENDPOINT_SETTINGS,
    ENDPOINT_SYSTEM,
    ENDPOINT_WRITE_ONLY,
    BasicAuth,
    ClientTLS,
    Endpoint,
    SNSDestination,
)
from postback.core.policy import RetryPolicy
from postback.core.wire import EndpointCreate, EndpointOut, EndpointUpdate
from postback.store.rows import EndpointConfig

ENDPOINT = set(Endpoint.__struct_fields__)

# The fields that have a column of their own (everything else is in the sealed JSON config).
# A new one needs a migration in both dialects and a line in store/rows.py's two functions.
ENDPOINT_COLUMNS = {
    "id",
    "account_id",
    "url",
    "description",
    "event_types",
    "disabled",
    "is_callback_url",
    "created_at",
    "updated_at",
}


def test_the_table_places_every_field_once() -> None:
    groups = [set(ENDPOINT_SETTINGS), set(ENDPOINT_CREATE_ONLY), set(ENDPOINT_SYSTEM)]
    assert set.union(*groups) == ENDPOINT, "place the new Endpoint field in core/model.py's table"
    assert sum(map(len, groups)) == len(ENDPOINT), "a field is in two groups of the table"
    assert set(ENDPOINT_SETTINGS) >= ENDPOINT_WRITE_ONLY


def test_the_request_bodies_carry_exactly_the_writable_fields() -> None:
    # The signing secret is not an Endpoint field: it is stored apart, and rotates.
    assert set(EndpointCreate.__struct_fields__) == {
        *ENDPOINT_SETTINGS,
        *ENDPOINT_CREATE_ONLY,
        "signing_secret",
    }, "core/wire.py EndpointCreate: add the field (same name, same type, same default)"
    assert set(EndpointUpdate.__struct_fields__) == set(ENDPOINT_SETTINGS), (
        "core/wire.py EndpointUpdate: add the field as `T | UnsetType = _UNSET`"
    )


def test_the_create_defaults_are_the_endpoint_defaults() -> None:
    created = EndpointCreate()
    plain = Endpoint(id="ep", account_id="acc", url="")
    for name in (*ENDPOINT_SETTINGS, *ENDPOINT_CREATE_ONLY):
        if name != "url":
            assert getattr(created, name) == getattr(plain, name), name


def test_the_response_shows_every_field_but_the_account_and_the_secrets() -> None:
    # account_id is implied by the caller's key; is_callback_url is shown as `kind`.
    expected = (ENDPOINT - {"account_id", "is_callback_url"}) | {"kind", "signing_secret"}
    assert set(EndpointOut.__struct_fields__) == expected, (
        "core/wire.py EndpointOut and EndpointOut.of: show the new field (or a summary of it)"
    )


def test_the_storage_layout_covers_every_field() -> None:
    config = set(EndpointConfig.__struct_fields__)
    assert not config & ENDPOINT_COLUMNS
    assert config | ENDPOINT_COLUMNS == ENDPOINT, (
        "store/rows.py: put the new field in EndpointConfig (no migration) or give it a column"
    )
    own = {f.name: f.type for f in msgspec.structs.fields(Endpoint)}
    for field in msgspec.structs.fields(EndpointConfig):
        assert field.type == own[field.name], field.name


def test_the_response_never_carries_credentials() -> None:
    endpoint = Endpoint(
        id="ep_1",
        account_id="acc_1",
        url="https://hooks.example.com/in",
        retry_policy=RetryPolicy(preset="notify"),
        headers={"x-tenant": "t1"},
        auth=BasicAuth(username="user", password="PASSWORD-1"),
        tls=ClientTLS(cert_pem="CERT-PEM-2", key_pem="KEY-PEM-3", pkcs12_password="P12-4"),
        destination=SNSDestination(
            topic_arn="arn:aws:sns:eu-west-1:123456789012:t",
            region="eu-west-1",
            access_key_id="AKID-5",
            secret_access_key="SECRET-6",
        ),
    )
    body = msgspec.json.encode(EndpointOut.of(endpoint)).decode()
    for secret in ("PASSWORD-1", "CERT-PEM-2", "KEY-PEM-3", "P12-4", "AKID-5", "SECRET-6"):
        assert secret not in body
    shown = msgspec.json.decode(body)
    for name in set(ENDPOINT_SETTINGS) - ENDPOINT_WRITE_ONLY:
        assert shown[name] == msgspec.to_builtins(getattr(endpoint, name)), name
    assert shown["auth"] == {"type": "basic", "username": "user"}
