"""Endpoints: create, change, delete, list; signing secrets and their rotation."""

from __future__ import annotations

import msgspec

from postback.core.errors import InvalidInput, NotFound
from postback.core.health import fresh_streak, iso
from postback.core.model import (
    ENDPOINT_CREATE_ONLY,
    ENDPOINT_SETTINGS,
    ClientTLS,
    Endpoint,
    OAuth2Auth,
    SigningSecret,
)
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
from postback.core.wire import EndpointCreate, EndpointUpdate
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


class EndpointService:
    def __init__(self, context: IngestContext) -> None:
        self.context = context

    async def create(self, account_id: str, spec: EndpointCreate) -> tuple[Endpoint, str]:
        """A new endpoint and its signing secret (generated unless ``spec`` gives one)."""
        now = self.context.now_ms()
        fields = {name: getattr(spec, name) for name in ENDPOINT_SETTINGS + ENDPOINT_CREATE_ONLY}
        endpoint = Endpoint(
            id=self.context.new_id("ep"),
            account_id=account_id,
            created_at=now,
            updated_at=now,
            **fields,
        )
        endpoint = await self._validated(
            msgspec.structs.replace(
                endpoint,
                url=spec.url or "",
                description=spec.description[:500],
                event_types=check_event_types(spec.event_types),
            )
        )
        secret = check_secret(spec.signing_secret, spec.signature_scheme)
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

    async def update(self, account_id: str, endpoint_id: str, changes: EndpointUpdate) -> Endpoint:
        """Change the fields ``changes`` sets; ``msgspec.UNSET`` leaves a field as it is."""
        current = await self.get(account_id, endpoint_id)
        updates: dict[str, object] = {
            name: getattr(changes, name)
            for name in ENDPOINT_SETTINGS
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
        if current.disabled and not endpoint.disabled:
            await self._enabled(endpoint)
        return endpoint

    async def set_enabled(self, endpoint: Endpoint) -> Endpoint:
        """Enable ``endpoint`` (a no-op when it is enabled)."""
        if not endpoint.disabled:
            return endpoint
        return await self.update(endpoint.account_id, endpoint.id, EndpointUpdate(disabled=False))

    async def _enabled(self, endpoint: Endpoint) -> None:
        """Re-enabled: a fresh failure streak (the old one must not disable it again at once),
        and the operators are told."""
        now = self.context.now_ms()
        await self.context.storage.update_health(
            [endpoint.id], lambda h: (fresh_streak(h, now), None)
        )
        if self.context.announce is not None:
            await self.context.announce(
                [
                    (
                        "endpoint.enabled",
                        {
                            "account_id": endpoint.account_id,
                            "endpoint_id": endpoint.id,
                            "enabled_at": iso(now),
                        },
                    )
                ]
            )

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
