"""Endpoints: create, change, delete, list; signing secrets and their rotation."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from postback.core.errors import InvalidInput, NotFound
from postback.core.model import (
    Auth,
    ClientTLS,
    Endpoint,
    OAuth2Auth,
    SignatureScheme,
    SigningSecret,
    SNSDestination,
)
from postback.core.policy import RetryPolicy
from postback.core.validation import (
    check_auth,
    check_destination_config,
    check_event_types,
    check_headers,
    check_policy,
    check_rate,
    check_secret,
    check_timeout,
    check_url,
)
from postback.ingest.context import IngestContext
from postback.transports.tls import TLSConfigError, client_ssl_context

SECRET_OVERLAP_MS = 24 * 3600 * 1000
"""After a rotation the old secret keeps signing beside the new one for this long."""


def check_tls(tls: ClientTLS | None) -> ClientTLS | None:
    """A client certificate is checked by loading it, exactly as the transport will."""
    if tls is None:
        return None
    try:
        client_ssl_context(tls)
    except TLSConfigError as exc:
        raise InvalidInput(exc.field, str(exc)) from None
    return tls


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointChanges:
    """Fields to change on an endpoint; ``msgspec.UNSET`` leaves a field as it is."""

    url: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    event_types: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    retry_policy: RetryPolicy | msgspec.UnsetType | None = msgspec.UNSET
    timeout_ms: int | msgspec.UnsetType | None = msgspec.UNSET
    rate_limit_per_s: float | msgspec.UnsetType | None = msgspec.UNSET
    headers: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    auth: Auth | msgspec.UnsetType | None = msgspec.UNSET
    tls: ClientTLS | msgspec.UnsetType | None = msgspec.UNSET
    destination: SNSDestination | msgspec.UnsetType | None = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET


class EndpointService:
    def __init__(self, context: IngestContext) -> None:
        self.context = context

    async def create(
        self,
        account_id: str,
        *,
        url: str | None,
        description: str = "",
        event_types: list[str] | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout_ms: int | None = None,
        rate_limit_per_s: float | None = None,
        headers: dict[str, str] | None = None,
        auth: Auth | None = None,
        tls: ClientTLS | None = None,
        destination: SNSDestination | None = None,
        signing_secret: str | None = None,
        signature_scheme: SignatureScheme = "standard-webhooks",
        disabled: bool = False,
    ) -> tuple[Endpoint, str]:
        """A new endpoint and its signing secret (generated unless one is given)."""
        now = self.context.now_ms()
        endpoint = Endpoint(
            id=self.context.new_id("ep"),
            account_id=account_id,
            url=url or "",
            description=description[:500],
            event_types=check_event_types(event_types),
            retry_policy=retry_policy,
            timeout_ms=timeout_ms,
            rate_limit_per_s=rate_limit_per_s,
            headers=headers or {},
            auth=auth,
            tls=tls,
            destination=destination,
            signature_scheme=signature_scheme,
            disabled=disabled,
            created_at=now,
            updated_at=now,
        )
        endpoint = await self._validated(endpoint)
        secret = check_secret(signing_secret, signature_scheme)
        await self.context.storage.create_endpoint(
            endpoint, SigningSecret(secret=secret, created_at=now)
        )
        return endpoint, secret

    async def _validated(self, endpoint: Endpoint) -> Endpoint:
        """Every rule an endpoint must satisfy, checked on create and on every change."""
        if endpoint.destination is not None:
            url = check_destination_config(endpoint.destination)
            if endpoint.destination.endpoint_url is not None:
                await self.context.check_destination(
                    endpoint.destination.endpoint_url, "destination.endpoint_url"
                )
        else:
            if not endpoint.url:
                raise InvalidInput("url", "url is required (or a destination of type sns)")
            url = check_url(endpoint.url)
            await self.context.check_destination(url, "url")
        auth = check_auth(endpoint.auth)
        if isinstance(auth, OAuth2Auth):
            await self.context.check_destination(auth.token_url, "auth.token_url")
        return msgspec.structs.replace(
            endpoint,
            url=url,
            retry_policy=check_policy(endpoint.retry_policy),
            timeout_ms=check_timeout(endpoint.timeout_ms),
            rate_limit_per_s=check_rate(endpoint.rate_limit_per_s),
            headers=check_headers(endpoint.headers, auth_set=auth is not None),
            auth=auth,
            tls=check_tls(endpoint.tls),
        )

    async def get(self, account_id: str, endpoint_id: str) -> Endpoint:
        endpoint = await self.context.storage.get_endpoint(account_id, endpoint_id)
        if endpoint is None:
            raise NotFound(f"no endpoint {endpoint_id}")
        return endpoint

    async def update(self, account_id: str, endpoint_id: str, changes: EndpointChanges) -> Endpoint:
        current = await self.get(account_id, endpoint_id)
        updates: dict[str, object] = {
            name: getattr(changes, name)
            for name in EndpointChanges.__slots__
            if getattr(changes, name) is not msgspec.UNSET
        }
        if "description" in updates:
            updates["description"] = str(updates["description"])[:500]
        if not isinstance(changes.event_types, msgspec.UnsetType):
            updates["event_types"] = check_event_types(changes.event_types)
        # updated_at doubles as the config version the dispatcher caches by: it must grow.
        updates["updated_at"] = max(self.context.now_ms(), current.updated_at + 1)
        endpoint = await self._validated(msgspec.structs.replace(current, **updates))
        if not await self.context.storage.update_endpoint(endpoint):
            raise NotFound(f"no endpoint {endpoint_id}")
        return endpoint

    async def delete(self, account_id: str, endpoint_id: str) -> None:
        if not await self.context.storage.delete_endpoint(
            account_id, endpoint_id, self.context.now_ms()
        ):
            raise NotFound(f"no endpoint {endpoint_id}")

    async def page(self, account_id: str, after: str | None, limit: int) -> list[Endpoint]:
        return await self.context.storage.list_endpoints(account_id, after=after, limit=limit)

    async def signing_secrets(self, account_id: str, endpoint_id: str) -> list[SigningSecret]:
        await self.get(account_id, endpoint_id)
        return await self.context.storage.signing_secrets(endpoint_id, self.context.now_ms())

    async def rotate_secret(
        self, account_id: str, endpoint_id: str, new_secret: str | None = None
    ) -> list[SigningSecret]:
        endpoint = await self.get(account_id, endpoint_id)
        now = self.context.now_ms()
        secret = SigningSecret(
            secret=check_secret(new_secret, endpoint.signature_scheme, "key"), created_at=now
        )
        if not await self.context.storage.rotate_secret(
            account_id, endpoint_id, secret, now + SECRET_OVERLAP_MS
        ):
            raise NotFound(f"no endpoint {endpoint_id}")
        return await self.context.storage.signing_secrets(endpoint_id, now)
