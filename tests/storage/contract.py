"""The Storage contract: every behaviour the service relies on, written once.

Each backend subclasses ``StorageContract`` and provides a ``storage`` fixture (opened, on a
fresh database). Only the Storage interface is used here, never SQL; times are passed in.
"""

from __future__ import annotations

import asyncio
import os

import msgspec
import pytest

from postback.core.errors import IdempotencyConflict
from postback.core.health import Backlog, HealthState
from postback.core.idempotency import request_fingerprint
from postback.core.ids import make_id
from postback.core.model import (
    Account,
    ApiKey,
    Attempt,
    AttemptRecord,
    BasicAuth,
    BatchRecord,
    DeliveryState,
    Endpoint,
    EventTypeDefinition,
    LeaseOffer,
    NewMessage,
    RecipientStatus,
    SigningSecret,
)
from postback.core.policy import RetryPolicy
from postback.core.throttle import Pacing, reserve
from postback.store.base import Storage

T0 = 1_800_000_000_000  # a fixed "now" in ms
WINDOW = 24 * 3600 * 1000


def new_id(prefix: str, at: int = T0) -> str:
    return make_id(prefix, at, os.urandom(10))


def api_key(account_id: str | None, at: int = T0, name: str = "") -> ApiKey:
    return ApiKey(
        id=new_id("key", at),
        account_id=account_id,
        name=name,
        prefix="pbk_abcd",
        last4="wxyz",
        created_at=at,
    )


async def account(storage: Storage, name: str = "acme", external_id: str | None = None) -> Account:
    acct = Account(id=new_id("acc"), name=name, created_at=T0, external_id=external_id)
    assert await storage.create_account(acct, api_key(acct.id), f"hash-{acct.id}")
    return acct


async def endpoint(
    storage: Storage,
    account_id: str,
    *,
    event_types: tuple[str, ...] | None = None,
    disabled: bool = False,
    at: int = T0,
    **extra: object,
) -> Endpoint:
    ep = Endpoint(
        id=new_id("ep", at),
        account_id=account_id,
        url="https://example.com/hook",
        event_types=event_types,
        disabled=disabled,
        created_at=at,
        updated_at=at,
        **extra,  # type: ignore[arg-type]
    )
    await storage.create_endpoint(ep, SigningSecret(secret="whsec_" + "A" * 32, created_at=at))
    return ep


def message(event_type: str = "t", payload: bytes = b'{"n":1}', **extra: object) -> NewMessage:
    return NewMessage(id=new_id("msg"), event_type=event_type, payload=payload, **extra)  # type: ignore[arg-type]


def record(
    delivery_id: str,
    state: DeliveryState,
    *,
    attempt_number: int = 1,
    next_attempt_at: int | None = None,
    dead_reason: str | None = None,
    status_code: int | None = 200,
    now: int = T0,
) -> AttemptRecord:
    return AttemptRecord(
        attempt=Attempt(
            id=new_id("att", now),
            delivery_id=delivery_id,
            attempt_number=attempt_number,
            started_at=now,
            duration_ms=12.5,
            outcome="delivered" if state is DeliveryState.DELIVERED else "retry",
            status_code=status_code,
            error=None if status_code else "refused",
            response_body="ok",
        ),
        delivery_id=delivery_id,
        state=state,
        next_attempt_at=next_attempt_at,
        dead_reason=dead_reason,
        now=now,
    )


class StorageContract:
    @pytest.fixture
    def storage(self) -> Storage:
        raise NotImplementedError("each backend provides an opened storage")

    # -- accounts ------------------------------------------------------------------------------

    async def test_accounts_by_key_hash(self, storage: Storage) -> None:
        acct = await account(storage)
        found = await storage.live_key(f"hash-{acct.id}", T0)
        assert found is not None and found[1] == acct and found[0].account_id == acct.id
        assert await storage.live_key("hash-unknown", T0) is None

    async def test_accounts_by_id_or_external_id(self, storage: Storage) -> None:
        acct = await account(storage, "Customer One", external_id="plan-17")
        other = await account(storage, "Customer Two")
        assert await storage.account(acct.id) == acct
        assert await storage.account("plan-17") == acct
        assert await storage.account(other.id) == other and other.external_id is None
        assert await storage.account("plan-18") is None
        # A taken external_id stores nothing, not even the key.
        clash = Account(id=new_id("acc"), name="clash", created_at=T0, external_id="plan-17")
        assert not await storage.create_account(clash, api_key(clash.id), "hash-clash")
        assert await storage.account(clash.id) is None
        assert await storage.live_key("hash-clash", T0) is None
        # Many accounts may have no external_id.
        assert await storage.create_account(Account(id=new_id("acc"), name="x", created_at=T0))

    async def test_accounts_listed_by_id_and_searched(self, storage: Storage) -> None:
        made = [
            await account(storage, f"Shop {n}", external_id=f"EXT-{n}" if n % 2 else None)
            for n in range(5)
        ]
        first = await storage.list_accounts(query=None, after=None, limit=3)
        rest = await storage.list_accounts(query=None, after=first[-1].id, limit=3)
        assert first + rest == sorted(made, key=lambda a: a.id)
        # The query is lowercase; it matches part of the name or of the external id.
        by_ext = await storage.list_accounts(query="ext-3", after=None, limit=10)
        assert by_ext == [made[3]]
        by_name = await storage.list_accounts(query="shop 4", after=None, limit=10)
        assert by_name == [made[4]]
        assert await storage.list_accounts(query="shop", after=None, limit=10) == sorted(
            made, key=lambda a: a.id
        )
        assert await storage.list_accounts(query="%", after=None, limit=10) == []

    async def test_platform_keys_have_no_account(self, storage: Storage) -> None:
        key = api_key(None, name="platform")
        await storage.create_api_key(key, "hash-platform")
        assert key.platform
        assert await storage.live_key("hash-platform", T0) == (key, None)
        assert await storage.get_api_key(key.id) == key

    async def test_api_keys_listed_per_account_and_revoked(self, storage: Storage) -> None:
        one = await account(storage, "one")
        two = await account(storage, "two")
        extra = api_key(one.id, at=T0 + 1, name="second")
        await storage.create_api_key(extra, "hash-extra")
        platform = api_key(None, at=T0 + 2)
        await storage.create_api_key(platform, "hash-platform")
        keys_of_one = await storage.list_api_keys(one.id, after=None, limit=10)
        assert [k.account_id for k in keys_of_one] == [one.id, one.id]
        assert extra in keys_of_one
        everything = await storage.list_api_keys(None, after=None, limit=10)
        assert len(everything) == 4 and platform in everything
        assert {k.account_id for k in everything} == {one.id, two.id, None}
        page = await storage.list_api_keys(None, after=everything[1].id, limit=10)
        assert page == everything[2:]

        assert await storage.revoke_api_key(extra.id, T0 + 10)
        assert await storage.live_key("hash-extra", T0 + 9) is not None
        assert await storage.live_key("hash-extra", T0 + 10) is None
        assert not await storage.revoke_api_key(extra.id, T0 + 20)  # never pushed back
        assert await storage.revoke_api_key(extra.id, T0 + 5)  # brought forward
        stored = await storage.get_api_key(extra.id)
        assert stored is not None and stored.revoked_at == T0 + 5
        assert not await storage.revoke_api_key("key_unknown", T0)

    async def test_rotation_stores_the_new_key_and_revokes_the_old_at_once(
        self, storage: Storage
    ) -> None:
        acct = await account(storage)
        [old] = await storage.list_api_keys(acct.id, after=None, limit=10)
        new = api_key(acct.id, at=T0 + 1)
        assert await storage.rotate_api_key(old.id, new, "hash-new", T0 + 100)
        assert await storage.live_key(f"hash-{acct.id}", T0 + 99) is not None  # grace
        assert await storage.live_key(f"hash-{acct.id}", T0 + 100) is None
        assert await storage.live_key("hash-new", T0 + 100) == (new, acct)
        # An old key cannot be rotated twice once it is gone; nothing is stored then.
        again = api_key(acct.id, at=T0 + 2)
        assert not await storage.rotate_api_key(old.id, again, "hash-again", T0 + 100)
        assert await storage.get_api_key(again.id) is None

    # -- endpoints -----------------------------------------------------------------------------

    async def test_endpoint_round_trip_and_update(self, storage: Storage) -> None:
        acct = await account(storage)
        ep = await endpoint(
            storage,
            acct.id,
            event_types=("a", "b"),
            retry_policy=RetryPolicy(schedule_s=(1.0, 2.0)),
            headers={"X-A": "1"},
            auth=BasicAuth(username="u", password="p"),
            timeout_ms=1500,
            rate_limit_per_s=5.0,
        )
        assert await storage.get_endpoint(acct.id, ep.id) == ep
        assert await storage.get_endpoint(None, ep.id) == ep
        other = await account(storage, "other")
        assert await storage.get_endpoint(other.id, ep.id) is None
        changed = Endpoint(
            **{
                **_fields(ep),
                "url": "https://example.com/new",
                "event_types": None,
                "updated_at": T0 + 5,
            }
        )
        assert await storage.update_endpoint(changed)
        assert await storage.get_endpoint(acct.id, ep.id) == changed

    async def test_endpoint_list_pages_by_id(self, storage: Storage) -> None:
        acct = await account(storage)
        made = [await endpoint(storage, acct.id, at=T0 + i) for i in range(5)]
        first = await storage.list_endpoints(acct.id, after=None, limit=3)
        rest = await storage.list_endpoints(acct.id, after=first[-1].id, limit=3)
        assert [e.id for e in first + rest] == sorted(e.id for e in made)

    async def test_delete_endpoint_kills_its_unfinished_deliveries(self, storage: Storage) -> None:
        acct = await account(storage)
        ep = await endpoint(storage, acct.id)
        [pending] = await storage.ingest(acct.id, [message()], T0, WINDOW)
        [leased] = await storage.ingest(acct.id, [message()], T0 + 1, WINDOW)
        claimed = await storage.claim(T0 + 1, 1, 60_000)
        assert claimed[0].delivery_id == pending.deliveries[0].id
        assert await storage.delete_endpoint(acct.id, ep.id, T0 + 2)
        assert await storage.get_endpoint(acct.id, ep.id) is None
        assert not await storage.delete_endpoint(acct.id, ep.id, T0 + 3)
        for result in (pending, leased):
            d = await storage.get_delivery(acct.id, result.deliveries[0].id)
            assert d is not None and d.state is DeliveryState.DEAD
            assert d.dead_reason == "endpoint deleted"
        # The in-flight attempt finishing later does not bring it back.
        await storage.record([record(claimed[0].delivery_id, DeliveryState.DELIVERED, now=T0 + 4)])
        d = await storage.get_delivery(acct.id, claimed[0].delivery_id)
        assert d is not None and d.state is DeliveryState.DEAD

    async def test_callback_endpoint_is_find_or_create(self, storage: Storage) -> None:
        acct = await account(storage)
        url = "https://example.com/per-batch"

        def template() -> Endpoint:
            return Endpoint(
                id=new_id("ep"),
                account_id=acct.id,
                url=url,
                event_types=(),
                is_callback_url=True,
                created_at=T0,
                updated_at=T0,
            )

        secret = SigningSecret(secret="whsec_" + "B" * 32, created_at=T0)
        first = await storage.callback_endpoint(acct.id, url, template(), secret)
        again = await storage.callback_endpoint(acct.id, url, template(), secret)
        assert first.id == again.id and first.is_callback_url
        [plain] = await storage.ingest(acct.id, [message()], T0, WINDOW)
        assert plain.deliveries == []  # not part of normal fan-out
        [named] = await storage.ingest(
            acct.id, [message(callback_endpoint_id=first.id)], T0, WINDOW
        )
        assert [d.endpoint_id for d in named.deliveries] == [first.id]

    async def test_callback_url_replaces_the_subscribed_endpoints_unless_fanout(
        self, storage: Storage
    ) -> None:
        acct = await account(storage)
        subscribed = await endpoint(storage, acct.id)  # every event type
        callback = await storage.callback_endpoint(
            acct.id,
            "https://example.com/override",
            Endpoint(
                id=new_id("ep"),
                account_id=acct.id,
                url="https://example.com/override",
                event_types=(),
                is_callback_url=True,
                created_at=T0,
                updated_at=T0,
            ),
            SigningSecret(secret="whsec_" + "D" * 32, created_at=T0),
        )
        alone, both, plain = await storage.ingest(
            acct.id,
            [
                message(callback_endpoint_id=callback.id),
                message(callback_endpoint_id=callback.id, fanout=True),
                message(),
            ],
            T0,
            WINDOW,
        )
        assert [d.endpoint_id for d in alone.deliveries] == [callback.id]
        assert sorted(d.endpoint_id for d in both.deliveries) == sorted(
            [subscribed.id, callback.id]
        )
        assert [d.endpoint_id for d in plain.deliveries] == [subscribed.id]

    async def test_secret_rotation_overlap(self, storage: Storage) -> None:
        acct = await account(storage)
        ep = await endpoint(storage, acct.id)
        new = SigningSecret(secret="whsec_" + "C" * 32, created_at=T0 + 10)
        assert await storage.rotate_secret(acct.id, ep.id, new, old_expires_at=T0 + 1000)
        during = await storage.signing_secrets(ep.id, T0 + 500)
        assert [s.secret for s in during] == [new.secret, "whsec_" + "A" * 32]
        assert during[1].expires_at == T0 + 1000
        after = await storage.signing_secrets(ep.id, T0 + 1000)
        assert [s.secret for s in after] == [new.secret]
        other = await account(storage, "other")
        assert not await storage.rotate_secret(other.id, ep.id, new, T0)
        rotated = await storage.get_endpoint(acct.id, ep.id)
        assert rotated is not None and rotated.updated_at > ep.updated_at  # caches notice

    # -- ingest --------------------------------------------------------------------------------

    async def test_fan_out_follows_subscriptions(self, storage: Storage) -> None:
        acct = await account(storage)
        everything = await endpoint(storage, acct.id)
        mo_only = await endpoint(storage, acct.id, event_types=("mo_text",))
        await endpoint(storage, acct.id, disabled=True)
        payload = b'{"type": "mo_text",  "body":"exact bytes"}'
        [mo, dr] = await storage.ingest(
            acct.id, [message("mo_text", payload), message("dr")], T0, WINDOW
        )
        assert {d.endpoint_id for d in mo.deliveries} == {everything.id, mo_only.id}
        assert {d.endpoint_id for d in dr.deliveries} == {everything.id}
        stored = await storage.get_message(acct.id, mo.message_id)
        assert stored is not None and stored.payload == payload
        assert all(d.state is DeliveryState.PENDING for d in mo.deliveries)

    async def test_idempotency_window_and_scope(self, storage: Storage) -> None:
        acct = await account(storage)
        other = await account(storage, "other")
        await endpoint(storage, acct.id)
        [first] = await storage.ingest(acct.id, [message(idempotency_key="k")], T0, WINDOW)
        [dup] = await storage.ingest(acct.id, [message(idempotency_key="k")], T0 + 10, WINDOW)
        assert dup.duplicate and dup.message_id == first.message_id
        assert [d.id for d in dup.deliveries] == [d.id for d in first.deliveries]
        [elsewhere] = await storage.ingest(other.id, [message(idempotency_key="k")], T0, WINDOW)
        assert not elsewhere.duplicate
        [later] = await storage.ingest(
            acct.id, [message(idempotency_key="k")], T0 + WINDOW + 1, WINDOW
        )
        assert not later.duplicate and later.message_id != first.message_id
        a, b = await storage.ingest(
            acct.id, [message(idempotency_key="j"), message(idempotency_key="j")], T0, WINDOW
        )
        assert b.duplicate and b.message_id == a.message_id
        assert len(await storage.list_deliveries(acct.id, limit=100)) == 3

    async def test_idempotency_key_reused_for_another_request_conflicts(
        self, storage: Storage
    ) -> None:
        acct = await account(storage)
        await endpoint(storage, acct.id)
        same = request_fingerprint("t", b'{"n":1}', None)
        [first] = await storage.ingest(
            acct.id, [message(idempotency_key="k", fingerprint=same)], T0, WINDOW
        )
        [again] = await storage.ingest(
            acct.id, [message(idempotency_key="k", fingerprint=same)], T0 + 5, WINDOW
        )
        assert again.duplicate and again.message_id == first.message_id
        other = request_fingerprint("t", b'{"n":2}', None)
        # In a batch: the conflict names its position, and the whole batch is refused.
        with pytest.raises(IdempotencyConflict) as refused:
            await storage.ingest(
                acct.id,
                [message(idempotency_key="fresh"), message(idempotency_key="k", fingerprint=other)],
                T0 + 10,
                WINDOW,
            )
        assert refused.value.index == 1 and refused.value.key == "k"
        assert len(await storage.list_deliveries(acct.id, limit=100)) == 1
        [fresh] = await storage.ingest(acct.id, [message(idempotency_key="fresh")], T0 + 11, WINDOW)
        assert not fresh.duplicate  # the refused batch left no trace of its first key
        # Not compared: a key stored without a fingerprint (before migration 0007), a
        # submission that asks for none, and a key whose window has passed.
        [legacy] = await storage.ingest(acct.id, [message(idempotency_key="old")], T0, WINDOW)
        [reuse] = await storage.ingest(
            acct.id, [message(idempotency_key="old", fingerprint=other)], T0 + 12, WINDOW
        )
        assert reuse.duplicate and reuse.message_id == legacy.message_id
        [unchecked] = await storage.ingest(acct.id, [message(idempotency_key="k")], T0 + 13, WINDOW)
        assert unchecked.duplicate and unchecked.message_id == first.message_id
        [later] = await storage.ingest(
            acct.id, [message(idempotency_key="k", fingerprint=other)], T0 + WINDOW + 1, WINDOW
        )
        assert not later.duplicate
        with pytest.raises(IdempotencyConflict):  # the new fingerprint is the one kept
            await storage.ingest(
                acct.id, [message(idempotency_key="k", fingerprint=same)], T0 + WINDOW + 2, WINDOW
            )

    # -- claim, record, release ----------------------------------------------------------------

    async def test_claim_takes_due_work_once_under_a_lease(self, storage: Storage) -> None:
        acct = await account(storage)
        ep = await endpoint(storage, acct.id)
        [early] = await storage.ingest(acct.id, [message(payload=b'{"n":1}')], T0, WINDOW)
        [late] = await storage.ingest(acct.id, [message(payload=b'{"n":2}')], T0 + 100, WINDOW)
        assert await storage.claim(T0 - 1, 10, 1000) == []
        claimed = await storage.claim(T0 + 100, 10, 1000)
        assert [c.delivery_id for c in claimed] == [early.deliveries[0].id, late.deliveries[0].id]
        first = claimed[0]
        assert (first.payload, first.event_type, first.attempt_count, first.schedule_base) == (
            b'{"n":1}',
            "t",
            0,
            0,
        )
        assert first.message_id == early.message_id and first.endpoint_id == ep.id
        assert first.endpoint_updated_at == ep.updated_at
        assert await storage.claim(T0 + 500, 10, 1000) == []  # leased
        assert await storage.expire_leases(T0 + 999) == 0
        assert await storage.expire_leases(T0 + 1100) == 2
        again = await storage.claim(T0 + 1100, 10, 1000)
        assert [c.message_id for c in again] == [early.message_id, late.message_id]

    async def test_claim_respects_exclusions_allowances_and_disabled(
        self, storage: Storage
    ) -> None:
        acct = await account(storage)
        a = await endpoint(storage, acct.id, event_types=("a",))
        b = await endpoint(storage, acct.id, event_types=("b",))
        off = await endpoint(storage, acct.id, event_types=("off",))
        await storage.ingest(acct.id, [message("a") for _ in range(5)], T0, WINDOW)
        await storage.ingest(acct.id, [message("b") for _ in range(5)], T0, WINDOW)
        await storage.ingest(acct.id, [message("off")], T0, WINDOW)
        await storage.update_endpoint(
            Endpoint(**{**_fields(off), "disabled": True, "updated_at": T0 + 1})
        )
        only_b = await storage.claim(T0, 10, 1000, exclude_endpoints=[a.id])
        assert {c.endpoint_id for c in only_b} == {b.id} and len(only_b) == 5
        capped = await storage.claim(T0, 10, 1000, allowance={a.id: 2}, per_endpoint=3, holder="w1")
        assert len(capped) == 2 and {c.endpoint_id for c in capped} == {a.id}
        assert {c.holders for c in capped} == {1}
        # The share holds fleet-wide: w1 has 2 of a's share of 3 in flight, so a second
        # holder gets its part, ceil(3 / 2) = 2, and learns that a has two holders.
        rest = await storage.claim(T0, 10, 1000, per_endpoint=3, holder="w2")
        assert len(rest) == 2 and {(c.endpoint_id, c.holders) for c in rest} == {(a.id, 2)}

    async def test_a_claim_takes_endpoints_in_due_order_each_to_its_room_until_full(
        self, storage: Storage
    ) -> None:
        """Five endpoints, due one after the other: the claim takes each oldest first, up to
        its room (none from the one with no room), until its limit is reached; the next claim
        finds what the endpoints it stopped in or never reached still had."""
        acct = await account(storage)
        eps = [await endpoint(storage, acct.id, event_types=(f"e{i}",)) for i in range(5)]
        counts = [2, 6, 4, 1, 3]
        ids: list[list[str]] = []
        for i, count in enumerate(counts):
            stored = await storage.ingest(
                acct.id, [message(f"e{i}") for _ in range(count)], T0 + i, WINDOW
            )
            ids.append([r.deliveries[0].id for r in stored])
        rooms = {eps[0].id: 5, eps[1].id: 3, eps[2].id: 10, eps[3].id: 10, eps[4].id: 0}
        claimed = await storage.claim(T0 + 10, 7, 60_000, allowance=rooms, per_endpoint=100)
        assert [c.delivery_id for c in claimed] == ids[0] + ids[1][:3] + ids[2][:2]
        rest = await storage.claim(T0 + 10, 100, 60_000, per_endpoint=100)
        assert [c.delivery_id for c in rest] == ids[1][3:] + ids[2][2:] + ids[3] + ids[4]

    async def test_share_holds_across_claimers_and_due_time_follows_work(
        self, storage: Storage
    ) -> None:
        acct = await account(storage)
        ep = await endpoint(storage, acct.id)
        await storage.ingest(acct.id, [message() for _ in range(10)], T0, WINDOW)
        assert await storage.next_due_at() == T0
        first = await storage.claim(T0, 100, 60_000, per_endpoint=4, holder="w1")
        # Another worker takes its part of the share, ceil(4 / 2) = 2, and no more.
        second = await storage.claim(T0, 100, 60_000, per_endpoint=4, holder="w2")
        assert len(first) == 4 and len(second) == 2
        assert {c.holders for c in second} == {2}
        # A third: ceil(4 / 3) = 2. Until the first learns of the others at its next claim, in
        # flight may pass the share by the newcomers' parts (see core.fanout.fleet_room).
        third = await storage.claim(T0, 100, 60_000, per_endpoint=4, holder="w3")
        assert len(third) == 2 and {c.holders for c in third} == {3}
        # The first, holding its 4, has no room for more: its part is 2 now.
        own = {ep.id: 4}
        assert (
            await storage.claim(T0, 100, 60_000, per_endpoint=4, own_in_flight=own, holder="w1")
            == []
        )
        # Once 3 of its 4 are sent, their results waiting to be recorded, it sends 1: one more
        # fits its part (2). Those 3 hold no slot at the endpoint.
        again = await storage.claim(
            T0, 100, 60_000, per_endpoint=4, own_in_flight=own, own_sending={ep.id: 1}, holder="w1"
        )
        assert len(again) == 1 and {c.holders for c in again} == {3}
        first += again
        await storage.record([delivered_record(c.delivery_id, T0) for c in second + third])
        assert await storage.next_due_at(exclude_endpoints=[ep.id]) is None
        # A retry scheduled for later makes the endpoint due then, not now.
        await storage.record(
            [
                AttemptRecord(
                    attempt=Attempt(
                        id=f"att_{c.delivery_id}",
                        delivery_id=c.delivery_id,
                        attempt_number=1,
                        started_at=T0,
                        duration_ms=1.0,
                        outcome="retry",
                        status_code=503,
                    ),
                    delivery_id=c.delivery_id,
                    state=DeliveryState.PENDING,
                    next_attempt_at=T0 + 10**9,
                    dead_reason=None,
                    now=T0 + 1,
                )
                for c in first
            ]
        )
        rest = await storage.claim(T0 + 2, 100, 60_000, per_endpoint=100)
        assert len(rest) == 1
        assert await storage.claim(T0 + 3, 100, 60_000, per_endpoint=100) == []
        assert await storage.next_due_at() == T0 + 10**9
        later = await storage.claim(T0 + 10**9, 100, 60_000, per_endpoint=100)
        assert sorted(c.delivery_id for c in later) == sorted(c.delivery_id for c in first)

    async def test_each_holder_leases_its_reserve_beyond_its_part_of_the_share(
        self, storage: Storage
    ) -> None:
        acct = await account(storage)
        ep = await endpoint(storage, acct.id)
        await storage.ingest(acct.id, [message() for _ in range(30)], T0, WINDOW)
        # Alone with the endpoint: its share (4) and the prefetch (3) beyond it.
        first = await storage.claim(T0, 100, 60_000, per_endpoint=4, prefetch=3, holder="w1")
        assert len(first) == 7 and {c.holders for c in first} == {1}
        # Another worker is not kept away by the first one's lead: it gets its part of the
        # share, ceil(4 / 2) = 2, and its own prefetch beyond it.
        second = await storage.claim(T0, 100, 60_000, per_endpoint=4, prefetch=3, holder="w2")
        assert len(second) == 5 and {c.holders for c in second} == {2}
        # The first, holding 3 of its 7 after 4 were sent, now tops up to its part and lead.
        await storage.record([delivered_record(c.delivery_id, T0 + 1) for c in first[:4]])
        mine = {ep.id: 3}
        again = await storage.claim(
            T0 + 2, 100, 60_000, per_endpoint=4, prefetch=3, own_in_flight=mine, holder="w1"
        )
        assert len(again) == 2 and {c.holders for c in again} == {2}
        # Once the second holds nothing, the first has the whole share again (holding 5 of
        # its 4 + 3: its own count allows 2 more).
        await storage.record([delivered_record(c.delivery_id, T0 + 3) for c in second])
        alone = await storage.claim(
            T0 + 4,
            100,
            60_000,
            per_endpoint=4,
            prefetch=3,
            own_in_flight={ep.id: 5},
            allowance={ep.id: 2},
            holder="w1",
        )
        assert len(alone) == 2 and {c.holders for c in alone} == {1}

    async def test_each_endpoint_leases_ahead_by_its_own_reserve(self, storage: Storage) -> None:
        acct = await account(storage)
        fast = await endpoint(storage, acct.id)
        slow = await endpoint(storage, acct.id)
        await storage.ingest(acct.id, [message() for _ in range(20)], T0, WINDOW)
        reserves = {fast.id: 5, slow.id: 1}
        first = await storage.claim(
            T0, 100, 60_000, per_endpoint=2, prefetch=3, reserves=reserves, holder="w1"
        )
        taken = {ep: sum(1 for c in first if c.endpoint_id == ep) for ep in (fast.id, slow.id)}
        assert taken == {fast.id: 7, slow.id: 3}
        # Another worker: its part of each share, ceil(2 / 2) = 1, and its own reserves.
        # (the slow one, not in its reserves, gets the prefetch).
        second = await storage.claim(
            T0, 100, 60_000, per_endpoint=2, prefetch=3, reserves={fast.id: 5}, holder="w2"
        )
        taken = {ep: sum(1 for c in second if c.endpoint_id == ep) for ep in (fast.id, slow.id)}
        assert taken == {fast.id: 6, slow.id: 4}

    async def test_renewed_leases_outlive_their_first_term(self, storage: Storage) -> None:
        acct = await account(storage)
        await endpoint(storage, acct.id)
        await storage.ingest(acct.id, [message() for _ in range(3)], T0, WINDOW)
        held = await storage.claim(T0, 100, 1_000)
        assert len(held) == 3
        await storage.record([delivered_record(held[0].delivery_id, T0 + 1)])
        await storage.renew_leases([c.delivery_id for c in held], T0 + 5_000)
        assert await storage.expire_leases(T0 + 2_000) == 0  # renewed: still held
        assert await storage.expire_leases(T0 + 6_000) == 2  # the settled one stays settled
        states = {
            c.delivery_id: (await storage.get_delivery(acct.id, c.delivery_id)).state for c in held
        }
        assert states[held[0].delivery_id] is DeliveryState.DELIVERED
        assert {states[c.delivery_id] for c in held[1:]} == {DeliveryState.PENDING}

    async def test_ingest_leases_what_the_local_dispatcher_can_take(self, storage: Storage) -> None:
        acct = await account(storage)
        known = await endpoint(storage, acct.id, event_types=("t",))
        unknown = await endpoint(storage, acct.id, event_types=("t",))
        offer = LeaseOffer(lease_ms=60_000, total=100, share=3, room={known.id: 3})
        results = await storage.ingest(
            acct.id, [message("t") for _ in range(5)], T0, WINDOW, lease=offer
        )
        leased = [c for r in results for c in r.leased]
        # Only endpoints the dispatcher knows, only up to its room: the rest wait for claims.
        assert len(leased) == 3 and {c.endpoint_id for c in leased} == {known.id}
        assert all(c.payload == b'{"n":1}' and c.attempt_count == 0 for c in leased)
        # The same dispatcher's claim: what it leased at ingest is its own, its room is spent.
        claimed = await storage.claim(
            T0, 100, 60_000, per_endpoint=3, own_in_flight={known.id: 3}, allowance={known.id: 0}
        )
        assert sorted(c.endpoint_id for c in claimed) == [unknown.id] * 3
        # Another process: its part of the known endpoint's share, ceil(5 / 2) = 3, of the 2 left.
        other = await storage.claim(T0, 100, 60_000, per_endpoint=5, holder="w2")
        assert [(c.endpoint_id, c.holders) for c in other if c.endpoint_id == known.id] == [
            (known.id, 2)
        ] * 2

    async def test_record_settles_and_keeps_attempts(self, storage: Storage) -> None:
        acct = await account(storage)
        await endpoint(storage, acct.id)
        results = await storage.ingest(acct.id, [message() for _ in range(3)], T0, WINDOW)
        ids = [r.deliveries[0].id for r in results]
        await storage.claim(T0, 10, 60_000)
        await storage.record(
            [
                record(ids[0], DeliveryState.DELIVERED, now=T0 + 5),
                record(ids[1], DeliveryState.PENDING, next_attempt_at=T0 + 5000, status_code=503),
                record(
                    ids[2],
                    DeliveryState.DEAD,
                    dead_reason="permanent failure: HTTP 404",
                    status_code=404,
                ),
            ]
        )
        delivered, pending, dead = [await storage.get_delivery(acct.id, i) for i in ids]
        assert delivered is not None and delivered.state is DeliveryState.DELIVERED
        assert delivered.attempt_count == 1 and delivered.last_status_code == 200
        assert pending is not None and pending.next_attempt_at == T0 + 5000
        assert pending.state is DeliveryState.PENDING and pending.last_status_code == 503
        assert dead is not None and dead.dead_reason == "permanent failure: HTTP 404"
        [attempt] = await storage.list_attempts(acct.id, ids[1], after=None, limit=10)
        assert (attempt.status_code, attempt.duration_ms, attempt.response_body) == (
            503,
            12.5,
            "ok",
        )
        assert await storage.next_due_at() == T0 + 5000
        assert await storage.claim(T0 + 4999, 10, 1000) == []
        [retry] = await storage.claim(T0 + 5000, 10, 1000)
        assert retry.delivery_id == ids[1] and retry.attempt_count == 1
        counts = await storage.count_by_state(acct.id)
        assert counts == {"delivered": 1, "delivering": 1, "dead": 1}

    async def test_payloads_and_receiver_text_are_stored_exactly(self, storage: Storage) -> None:
        """Whatever way a backend writes rows in bulk (SQLite: one JSON array per statement),
        payload bytes and a receiver's text come back exactly, including what JSON text cannot
        carry as it is (bytes that are not UTF-8 fall back to row-by-row writes)."""
        acct = await account(storage)
        await endpoint(storage, acct.id)
        payloads = [
            b'{"s":"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\u0000 \\" \xe2\x80\xa8"}',
            b'{"n":1}',
        ]
        for batch in ([payloads[0], payloads[1]], [b"\xff\xfe not UTF-8", payloads[1]]):
            results = await storage.ingest(acct.id, [message(payload=p) for p in batch], T0, WINDOW)
            for result, payload in zip(results, batch, strict=True):
                stored = await storage.get_message(acct.id, result.message_id)
                assert stored is not None and stored.payload == payload
        claimed = await storage.claim(T0, 10, 60_000)
        texts = ['h\u00e9 \ufffd \u2028 \\u0000 "quoted"', "plain"]
        await storage.record(
            [
                msgspec.structs.replace(
                    r, attempt=msgspec.structs.replace(r.attempt, response_body=text, error=text)
                )
                for c, text in zip(claimed, texts * len(claimed), strict=False)
                for r in [record(c.delivery_id, DeliveryState.DEAD, status_code=400)]
            ]
        )
        for c, text in zip(claimed, texts * len(claimed), strict=False):
            [attempt] = await storage.list_attempts(acct.id, c.delivery_id, after=None, limit=5)
            assert (attempt.response_body, attempt.error) == (text, text)
            delivery = await storage.get_delivery(acct.id, c.delivery_id)
            assert delivery is not None and delivery.state is DeliveryState.DEAD
            assert delivery.last_error == text

    async def test_release_hands_back_unattempted(self, storage: Storage) -> None:
        acct = await account(storage)
        await endpoint(storage, acct.id)
        [result] = await storage.ingest(acct.id, [message()], T0, WINDOW)
        [claimed] = await storage.claim(T0, 1, 60_000)
        await storage.release([claimed.delivery_id], T0 + 3000)
        d = await storage.get_delivery(acct.id, claimed.delivery_id)
        assert d is not None and d.state is DeliveryState.PENDING and d.next_attempt_at == T0 + 3000
        assert d.attempt_count == 0 and result.deliveries[0].id == d.id

    # -- listing, isolation, replay ------------------------------------------------------------

    async def test_list_filters_and_pagination(self, storage: Storage) -> None:
        acct = await account(storage)
        a = await endpoint(storage, acct.id, event_types=("a",))
        await endpoint(storage, acct.id, event_types=("b",))
        for i in range(4):
            await storage.ingest(acct.id, [message("a"), message("b")], T0 + i * 10, WINDOW)
        newest_first = await storage.list_deliveries(acct.id, limit=100)
        assert [d.id for d in newest_first] == sorted((d.id for d in newest_first), reverse=True)
        assert len(await storage.list_deliveries(acct.id, endpoint_id=a.id)) == 4
        window = await storage.list_deliveries(acct.id, since=T0 + 10, until=T0 + 30)
        assert len(window) == 4
        page1 = await storage.list_deliveries(acct.id, limit=3)
        page2 = await storage.list_deliveries(acct.id, limit=10, after=page1[-1].id)
        assert [d.id for d in page1 + page2] == [d.id for d in newest_first]
        one = newest_first[0].message_id
        assert {d.message_id for d in await storage.list_deliveries(acct.id, message_id=one)} == {
            one
        }
        assert await storage.list_deliveries(acct.id, state=DeliveryState.DEAD) == []

    async def test_tenant_isolation(self, storage: Storage) -> None:
        acct = await account(storage)
        other = await account(storage, "other")
        await endpoint(storage, acct.id)
        [result] = await storage.ingest(acct.id, [message()], T0, WINDOW)
        delivery_id = result.deliveries[0].id
        assert await storage.get_message(other.id, result.message_id) is None
        assert await storage.get_delivery(other.id, delivery_id) is None
        assert await storage.list_deliveries(other.id) == []
        assert await storage.list_attempts(other.id, delivery_id, after=None, limit=10) == []
        assert await storage.list_endpoints(other.id, after=None, limit=10) == []
        assert await storage.replay(other.id, T0, delivery_id=delivery_id) == []

    async def test_replay_only_dead_and_restarts_the_schedule(self, storage: Storage) -> None:
        acct = await account(storage)
        ep = await endpoint(storage, acct.id)
        results = await storage.ingest(acct.id, [message() for _ in range(3)], T0, WINDOW)
        ids = [r.deliveries[0].id for r in results]
        await storage.claim(T0, 10, 60_000)
        await storage.record(
            [
                record(
                    ids[0], DeliveryState.DEAD, attempt_number=4, dead_reason="x", status_code=500
                ),
                record(
                    ids[1], DeliveryState.DEAD, attempt_number=1, dead_reason="y", status_code=400
                ),
                record(ids[2], DeliveryState.DELIVERED),
            ]
        )
        assert await storage.replay(acct.id, T0 + 50, delivery_id=ids[2]) == []
        assert await storage.replay(acct.id, T0 + 50, delivery_id=ids[0]) == [ids[0]]
        rest = await storage.replay(acct.id, T0 + 60, endpoint_id=ep.id)
        assert rest == [ids[1]]
        claimed = {c.delivery_id: c for c in await storage.claim(T0 + 60, 10, 1000)}
        assert claimed[ids[0]].attempt_count == 4 and claimed[ids[0]].schedule_base == 4
        assert claimed[ids[1]].schedule_base == 1
        assert claimed[ids[0]].message_id == results[0].message_id  # same webhook-id
        await storage.delete_endpoint(acct.id, ep.id, T0 + 70)
        assert await storage.replay(acct.id, T0 + 80, endpoint_id=ep.id) == []

    async def test_event_type_definitions_per_account(self, storage: Storage) -> None:
        acct = await account(storage)
        other = await account(storage, "other")
        definition = EventTypeDefinition(
            name="order.updated", schema='{"type":"object"}', description="d", created_at=T0
        )
        assert await storage.create_event_type(acct.id, definition)
        assert not await storage.create_event_type(acct.id, definition)  # names are unique
        assert await storage.create_event_type(other.id, definition)  # per account
        assert await storage.event_type(acct.id, "order.updated") == definition
        assert await storage.event_type(acct.id, "nope") is None
        assert await storage.event_types(acct.id) == [definition]

    async def test_ordered_deliveries_wait_for_earlier_ones(self, storage: Storage) -> None:
        acct = await account(storage)
        await endpoint(storage, acct.id)
        first, second = await storage.ingest(
            acct.id, [message(ordering_key="b/1"), message(ordering_key="b/1")], T0, WINDOW
        )
        [other] = await storage.ingest(acct.id, [message(ordering_key="b/2")], T0, WINDOW)
        claimed = await storage.claim(T0, 10, 60_000)
        assert {c.delivery_id for c in claimed} == {
            first.deliveries[0].id,
            other.deliveries[0].id,
        }  # the second of b/1 waits while the first is in flight
        await storage.record(
            [
                record(
                    first.deliveries[0].id,
                    DeliveryState.PENDING,
                    next_attempt_at=T0 + 1000,
                    status_code=503,
                )
            ]
        )
        assert await storage.claim(T0 + 10, 10, 60_000) == []  # still waiting: first retries
        [retry] = await storage.claim(T0 + 1000, 10, 60_000)
        assert retry.delivery_id == first.deliveries[0].id
        await storage.record([record(retry.delivery_id, DeliveryState.DELIVERED, attempt_number=2)])
        [then] = await storage.claim(T0 + 1000, 10, 60_000)
        assert then.delivery_id == second.deliveries[0].id

    async def test_batches_keep_settings_and_latest_statuses(self, storage: Storage) -> None:
        acct = await account(storage)
        batch = BatchRecord(
            batch_id="b1",
            mode="summary",
            expected_recipients=2,
            report_deadline=T0 + 5000,
            created_at=T0,
        )
        stored, statuses = await storage.update_batch(
            acct.id,
            batch,
            ["1", "2"],
            [RecipientStatus(recipient="1", status="Dispatched", code=0)],
        )
        assert stored == batch and statuses == {"1": ("Dispatched", 0), "2": (None, None)}
        changed = BatchRecord(batch_id="b1", mode="full", report_deadline=T0 + 9000)
        stored, statuses = await storage.update_batch(
            acct.id, changed, [], [RecipientStatus(recipient="1", status="Delivered", code=0)]
        )
        assert stored == batch  # the first call's settings stay
        assert statuses["1"] == ("Delivered", 0)
        assert await storage.due_batch_reports(T0 + 4999, 10) == []
        assert await storage.due_batch_reports(T0 + 5000, 10) == [(acct.id, "b1")]
        assert await storage.mark_batch_reported(acct.id, "b1")
        assert not await storage.mark_batch_reported(acct.id, "b1")  # exactly once
        assert await storage.due_batch_reports(T0 + 5000, 10) == []
        other = await account(storage, "other")
        assert await storage.batch_statuses(other.id, "b1") is None

    # -- pacing, retention, concurrency --------------------------------------------------------

    async def test_pacing_is_shared_and_excludes_paused_endpoints(self, storage: Storage) -> None:
        acct = await account(storage)
        ep = await endpoint(storage, acct.id)

        def take_two(p: Pacing) -> tuple[Pacing, list[int]]:
            updated, slots = reserve(p, T0, 2, 10.0)
            return updated, slots

        assert await storage.pace(ep.id, take_two) == [T0, T0 + 100]
        assert await storage.pace(ep.id, take_two) == [T0 + 200, T0 + 300]  # state persisted
        await storage.pace(
            ep.id, lambda p: (Pacing(paused_until_ms=T0 + 5000, current_rate=2.0), None)
        )
        await storage.ingest(acct.id, [message()], T0, WINDOW)
        assert await storage.claim(T0 + 10, 10, 1000) == []  # paused for everyone
        [claimed] = await storage.claim(T0 + 5000, 10, 1000)
        assert claimed.paced  # a 429 backoff is in force for this endpoint

    async def test_purge_removes_old_finished_messages_only(self, storage: Storage) -> None:
        acct = await account(storage)
        await endpoint(storage, acct.id)
        old = await storage.ingest(acct.id, [message(), message()], T0, WINDOW)
        new = await storage.ingest(acct.id, [message()], T0 + 100_000, WINDOW)
        await storage.claim(T0, 1, 60_000)
        await storage.record([record(old[0].deliveries[0].id, DeliveryState.DELIVERED)])
        # old[1] is still pending: never purged, however old.
        assert await storage.purge(T0 + 50_000, 100) == 1
        assert await storage.get_message(acct.id, old[0].message_id) is None
        assert (
            await storage.list_attempts(acct.id, old[0].deliveries[0].id, after=None, limit=5) == []
        )
        assert await storage.get_message(acct.id, old[1].message_id) is not None
        assert await storage.get_message(acct.id, new[0].message_id) is not None
        assert await storage.purge(T0 + 50_000, 100) == 0

    async def test_purge_removes_old_reported_batches(self, storage: Storage) -> None:
        acct = await account(storage)
        await endpoint(storage, acct.id)
        await storage.ingest(acct.id, [message()], T0, WINDOW)  # something for purge to find
        for batch_id, state in (("done", "sent"), ("quiet", "none"), ("open", "waiting")):
            await storage.update_batch(
                acct.id,
                BatchRecord(batch_id=batch_id, mode="summary", report_state=state, created_at=T0),
                ["1"],
                [],
            )
        await storage.purge(T0 + 1, 100)
        assert await storage.batch_statuses(acct.id, "done") is None
        assert await storage.batch_statuses(acct.id, "quiet") is None
        kept = await storage.batch_statuses(acct.id, "open")  # its report is still to come
        assert kept is not None and kept[1] == {"1": (None, None)}

    async def test_concurrent_ingest_and_claim_lose_nothing_and_double_nothing(
        self, storage: Storage
    ) -> None:
        acct = await account(storage)
        await endpoint(storage, acct.id)

        async def ingest(n: int) -> None:
            await storage.ingest(
                acct.id, [message(payload=b'{"n":%d}' % i) for i in range(n)], T0, WINDOW
            )

        claimed: list[str] = []

        async def claim() -> None:
            for _ in range(30):
                claimed.extend(c.delivery_id for c in await storage.claim(T0, 17, 60_000))
                await asyncio.sleep(0)

        await asyncio.gather(*(ingest(20) for _ in range(10)), *(claim() for _ in range(4)))
        while batch := await storage.claim(T0, 100, 60_000):
            claimed.extend(c.delivery_id for c in batch)
        assert len(claimed) == len(set(claimed)) == 200

    # -- what the operator dashboard and the portal read ---------------------------------------

    async def _settled_traffic(self, storage: Storage) -> tuple[Account, Account, Endpoint]:
        """acme: one delivered, one retrying (503) and one dead (404) to ``ep``, one pending;
        quiet: nothing."""
        acme = await account(storage)
        quiet = await account(storage, "quiet")
        ep = await endpoint(storage, acme.id)
        results = await storage.ingest(acme.id, [message() for _ in range(3)], T0, WINDOW)
        ids = [r.deliveries[0].id for r in results]
        await storage.claim(T0, 10, 60_000)
        await storage.record(
            [
                record(ids[0], DeliveryState.DELIVERED, now=T0 + 1000),
                record(
                    ids[1],
                    DeliveryState.PENDING,
                    next_attempt_at=T0 + 99_000,
                    status_code=503,
                    now=T0 + 2000,
                ),
                record(
                    ids[2],
                    DeliveryState.DEAD,
                    dead_reason="HTTP 404",
                    status_code=404,
                    now=T0 + 61_000,
                ),
            ]
        )
        await storage.ingest(acme.id, [message()], T0 + 3000, WINDOW)
        return acme, quiet, ep

    async def test_account_activity_counts_backlog_dead_and_recent_attempts(
        self, storage: Storage
    ) -> None:
        acme, quiet, _ = await self._settled_traffic(storage)
        busy, idle = await storage.account_activity(T0, 10)
        assert (busy.account_id, busy.name) == (acme.id, "acme")  # most backlog + dead first
        assert (busy.backlog, busy.dead, busy.delivered, busy.failed) == (2, 1, 1, 2)
        assert busy.oldest_pending_at == T0  # the retrying one, created first
        assert (idle.account_id, idle.backlog, idle.dead, idle.delivered) == (quiet.id, 0, 0, 0)
        assert idle.oldest_pending_at is None
        [late] = await storage.account_activity(T0 + 60_000, 10, account_id=acme.id)
        assert (late.delivered, late.failed) == (0, 1)  # only the attempt inside the window

    async def test_live_totals_count_work_now_and_attempts_in_the_window(
        self, storage: Storage
    ) -> None:
        await self._settled_traffic(storage)
        now = await storage.live_totals(T0)
        assert (now.pending, now.delivering, now.delivered, now.failed) == (2, 0, 1, 2)
        later = await storage.live_totals(T0 + 60_000)
        assert (later.pending, later.delivered, later.failed) == (2, 0, 1)
        await storage.claim(T0 + 100_000, 10, 60_000)
        claimed = await storage.live_totals(T0)
        assert (claimed.pending, claimed.delivering) == (0, 2)

    async def test_endpoint_health_failures_backlog_and_pacing(self, storage: Storage) -> None:
        acme, quiet, ep = await self._settled_traffic(storage)
        idle = await endpoint(storage, quiet.id, disabled=True)
        first, second = await storage.endpoint_health(T0, T0 + 70_000, 10)
        assert first.endpoint_id == ep.id and first.account_id == acme.id
        assert (first.attempts, first.failures, first.backlog) == (3, 2, 2)
        assert first.last_status_code == 404 and first.paced_rate is None
        assert (second.endpoint_id, second.disabled, second.attempts) == (idle.id, True, 0)
        await storage.pace(
            ep.id, lambda p: (Pacing(paused_until_ms=T0 + 90_000, current_rate=2.0), None)
        )
        [paced] = await storage.endpoint_health(T0, T0 + 70_000, 10, account_id=acme.id)
        assert (paced.paced_rate, paced.paused_until) == (2.0, T0 + 90_000)
        [resumed] = await storage.endpoint_health(T0, T0 + 95_000, 10, account_id=acme.id)
        assert resumed.paused_until is None  # the pause is over

    async def test_dead_letters_across_accounts_newest_first(self, storage: Storage) -> None:
        acme, quiet, _ = await self._settled_traffic(storage)
        ep = await endpoint(storage, quiet.id)
        [other] = await storage.ingest(quiet.id, [message()], T0 + 4000, WINDOW)
        await storage.claim(T0 + 4000, 10, 60_000)
        other_id = other.deliveries[0].id
        await storage.record([record(other_id, DeliveryState.DEAD, status_code=410)])
        letters = await storage.dead_letters(before=None, limit=10)
        assert (letters[0].account_id, letters[0].endpoint_id) == (quiet.id, ep.id)
        assert [d.account_id for d in letters] == [quiet.id, acme.id]
        assert all(d.state is DeliveryState.DEAD for d in letters)
        older = await storage.dead_letters(before=letters[0].id, limit=10)
        assert [d.id for d in older] == [letters[1].id]
        only = await storage.dead_letters(before=None, limit=10, account_id=quiet.id)
        assert [d.id for d in only] == [other_id]

    async def test_endpoint_activity_in_buckets(self, storage: Storage) -> None:
        _, _, ep = await self._settled_traffic(storage)
        points = await storage.endpoint_activity(ep.id, T0, 60_000)
        assert [(p.bucket_start, p.attempts, p.failures) for p in points] == [
            (T0 // 60_000 * 60_000, 2, 1),
            (T0 // 60_000 * 60_000 + 60_000, 1, 1),
        ]
        assert await storage.endpoint_activity(ep.id, T0 + 120_000, 60_000) == []

    async def test_delivery_search_by_type_batch_recipient_and_idempotency_key(
        self, storage: Storage
    ) -> None:
        acme = await account(storage)
        other = await account(storage, "other")
        await endpoint(storage, acme.id)
        await endpoint(storage, other.id)
        await storage.ingest(
            acme.id,
            [
                message("report", ordering_key="b1/46700000001"),
                message("report", ordering_key="b1/46700000002"),
                message("report", ordering_key="b2/46700000001"),
                message("other", idempotency_key="order-7"),
            ],
            T0,
            WINDOW,
        )
        await storage.ingest(
            other.id, [message("report", ordering_key="b1/46700000001")], T0, WINDOW
        )

        async def keys(**filters: str) -> list[str]:
            found = await storage.list_deliveries(acme.id, **filters)  # type: ignore[arg-type]
            return sorted(d.event_type for d in found)

        assert await keys(event_type="report") == ["report"] * 3
        assert len(await storage.list_deliveries(acme.id, batch_id="b1")) == 2
        assert len(await storage.list_deliveries(acme.id, recipient="46700000001")) == 2
        assert (
            len(await storage.list_deliveries(acme.id, batch_id="b1", recipient="46700000002")) == 1
        )
        assert await storage.list_deliveries(acme.id, batch_id="b") == []  # whole ids only
        assert await keys(idempotency_key="order-7") == ["other"]
        assert await storage.list_deliveries(other.id, idempotency_key="order-7") == []
        assert len(await storage.list_deliveries(other.id, batch_id="b1")) == 1

    async def test_every_filter_combines_with_an_endpoint(self, storage: Storage) -> None:
        """An endpoint's listing is its own query on SQLite (migration 0011): each filter
        holds there too, beside a second endpoint of the same account."""
        acme = await account(storage)
        first = await endpoint(storage, acme.id)
        second = await endpoint(storage, acme.id)
        results = await storage.ingest(
            acme.id,
            [
                message("report", ordering_key="b1/46700000001"),
                message("report", ordering_key="b2/46700000002"),
                message("other", idempotency_key="order-7"),
            ],
            T0,
            WINDOW,
        )
        mine = {d.id for r in results for d in r.deliveries if d.endpoint_id == first.id}
        assert len(mine) == 3

        async def found(**filters: object) -> list[str]:
            listed = await storage.list_deliveries(acme.id, endpoint_id=first.id, **filters)  # type: ignore[arg-type]
            assert all(d.endpoint_id == first.id for d in listed)
            return sorted(d.event_type for d in listed)

        assert await found() == ["other", "report", "report"]
        assert await found(event_type="report") == ["report", "report"]
        assert await found(batch_id="b1") == ["report"]
        assert await found(recipient="46700000002") == ["report"]
        assert await found(idempotency_key="order-7") == ["other"]
        assert await found(message_id=results[2].message_id) == ["other"]
        assert await found(since=T0, until=T0 + 1) == ["other", "report", "report"]
        assert await found(until=T0) == []
        assert await found(state=DeliveryState.PENDING) == ["other", "report", "report"]
        assert await found(state=DeliveryState.DELIVERED) == []
        newest_first = await storage.list_deliveries(acme.id, endpoint_id=first.id, limit=2)
        rest = await storage.list_deliveries(
            acme.id, endpoint_id=first.id, after=newest_first[-1].id
        )
        assert [d.id for d in newest_first + rest] == sorted(mine, reverse=True)
        assert len(await storage.list_deliveries(acme.id, endpoint_id=second.id)) == 3

    # -- operations: backlog, endpoint health, auto-disable, readiness ----------------------------

    async def test_backlog_counts_by_state_and_oldest_pending(self, storage: Storage) -> None:
        assert await storage.backlog(T0) == Backlog()
        acct = await account(storage)
        busy = await endpoint(storage, acct.id)
        await storage.ingest(acct.id, [message(), message(), message()], T0, WINDOW)
        quiet = await endpoint(storage, acct.id)
        later = await storage.ingest(acct.id, [message()], T0 + 10, WINDOW)
        claimed = await storage.claim(T0 + 10, 1, 60_000)
        await storage.record([record(claimed[0].delivery_id, DeliveryState.DEAD, dead_reason="x")])
        backlog = await storage.backlog(T0 + 1000)
        # 3 + 2 deliveries made, one dead
        assert (backlog.pending, backlog.due, backlog.delivering, backlog.dead) == (4, 4, 0, 1)
        assert backlog.oldest_pending_created_at is not None
        assert backlog.oldest_pending_age_s(T0 + 1000) >= 0.99
        assert backlog.due_lag_s(T0 + 1000) > 0
        busiest = await storage.busiest_endpoints(T0 + 1000, 1)
        # busy: 3 + 1 deliveries, the earliest of them claimed and dead
        assert [(b.endpoint_id, b.pending) for b in busiest] == [(busy.id, 3)]
        per = await storage.endpoint_backlog([busy.id, quiet.id], T0 + 1000)
        assert (per[busy.id].pending, per[busy.id].dead) == (3, 1)
        assert (per[quiet.id].pending, per[quiet.id].dead, per[quiet.id].due) == (1, 0, 1)
        assert later[0].deliveries

    async def test_health_rows_update_atomically_and_read_back(self, storage: Storage) -> None:
        acct = await account(storage)
        a = await endpoint(storage, acct.id)
        b = await endpoint(storage, acct.id)
        assert await storage.health_states([a.id]) == {}

        def bump(h: HealthState) -> tuple[HealthState, int]:
            after = msgspec.structs.replace(
                h,
                consecutive_failures=h.consecutive_failures + 1,
                failing_since=h.failing_since or T0,
                latency=tuple(c + 1 for c in h.latency),
                failing_announced=True,
                updated_at=T0,
            )
            return after, after.consecutive_failures

        await asyncio.gather(*(storage.update_health([a.id, b.id], bump) for _ in range(5)))
        assert await storage.update_health([b.id], bump) == {b.id: 6}
        rows = await storage.health_states([a.id, b.id])
        assert rows[a.id].consecutive_failures == 5 and rows[b.id].consecutive_failures == 6
        assert rows[a.id].failing_since == T0 and rows[a.id].failing_announced
        assert rows[a.id].latency == (5,) * len(rows[a.id].latency)
        failing = await storage.failing_endpoints(10)
        assert failing == [(b.id, 6), (a.id, 5)]

        # Every field written is read back as it was, for several endpoints in one update.
        def everything(h: HealthState) -> tuple[HealthState, None]:
            n = 1 if h.endpoint_id == a.id else 2
            return (
                HealthState(
                    endpoint_id=h.endpoint_id,
                    window_start=T0 + n,
                    successes=10 * n,
                    failures=20 * n,
                    prev_successes=30 * n,
                    prev_failures=40 * n,
                    latency=tuple(range(n, n + len(h.latency))),
                    prev_latency=tuple(range(2 * n, 2 * n + len(h.latency))),
                    consecutive_failures=50 * n,
                    consecutive_dead=60 * n,
                    failing_since=None,
                    last_success_at=T0 + 70 * n,
                    last_failure_at=T0 + 80 * n,
                    failing_announced=n == 2,
                    disabled_reason=f"disabled: HTTP 410 Gone, “ünïcode” {n}",
                    disabled_at=T0 + 90 * n,
                    updated_at=T0 + 100 * n,
                ),
                None,
            )

        await storage.update_health([a.id, b.id], everything)
        rows = await storage.health_states([a.id, b.id])
        assert rows == {e: everything(rows[e])[0] for e in (a.id, b.id)}
        assert rows[a.id].disabled_reason == "disabled: HTTP 410 Gone, “ünïcode” 1"

    async def test_disable_holds_pending_deliveries_as_dead_and_replayable(
        self, storage: Storage
    ) -> None:
        acct = await account(storage)
        ep = await endpoint(storage, acct.id)
        results = await storage.ingest(acct.id, [message(), message()], T0, WINDOW)
        assert (
            await storage.disable_endpoint(ep.id, "the receiver answered 410 Gone", T0 + 1)
            == acct.id
        )
        assert await storage.disable_endpoint(ep.id, "again", T0 + 2) is None  # once only
        stored = await storage.get_endpoint(acct.id, ep.id)
        assert stored is not None and stored.disabled and stored.updated_at == T0 + 1
        for result in results:
            delivery = await storage.get_delivery(acct.id, result.deliveries[0].id)
            assert delivery is not None and delivery.state is DeliveryState.DEAD
            assert delivery.dead_reason == "endpoint disabled: the receiver answered 410 Gone"
        assert await storage.claim(T0 + 3, 10, 60_000) == []
        stored = msgspec.structs.replace(stored, disabled=False, updated_at=T0 + 4)
        assert await storage.update_endpoint(stored)
        assert len(await storage.replay(acct.id, T0 + 5, endpoint_id=ep.id)) == 2

    async def test_account_disable_after_and_probe(self, storage: Storage) -> None:
        acct = await account(storage)
        assert await storage.account_disable_after(acct.id) is None
        assert await storage.set_account_disable_after(acct.id, 3600)
        assert await storage.account_disable_after(acct.id) == 3600
        assert not await storage.set_account_disable_after("acc_missing", 1)
        await storage.probe(T0)  # a write that succeeds


def _fields(ep: Endpoint) -> dict[str, object]:
    return {f: getattr(ep, f) for f in ep.__struct_fields__}


def delivered_record(delivery_id: str, now: int) -> AttemptRecord:
    return AttemptRecord(
        attempt=Attempt(
            id=f"att_{delivery_id}",
            delivery_id=delivery_id,
            attempt_number=1,
            started_at=now,
            duration_ms=1.0,
            outcome="delivered",
            status_code=200,
        ),
        delivery_id=delivery_id,
        state=DeliveryState.DELIVERED,
        next_attempt_at=None,
        dead_reason=None,
        now=now,
    )
