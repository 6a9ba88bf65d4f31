"""Which endpoints get a delivery: the subscribed ones, or a message's own callback_url instead."""

from __future__ import annotations

from postback.core.fanout import (
    EndpointLoad,
    LeaseOffer,
    delivery_targets,
    fleet_room,
    lease_counts,
    reserve_size,
)
from postback.core.model import NewMessage


def message(callback: str | None = None, fanout: bool = False) -> NewMessage:
    return NewMessage(
        id="msg_1", event_type="t", payload=b"{}", callback_endpoint_id=callback, fanout=fanout
    )


def test_without_a_callback_url_every_subscribed_endpoint() -> None:
    assert delivery_targets(message(), ["ep_a", "ep_b"]) == ["ep_a", "ep_b"]
    assert delivery_targets(message(fanout=True), ["ep_a"]) == ["ep_a"]
    assert delivery_targets(message(), []) == []


def test_a_callback_url_overrides_the_subscribed_endpoints() -> None:
    assert delivery_targets(message("ep_cb"), ["ep_a", "ep_b"]) == ["ep_cb"]
    assert delivery_targets(message("ep_cb"), []) == ["ep_cb"]


def test_fanout_adds_the_callback_url_once() -> None:
    assert delivery_targets(message("ep_cb", fanout=True), ["ep_a"]) == ["ep_a", "ep_cb"]
    assert delivery_targets(message("ep_cb", fanout=True), ["ep_cb", "ep_a"]) == ["ep_cb", "ep_a"]


def test_an_endpoints_only_holder_may_lease_its_prefetch_beyond_the_share() -> None:
    # Share 4, prefetch 3; the holder holds 2: by its own count 5 more.
    assert fleet_room(5, 3, 0) == 5
    # Another process holds 1: no lead beyond the share, and its delivery counts.
    assert fleet_room(5, 3, 1) == 1
    assert fleet_room(5, 3, 4) <= 0


def test_the_fast_path_leases_ahead_only_when_no_one_else_holds_the_endpoint() -> None:
    offer = LeaseOffer(
        lease_ms=1000,
        total=100,
        share=4,
        own={"ep_a": 2},
        room={"ep_a": 5, "ep_b": 7},
        prefetch={"ep_a": 3, "ep_b": 3},
    )
    loads = {
        "ep_a": EndpointLoad(in_flight=2, paced=False),  # all of it this dispatcher's own
        "ep_b": EndpointLoad(in_flight=3, paced=False),  # held by another process
    }
    assert lease_counts(offer, {"ep_a": 50, "ep_b": 50}, loads) == {"ep_a": 5, "ep_b": 1}


def test_a_reserve_lasts_its_time_at_the_endpoints_rate_within_bounds() -> None:
    # 4,000 sends/s for a quarter of a second: 1,000, capped at the most (512).
    assert reserve_size(4000.0, 32, 512, 0.25) == 512
    assert reserve_size(1000.0, 32, 512, 0.25) == 250
    # A slow or hanging endpoint, or one not sent to yet: the share, not a pile in memory.
    assert reserve_size(20.0, 32, 512, 0.25) == 32
    assert reserve_size(0.0, 32, 512, 0.25) == 32
    # Never beyond the most, even when the share is larger; 0 turns prefetch off.
    assert reserve_size(0.0, 64, 16, 0.25) == 16
    assert reserve_size(4000.0, 32, 0, 0.25) == 0
