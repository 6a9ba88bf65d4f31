"""Which endpoints get a delivery: the subscribed ones, or a message's own callback_url instead."""

from __future__ import annotations

from postback.core.fanout import (
    EndpointLoad,
    LeaseOffer,
    claim_plan,
    delivery_targets,
    fleet_room,
    known_targets,
    lease_counts,
    part,
    reserve_size,
    worth_counting,
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


def test_the_targets_are_known_in_advance_only_when_every_message_names_its_own() -> None:
    """Then the fast path's offer is worked out for those endpoints alone; any message that
    goes to the subscribed endpoints (no callback URL, or fanout) makes them unknown."""
    assert known_targets([message("ep_1"), message("ep_2"), message("ep_1")]) == {"ep_1", "ep_2"}
    assert known_targets([message("ep_1"), message()]) is None
    assert known_targets([message("ep_1"), message("ep_2", fanout=True)]) is None
    assert known_targets([]) == set()


def test_an_endpoints_only_holder_has_the_whole_share_and_its_reserve() -> None:
    # Share 4, reserve 3; the holder holds 2: by its own count 5 more.
    assert fleet_room(5, 3, 2, 0, 0, 4) == (5, 1)


def test_holders_split_the_share_and_each_keeps_its_own_reserve() -> None:
    # Another process holds 9 (its share and a reserve): a newcomer gets its part, 4 of 8, and
    # its reserve of 3; it is not kept away by the other's lead.
    assert fleet_room(11, 3, 0, 9, 1, 8) == (7, 2)
    # Holding 5 of its own already: 2 more.
    assert fleet_room(6, 3, 5, 9, 1, 8) == (2, 2)
    # Three holders of a share of 8: ceil(8 / 3) = 3 each, plus the reserve.
    assert fleet_room(11, 3, 0, 9, 2, 8) == (6, 3)
    # The caller's own count is the tighter bound (a narrowed share, say): it holds.
    assert fleet_room(1, 3, 0, 9, 1, 8) == (1, 2)
    # Others counted in flight but no holder named (leases made before holders were stored).
    assert fleet_room(11, 3, 0, 2, 0, 8) == (7, 2)


def test_finished_attempts_waiting_to_be_recorded_hold_no_slot_at_the_endpoint() -> None:
    # Share 8 between two holders, reserve 3: the caller's part and reserve is 7. Of its 5
    # own leases, 4 are finished attempts not yet recorded and 1 is still being sent.
    assert fleet_room(11, 3, 5, 9, 1, 8, sending=1) == (6, 2)
    # Counted as held, they would leave it 2.
    assert fleet_room(11, 3, 5, 9, 1, 8) == (2, 2)
    # What it sends is never taken as more than what the store counts as its own.
    assert fleet_room(11, 3, 5, 9, 1, 8, sending=9) == (2, 2)
    # Alone with the endpoint, its own count (the allowance) decides, as before.
    assert fleet_room(5, 3, 2, 0, 0, 4, sending=0) == (5, 1)


def test_a_holders_part_rounds_up_within_one_per_holder() -> None:
    assert [part(32, k) for k in (1, 2, 3, 5, 32, 40)] == [32, 16, 11, 7, 1, 1]
    for share in range(1, 40):
        for holders in range(1, 9):
            assert share <= part(share, holders) * holders < share + holders


def test_the_fast_path_takes_the_whole_share_alone_and_its_part_beside_others() -> None:
    offer = LeaseOffer(
        lease_ms=1000,
        total=100,
        share=4,
        own={"ep_a": 2},
        room={"ep_a": 5, "ep_b": 7},
        prefetch={"ep_a": 3, "ep_b": 3},
        holder="hold_me",
    )
    loads = {
        "ep_a": EndpointLoad(in_flight=2, paced=False),  # all of it this dispatcher's own
        # held by one other process: a part of 2 and the reserve of 3
        "ep_b": EndpointLoad(in_flight=3, paced=False, other_holders=1),
        "ep_c": EndpointLoad(in_flight=0, paced=True),  # paced: the claim path
    }
    counts, holders = lease_counts(offer, {"ep_a": 50, "ep_b": 50, "ep_c": 5}, loads)
    assert counts == {"ep_a": 5, "ep_b": 5}
    assert holders == {"ep_a": 1, "ep_b": 2}


def test_only_endpoints_the_fast_path_could_lease_to_are_counted_in_the_store() -> None:
    offer = LeaseOffer(
        lease_ms=1000,
        total=10,
        share=4,
        room={"ep_a": 4, "ep_b": 0, "ep_c": 9, "ep_d": 9, "ep_e": 9},
    )
    wanted = {"ep_x": 3, "ep_a": 6, "ep_b": 2, "ep_c": 5, "ep_d": 1, "ep_e": 1}
    # ep_x is not loaded and ep_b has no room: nothing could be leased to them. ep_a (4 of
    # its 6), ep_c (5) and ep_d (1) may take all 10 free slots between them: ep_e could take
    # nothing even if they were all free across the fleet, so it is not counted.
    assert worth_counting(offer, wanted) == {"ep_a": 6, "ep_c": 5, "ep_d": 1}
    none_free = LeaseOffer(lease_ms=1000, total=0, share=4, room={"ep_a": 4})
    assert worth_counting(none_free, wanted) == {}


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


def test_a_claim_plan_takes_each_endpoint_to_its_room_in_order_until_the_limit() -> None:
    picked = {"a": [1, 2], "b": [3, 4, 5, 6], "c": [7, 8, 9], "d": [10]}
    rooms = [("a", 5), ("b", 3), ("x", 0), ("c", 10), ("d", 10)]
    # a is emptied (2 < 5), b gives its room (3), x has no room, c is cut by the limit, d is
    # never reached: only a counts as having nothing more due.
    assert claim_plan(rooms, picked, 7) == ([1, 2, 3, 4, 5, 7, 8], ["a"])
    # Room enough for all: c gives all it has and is emptied too; so is d.
    assert claim_plan(rooms, picked, 100) == ([1, 2, 3, 4, 5, 7, 8, 9, 10], ["a", "c", "d"])
    # An endpoint with nothing picked is emptied, one past the limit is not.
    assert claim_plan([("a", 2), ("e", 4), ("b", 1)], picked, 2) == ([1, 2], [])
    assert claim_plan([("e", 4), ("a", 2)], picked, 3) == ([1, 2], ["e"])
