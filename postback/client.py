"""``postback.Client``: the typed Python client for Postback's HTTP API.

    async with Client("http://127.0.0.1:8000", api_key) as pb:
        endpoint = await pb.create_endpoint("https://example.com/hook", event_types=["mo_text"])
        accepted = await pb.send("mo_text", {"type": "mo_text", "body": "hi", ...})

Every failure raises ``APIError`` carrying the API's status, code, message and field.
``SyncClient`` offers the same methods, blocking, for code that is not async (it works inside
a running event loop too, e.g. in Jupyter). Both read ``POSTBACK_URL`` and
``POSTBACK_API_KEY`` when no URL or key is given, and walk every page of a listing with
``iter_accounts``, ``iter_endpoints``, ``iter_deliveries`` and ``iter_attempts``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import aiohttp
import msgspec

from postback.core import wire as s
from postback.core.errors import PostbackError

T = TypeVar("T")
P = ParamSpec("P")
DEFAULT_URL = "http://127.0.0.1:8000"
JSONPayload = Mapping[str, Any] | bytes | str


class APIError(PostbackError):
    """An API call failed: ``status`` 0 means the server could not be reached."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        where = f" (field: {field})" if field else ""
        super().__init__(
            f"{message}{where}" if status == 0 else f"{status} {code}: {message}{where}"
        )
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def _raw_json(payload: JSONPayload) -> msgspec.Raw:
    if isinstance(payload, bytes):
        return msgspec.Raw(payload)
    if isinstance(payload, str):
        return msgspec.Raw(payload.encode())
    return msgspec.Raw(msgspec.json.encode(payload))


def _message(
    event_type: str,
    payload: JSONPayload,
    idempotency_key: str | None = None,
    callback_url: str | None = None,
    fanout: bool = False,
    account: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"event_type": event_type, "payload": _raw_json(payload)}
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    if callback_url is not None:
        body["callback_url"] = callback_url
    if fanout:
        body["fanout"] = True
    if account is not None:
        body["account"] = account
    return body


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class Client:
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        admin_token: str | None = None,
        timeout_s: float = 30.0,
        account: str | None = None,
    ) -> None:
        """``base_url`` defaults to ``$POSTBACK_URL`` (else http://127.0.0.1:8000), ``api_key``
        to ``$POSTBACK_API_KEY``. ``account`` (an id or external id): act on that account with
        a platform key, i.e. send account-scoped calls to ``/v1/accounts/{account}/...``."""
        base_url = base_url or os.environ.get("POSTBACK_URL") or DEFAULT_URL
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("POSTBACK_API_KEY")
        self.admin_token = admin_token
        self.account = account
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._parent: Client | None = None

    def for_account(self, account: str) -> Client:
        """The same client acting on ``account`` (id or external id), sharing its connections;
        closing it is a no-op, close the original."""
        child = Client(self.base_url, self.api_key, admin_token=self.admin_token, account=account)
        child._timeout = self._timeout
        child._parent = self._parent or self
        return child

    def _scoped(self, path: str) -> str:
        """``/endpoints`` -> ``/v1/endpoints``, or ``/v1/accounts/{account}/endpoints``."""
        if self.account is None:
            return "/v1" + path
        return f"/v1/accounts/{quote(self.account, safe='')}{path}"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._parent is None and self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        type_: type[T] | None,
        body: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> T:
        if self._parent is not None:
            owner = self._parent
            if owner._session is None:
                owner._session = aiohttp.ClientSession(timeout=owner._timeout)
            session = owner._session
        else:
            if self._session is None:
                self._session = aiohttp.ClientSession(timeout=self._timeout)
            session = self._session
        token = token or self.api_key
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        data = None if body is None else msgspec.json.encode(body)
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        try:
            async with session.request(
                method, self.base_url + path, data=data, headers=headers, params=query
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise self._error(response.status, raw)
        except aiohttp.ClientError as exc:
            raise APIError(
                0, "unreachable", f"cannot reach Postback at {self.base_url}: {exc}"
            ) from None
        except TimeoutError:
            raise APIError(0, "timeout", f"no answer from {self.base_url}{path}") from None
        if type_ is None:
            return None  # type: ignore[return-value]
        try:
            return msgspec.json.decode(raw, type=type_)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # Something answered that is not this Postback (a wrong --url, another service).
            raise APIError(
                0, "unexpected_answer", f"{self.base_url}{path} is not a Postback API: {exc}"
            ) from None

    @staticmethod
    def _error(status: int, raw: bytes) -> APIError:
        try:
            detail = msgspec.json.decode(raw, type=s.ErrorBody).error
        except (msgspec.DecodeError, msgspec.ValidationError):
            return APIError(status, "http_error", raw[:200].decode("utf-8", "replace"))
        return APIError(status, detail.code, detail.message, detail.field)

    # -- accounts and health ------------------------------------------------------------------

    async def health(self) -> s.Health:
        return await self._call("GET", "/healthz", s.Health)

    async def create_account(
        self, name: str, *, external_id: str | None = None, create_key: bool = True
    ) -> s.AccountCreated:
        """Needs a platform key or ``admin_token`` (the server's POSTBACK_ADMIN_TOKEN)."""
        body = _drop_none({"name": name, "external_id": external_id})
        if not create_key:
            body["create_key"] = False
        return await self._call(
            "POST", "/v1/accounts", s.AccountCreated, body, token=self.admin_token
        )

    async def list_accounts(
        self, *, q: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> s.AccountPage:
        """Platform key or admin token; ``q`` matches part of the name or external id."""
        params = {"q": q, "limit": limit, "cursor": cursor}
        return await self._call(
            "GET", "/v1/accounts", s.AccountPage, params=params, token=self.admin_token
        )

    async def iter_accounts(
        self, *, q: str | None = None, page_size: int = 100
    ) -> AsyncIterator[s.AccountOut]:
        """Every account (matching ``q``), page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_accounts(q=q, limit=page_size, cursor=cursor)
            for item in page.data:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get_account(self, account: str) -> s.AccountOut:
        """By id or external id."""
        path = f"/v1/accounts/{quote(account, safe='')}"
        return await self._call("GET", path, s.AccountOut, token=self.admin_token)

    # -- API keys -----------------------------------------------------------------------------

    async def create_key(
        self, *, platform: bool = False, account: str | None = None, name: str = ""
    ) -> s.KeyCreated:
        """A new key, shown once. ``platform``: needs ``admin_token``; otherwise a key for
        ``account`` (an account key's own account by default)."""
        body = _drop_none({"account": account, "name": name or None})
        if platform:
            body["platform"] = True
        token = self.admin_token if platform else None
        return await self._call("POST", "/v1/keys", s.KeyCreated, body, token=token)

    async def list_keys(
        self, *, account: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> s.KeyPage:
        """Keys as id, prefix, last four characters and dates: never the keys themselves."""
        params = {"account": account, "limit": limit, "cursor": cursor}
        return await self._call("GET", "/v1/keys", s.KeyPage, params=params)

    async def rotate_key(self, key_id: str, *, grace_s: int = 0) -> s.KeyCreated:
        """A new key with the same scope; the old one keeps working ``grace_s`` seconds."""
        path = f"/v1/keys/{key_id}/rotate"
        return await self._call("POST", path, s.KeyCreated, {"grace_s": grace_s})

    async def revoke_key(self, key_id: str) -> s.KeyOut:
        return await self._call("POST", f"/v1/keys/{key_id}/revoke", s.KeyOut)

    async def create_portal_session(self, account: str) -> s.PortalSessionOut:
        """A short-lived link that opens ``account``'s customer portal in a browser (needs
        ``admin_token`` or a platform key); hand it to the customer, or embed it."""
        return await self._call(
            "POST",
            f"/v1/accounts/{account}/portal-sessions",
            s.PortalSessionOut,
            token=self.admin_token,
        )

    # -- endpoints ----------------------------------------------------------------------------

    async def create_endpoint(self, /, url: str, **fields: Any) -> s.EndpointOut:
        """Fields as in ``POST /v1/endpoints``: event_types, retry_policy, timeout_ms, auth, ..."""
        return await self._call(
            "POST", self._scoped("/endpoints"), s.EndpointOut, {"url": url, **fields}
        )

    async def list_endpoints(self, *, limit: int = 50, cursor: str | None = None) -> s.EndpointPage:
        params = {"limit": limit, "cursor": cursor}
        return await self._call("GET", self._scoped("/endpoints"), s.EndpointPage, params=params)

    async def iter_endpoints(self, *, page_size: int = 100) -> AsyncIterator[s.EndpointOut]:
        """Every endpoint, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_endpoints(limit=page_size, cursor=cursor)
            for item in page.data:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get_endpoint(self, endpoint_id: str) -> s.EndpointOut:
        return await self._call("GET", self._scoped(f"/endpoints/{endpoint_id}"), s.EndpointOut)

    async def update_endpoint(self, /, endpoint_id: str, **changes: Any) -> s.EndpointOut:
        return await self._call(
            "PATCH", self._scoped(f"/endpoints/{endpoint_id}"), s.EndpointOut, changes
        )

    async def delete_endpoint(self, endpoint_id: str) -> None:
        await self._call("DELETE", self._scoped(f"/endpoints/{endpoint_id}"), None)

    async def get_secret(self, endpoint_id: str) -> s.SecretOut:
        return await self._call(
            "GET", self._scoped(f"/endpoints/{endpoint_id}/secret"), s.SecretOut
        )

    async def rotate_secret(self, endpoint_id: str, key: str | None = None) -> s.SecretOut:
        path = self._scoped(f"/endpoints/{endpoint_id}/secret/rotate")
        return await self._call("POST", path, s.SecretOut, _drop_none({"key": key}))

    # -- event types --------------------------------------------------------------------------

    async def create_event_type(
        self, name: str, schema: Mapping[str, Any], description: str = ""
    ) -> s.EventTypeOut:
        body = {"name": name, "schema": dict(schema), "description": description}
        return await self._call("POST", self._scoped("/event-types"), s.EventTypeOut, body)

    async def list_event_types(self) -> s.EventTypeList:
        return await self._call("GET", self._scoped("/event-types"), s.EventTypeList)

    # -- messages -----------------------------------------------------------------------------

    async def send(
        self,
        event_type: str,
        payload: JSONPayload,
        *,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        fanout: bool = False,
        account: str | None = None,
    ) -> s.MessageAccepted:
        """Submit one event; ``payload`` is a dict or ready JSON bytes (sent unchanged).

        ``callback_url`` sends it there instead of to the subscribed endpoints, unless
        ``fanout``. ``account`` (platform keys): the account it belongs to."""
        body = _message(event_type, payload, idempotency_key, callback_url, fanout, account)
        return await self._call("POST", self._scoped("/messages"), s.MessageAccepted, body)

    async def send_batch(self, messages: Sequence[Mapping[str, Any]]) -> s.BatchAccepted:
        """Each item: {"event_type", "payload", "idempotency_key"?, "callback_url"?, "fanout"?,
        "account"?}; with a platform key, "account" (id or external id) may differ per item."""
        body = [
            _message(
                m["event_type"],
                m["payload"],
                m.get("idempotency_key"),
                m.get("callback_url"),
                bool(m.get("fanout", False)),
                m.get("account"),
            )
            for m in messages
        ]
        return await self._call("POST", self._scoped("/messages/batch"), s.BatchAccepted, body)

    async def get_message(self, message_id: str) -> s.MessageOut:
        return await self._call("GET", self._scoped(f"/messages/{message_id}"), s.MessageOut)

    async def batch_recipient_status(
        self,
        batch_id: str,
        *,
        delivery_report: str,
        statuses: Sequence[Mapping[str, Any]] = (),
        recipients: Sequence[str] = (),
        type: str = "sms",
        callback_url: str | None = None,
        client_reference: str | None = None,
        report_deadline_s: int | None = None,
    ) -> s.RecipientStatusAccepted:
        """Submit raw recipient status updates; Postback sends the reports the mode asks for."""
        body = _drop_none(
            {
                "delivery_report": delivery_report,
                "type": type,
                "statuses": list(statuses),
                "recipients": list(recipients),
                "callback_url": callback_url,
                "client_reference": client_reference,
                "report_deadline_s": report_deadline_s,
            }
        )
        path = self._scoped(f"/batches/{batch_id}/recipient-status")
        return await self._call("POST", path, s.RecipientStatusAccepted, body)

    # -- deliveries ---------------------------------------------------------------------------

    async def list_deliveries(
        self,
        *,
        state: str | None = None,
        endpoint_id: str | None = None,
        message_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> s.DeliveryPage:
        params = {
            "state": state,
            "endpoint_id": endpoint_id,
            "message_id": message_id,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "limit": limit,
            "cursor": cursor,
        }
        return await self._call("GET", self._scoped("/deliveries"), s.DeliveryPage, params=params)

    async def iter_deliveries(
        self,
        *,
        state: str | None = None,
        endpoint_id: str | None = None,
        message_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[s.DeliveryOut]:
        """Every delivery matching the filters, page after page, newest first."""
        cursor: str | None = None
        while True:
            page = await self.list_deliveries(
                state=state,
                endpoint_id=endpoint_id,
                message_id=message_id,
                since=since,
                until=until,
                limit=page_size,
                cursor=cursor,
            )
            for delivery in page.data:
                yield delivery
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get_delivery(self, delivery_id: str) -> s.DeliveryOut:
        return await self._call("GET", self._scoped(f"/deliveries/{delivery_id}"), s.DeliveryOut)

    async def list_attempts(
        self, delivery_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> s.AttemptPage:
        path = self._scoped(f"/deliveries/{delivery_id}/attempts")
        return await self._call(
            "GET", path, s.AttemptPage, params={"limit": limit, "cursor": cursor}
        )

    async def iter_attempts(
        self, delivery_id: str, *, page_size: int = 100
    ) -> AsyncIterator[s.AttemptOut]:
        """Every attempt of a delivery, in order."""
        cursor: str | None = None
        while True:
            page = await self.list_attempts(delivery_id, limit=page_size, cursor=cursor)
            for item in page.data:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def replay_delivery(self, delivery_id: str) -> s.ReplayResult:
        return await self._call(
            "POST", self._scoped(f"/deliveries/{delivery_id}/replay"), s.ReplayResult
        )

    async def replay(
        self,
        *,
        endpoint_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> s.ReplayResult:
        """Replay every dead delivery matching the filters (all of the account's by default)."""
        body = _drop_none({"endpoint_id": endpoint_id, "since": since, "until": until})
        return await self._call("POST", self._scoped("/replay"), s.ReplayResult, body)

    # -- operations -----------------------------------------------------------------------------

    async def endpoint_health(self, endpoint_id: str) -> s.EndpointHealthOut:
        return await self._call(
            "GET", self._scoped(f"/endpoints/{endpoint_id}/health"), s.EndpointHealthOut
        )

    async def list_endpoints_with_health(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> s.EndpointHealthPage:
        params = {"limit": limit, "cursor": cursor}
        return await self._call(
            "GET", self._scoped("/endpoints"), s.EndpointHealthPage, params=params
        )

    async def enable_endpoint(self, endpoint_id: str, *, replay: bool = False) -> s.EndpointEnabled:
        """Enable a disabled endpoint (a fresh failure streak); ``replay`` also sends again what
        was held or dead-lettered since its failures began."""
        return await self._call(
            "POST",
            self._scoped(f"/endpoints/{endpoint_id}/enable"),
            s.EndpointEnabled,
            {"replay": replay},
        )

    async def create_operational_endpoint(
        self, url: str, *, event_types: list[str] | None = None, description: str = ""
    ) -> s.EndpointOut:
        """Needs a platform key or ``admin_token``: an endpoint for Postback's own operational
        events (``signing_secret`` is in this answer only)."""
        body = _drop_none({"url": url, "event_types": event_types, "description": description})
        return await self._call(
            "POST", "/v1/operational-endpoints", s.EndpointOut, body, token=self.admin_token
        )

    async def list_operational_endpoints(self) -> s.EndpointPage:
        return await self._call(
            "GET", "/v1/operational-endpoints", s.EndpointPage, token=self.admin_token
        )

    async def delete_operational_endpoint(self, endpoint_id: str) -> None:
        await self._call(
            "DELETE", f"/v1/operational-endpoints/{endpoint_id}", None, token=self.admin_token
        )

    async def set_account_disable_after(
        self, account_id: str, seconds: int | None
    ) -> s.AccountSettingsOut:
        """Needs ``admin_token``: the account's auto-disable period (None: server default)."""
        return await self._call(
            "PATCH",
            f"/v1/accounts/{quote(account_id, safe='')}",
            s.AccountSettingsOut,
            {"disable_after_s": seconds},
            token=self.admin_token,
        )


class _LoopThread:
    """A private event loop running on its own daemon thread.

    A blocking call hands its coroutine to this loop and waits for the result, so it works
    whether or not the calling thread runs an event loop of its own (Jupyter, an async app
    calling synchronous code): ``run_until_complete`` on the caller's thread would fail there.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="postback-sync-client", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self.loop.is_closed():
            coroutine.close()
            raise APIError(0, "closed", "this SyncClient is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a SyncClient cannot be called from its own loop")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncClient, P], T]:
    """The blocking twin of an async ``Client`` method, with the same typed signature
    (mypy checks every call against the async original) and the same docstring."""

    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._loop_thread.run(method(self._client, *args, **kwargs))

    functools.update_wrapper(call, method)  # name, docstring, and the signature for help()
    return call


class SyncClient:
    """The same methods as ``Client``, blocking; its own event loop runs on a private thread.

    Usable from plain scripts and from inside a running event loop alike. Close it (or use it
    as a context manager) to stop that thread.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        admin_token: str | None = None,
        timeout_s: float = 30.0,
        account: str | None = None,
    ) -> None:
        self._client = Client(
            base_url, api_key, admin_token=admin_token, timeout_s=timeout_s, account=account
        )
        self._loop_thread = _LoopThread()

    @property
    def base_url(self) -> str:
        return self._client.base_url

    @property
    def api_key(self) -> str | None:
        return self._client.api_key

    health = _blocking(Client.health)
    create_account = _blocking(Client.create_account)
    list_accounts = _blocking(Client.list_accounts)
    get_account = _blocking(Client.get_account)
    create_key = _blocking(Client.create_key)
    list_keys = _blocking(Client.list_keys)
    rotate_key = _blocking(Client.rotate_key)
    revoke_key = _blocking(Client.revoke_key)
    create_portal_session = _blocking(Client.create_portal_session)
    create_endpoint = _blocking(Client.create_endpoint)
    list_endpoints = _blocking(Client.list_endpoints)
    get_endpoint = _blocking(Client.get_endpoint)
    update_endpoint = _blocking(Client.update_endpoint)
    delete_endpoint = _blocking(Client.delete_endpoint)
    get_secret = _blocking(Client.get_secret)
    rotate_secret = _blocking(Client.rotate_secret)
    create_event_type = _blocking(Client.create_event_type)
    list_event_types = _blocking(Client.list_event_types)
    send = _blocking(Client.send)
    send_batch = _blocking(Client.send_batch)
    get_message = _blocking(Client.get_message)
    batch_recipient_status = _blocking(Client.batch_recipient_status)
    list_deliveries = _blocking(Client.list_deliveries)
    get_delivery = _blocking(Client.get_delivery)
    list_attempts = _blocking(Client.list_attempts)
    replay_delivery = _blocking(Client.replay_delivery)
    replay = _blocking(Client.replay)
    endpoint_health = _blocking(Client.endpoint_health)
    list_endpoints_with_health = _blocking(Client.list_endpoints_with_health)
    enable_endpoint = _blocking(Client.enable_endpoint)
    create_operational_endpoint = _blocking(Client.create_operational_endpoint)
    list_operational_endpoints = _blocking(Client.list_operational_endpoints)
    delete_operational_endpoint = _blocking(Client.delete_operational_endpoint)
    set_account_disable_after = _blocking(Client.set_account_disable_after)

    def iter_accounts(
        self, *, q: str | None = None, page_size: int = 100
    ) -> Iterator[s.AccountOut]:
        """Every account (matching ``q``), page after page."""
        cursor: str | None = None
        while True:
            page = self.list_accounts(q=q, limit=page_size, cursor=cursor)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_endpoints(self, *, page_size: int = 100) -> Iterator[s.EndpointOut]:
        """Every endpoint, page after page (one request per page, as you iterate)."""
        cursor: str | None = None
        while True:
            page = self.list_endpoints(limit=page_size, cursor=cursor)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_deliveries(
        self,
        *,
        state: str | None = None,
        endpoint_id: str | None = None,
        message_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[s.DeliveryOut]:
        """Every delivery matching the filters, page after page, newest first."""
        cursor: str | None = None
        while True:
            page = self.list_deliveries(
                state=state,
                endpoint_id=endpoint_id,
                message_id=message_id,
                since=since,
                until=until,
                limit=page_size,
                cursor=cursor,
            )
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_attempts(self, delivery_id: str, *, page_size: int = 100) -> Iterator[s.AttemptOut]:
        """Every attempt of a delivery, in order."""
        cursor: str | None = None
        while True:
            page = self.list_attempts(delivery_id, limit=page_size, cursor=cursor)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def close(self) -> None:
        if not self._loop_thread.loop.is_closed():
            self._loop_thread.run(self._client.close())
            self._loop_thread.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
