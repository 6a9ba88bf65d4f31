"""Which endpoints get a delivery of a message, and which of those go straight to a dispatcher.

Both storage adapters call these inside their ingest transaction; the rules live here once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, TypeVar

from postback.core.model import Delivery, DeliveryState, EndpointLoad, LeaseOffer, NewMessage

T = TypeVar("T")


def delivery_targets(message: NewMessage, subscribed: Sequence[str]) -> list[str]:
    """The endpoints a message goes to.

    Without a ``callback_url``: every endpoint of the account subscribed to its event type.
    With one, only the endpoint made for that URL: Sinch's batch ``callback_url`` is there to
    "override the default callback URL for this batch", so a customer's per-message URL never
    also sends the message to the account's other endpoints. ``fanout`` asks for both (the
    callback endpoint once, even if it is also subscribed).
    """
    callback = message.callback_endpoint_id
    if callback is None:
        return list(subscribed)
    if not message.fanout:
        return [callback]
    return [*subscribed, callback] if callback not in subscribed else list(subscribed)


def known_targets(messages: Sequence[NewMessage]) -> set[str] | None:
    """Every endpoint these messages can go to, when that is known before the subscriptions
    are read (each names its callback endpoint, without ``fanout``); else None."""
    targets: set[str] = set()
    for message in messages:
        if message.callback_endpoint_id is None or message.fanout:
            return None
        targets.add(message.callback_endpoint_id)
    return targets


def idempotency_hit(stored_at: int | None, now: int, window_ms: int) -> bool:
    """A key seen within the window returns the earlier message; an older one is reused."""
    return stored_at is not None and stored_at > now - window_ms


class FleetRoom(NamedTuple):
    room: int
    """How many more deliveries of the endpoint the process may lease now."""
    holders: int
    """Processes holding the endpoint's deliveries, this one included: each sends at most
    ``part(share, holders)`` at a time."""


def part(share: int, holders: int) -> int:
    """One holder's part of an endpoint's share: in flight across the fleet stays within the
    share, plus at most ``holders - 1`` for rounding up."""
    return -(-share // max(holders, 1))


def fleet_room(
    allowance: int,
    reserve: int,
    own: int,
    others: int,
    other_holders: int,
    share: int,
    sending: int | None = None,
) -> FleetRoom:
    """How many more deliveries of one endpoint a process may lease now, and among how many
    processes the endpoint's share is split.

    ``allowance`` is the process's room by its own count: its part of the share plus its
    ``reserve``, minus what it holds (in flight, or ready in memory); ``own`` is what the store
    counts as in flight that is its own, ``others`` the rest, held by ``other_holders``
    processes. The share bounds what is *sent* to an endpoint at once across the fleet, and
    each holder sends at most its part (``part``), so each may also keep its own reserve leased
    and ready: the next send starts the moment a slot frees, not after a claim's round trip.
    Alone with the endpoint, a process has the whole share. A newcomer takes its part at once;
    the holders before it learn of it at their next claim (``ClaimedDelivery.holders``) and
    drain down to their smaller part, so for that moment in flight can pass the share by up to
    the newcomer's part. Without a lease per holder a sole holder's reserve would count
    against the share and keep every other process away from the endpoint for good.

    ``sending``: of ``own``, those the process is still sending or holds ready (default: all).
    The rest are finished attempts whose results are not written yet: still in flight to the
    store, they hold no slot at the endpoint. Counted against the part, a few hundred of them
    waiting for a record flush left the process no room, and its claims came back empty.
    """
    if others <= 0:
        return FleetRoom(allowance, 1)
    holders = max(other_holders, 1) + 1
    held = own if sending is None else min(sending, own)
    return FleetRoom(min(allowance, part(share, holders) + reserve - held), holders)


def claim_plan(
    fleet_rooms: Sequence[tuple[str, int]], picked: Mapping[str, Sequence[T]], limit: int
) -> tuple[list[T], list[str]]:
    """What one claim takes: endpoint by endpoint in due order, each up to its room and never
    past ``limit`` in all, as if the claim asked each endpoint in turn.

    ``picked`` holds each endpoint's oldest due rows, oldest first, at least as many as it may
    take (or all it has). Also returned: the endpoints the claim took less from than it asked
    for, which have nothing more due now (the store moves their due mark to their next pending
    delivery). Endpoints after the claim filled up are neither taken from nor marked.
    """
    taken: list[T] = []
    exhausted: list[str] = []
    for endpoint_id, fleet_room_left in fleet_rooms:
        if len(taken) >= limit:
            break
        room = min(fleet_room_left, limit - len(taken))
        if room <= 0:
            continue
        rows = picked.get(endpoint_id, ())
        taken.extend(rows[:room])
        if len(rows) < room:
            exhausted.append(endpoint_id)
    return taken, exhausted


def reserve_size(send_rate: float, share: int, most: int, lasts_s: float) -> int:
    """How many of an endpoint's deliveries to keep leased and ready beyond its share.

    Enough to last ``lasts_s`` at the rate this process has been sending to it, so that the
    reserve outlives a claim's round trip (a fast receiver drains a fixed reserve of 128 in
    ~30 ms, and a claim behind ingest writes takes about that long), yet no more than ``most``.
    A slow or hanging endpoint gets little: a large reserve would sit in memory until it is
    handed back unsent (``DispatcherSettings.prefetch``). Never below the share or ``most``,
    whichever is less, so an endpoint whose rate is not known yet still gets a lead.
    """
    if most <= 0:
        return 0
    wanted = math.ceil(send_rate * lasts_s) if send_rate > 0 else 0
    return max(min(share, most), min(wanted, most))


def worth_counting(offer: LeaseOffer, wanted: Mapping[str, int]) -> dict[str, int]:
    """The endpoints of ``wanted`` (new deliveries per endpoint) that ``lease_counts`` could
    lease anything to: those the dispatcher has room for, in order, until their room covers
    its free slots.

    Why: the store counts each one's leases across the fleet first (``EndpointLoad``), ~5 µs
    an endpoint on SQLite. With a thousand customers a batch of 500 names ~400 endpoints, and
    a busy dispatcher has room for a few of them: counting all of them was ~10 % of the
    writer's time."""
    worth: dict[str, int] = {}
    left = offer.total
    for endpoint_id, n in wanted.items():
        if left <= 0:
            break
        room = offer.room.get(endpoint_id, 0)
        if room > 0:
            worth[endpoint_id] = n
            left -= min(n, room)
    return worth


def lease_counts(
    offer: LeaseOffer, wanted: Mapping[str, int], loads: Mapping[str, EndpointLoad]
) -> tuple[dict[str, int], dict[str, int]]:
    """How many of each endpoint's new deliveries are leased to the local dispatcher at once,
    and among how many processes each of those endpoints' share is split.

    Never more than ``fleet_room`` allows for what is in flight for it across the fleet, never
    for paced endpoints (their sends wait for slots), and never beyond the dispatcher's free
    slots; the rest stay pending for the claim path, so a slow endpoint's backlog is never held
    in memory.
    """
    counts: dict[str, int] = {}
    holders: dict[str, int] = {}
    total = offer.total
    for endpoint_id, n in wanted.items():
        load = loads.get(endpoint_id)
        if total <= 0 or load is None or load.paced:
            continue
        own = offer.own.get(endpoint_id, 0)
        fleet = fleet_room(
            offer.room.get(endpoint_id, 0),
            offer.prefetch.get(endpoint_id, 0),
            own,
            max(0, load.in_flight - own),
            load.other_holders,
            offer.share,
            offer.sending.get(endpoint_id),
        )
        take = max(0, min(n, fleet.room, total))
        if take:
            counts[endpoint_id] = take
            holders[endpoint_id] = fleet.holders
            total -= take
    return counts, holders


def new_deliveries(
    account_id: str,
    message: NewMessage,
    targets: Sequence[str],
    now: int,
    next_id: Callable[[], str],
) -> list[Delivery]:
    """The pending deliveries of one message, ids made in commit order by ``next_id``."""
    return [
        Delivery(
            id=next_id(),
            message_id=message.id,
            account_id=account_id,
            endpoint_id=endpoint_id,
            state=DeliveryState.PENDING,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
            event_type=message.event_type,
        )
        for endpoint_id in targets
    ]
