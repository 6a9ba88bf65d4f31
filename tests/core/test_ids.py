"""Ids: the ULID text layout (Crockford base32, 48-bit time then 80 random bits), time order."""

from __future__ import annotations

import os
import random

from postback.core.ids import MonotonicIds, encode_ulid, make_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference_ulid(timestamp_ms: int, randomness: bytes) -> str:
    """The spec's definition, digit by digit: 26 five-bit groups, most significant first."""
    value = timestamp_ms << 80 | int.from_bytes(randomness, "big")
    return "".join(CROCKFORD[(value >> (5 * (25 - i))) & 31] for i in range(26))


def test_encoding_matches_the_ulid_layout() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        ts = rng.randrange(0, 1 << 48)
        randomness = rng.randbytes(10)
        assert encode_ulid(ts, randomness) == reference_ulid(ts, randomness)
    assert encode_ulid(0, bytes(10)) == "0" * 26
    assert encode_ulid((1 << 48) - 1, b"\xff" * 10) == "7" + "Z" * 25


def test_ids_sort_by_time_and_monotonic_ids_within_a_millisecond() -> None:
    early = make_id("msg", 1_700_000_000_000, os.urandom(10))
    late = make_id("msg", 1_700_000_000_001, bytes(10))
    assert early < late
    ids = MonotonicIds("dlv")
    made = [ids.next(1_700_000_000_000, os.urandom(10)) for _ in range(1000)]
    assert made == sorted(made) and len(set(made)) == 1000
    # Drawn from the source once per new millisecond only.
    draws: list[int] = []

    def source(size: int) -> bytes:
        draws.append(size)
        return os.urandom(size)

    ids = MonotonicIds("dlv")
    made = [ids.next_from(1_700_000_000_000 + k // 400, source) for k in range(1000)]
    assert made == sorted(made) and len(set(made)) == 1000 and draws == [10, 10, 10]


def test_the_time_part_is_right_when_milliseconds_repeat_and_alternate() -> None:
    """The last millisecond's digits are kept for the next id: a run within one millisecond,
    then back and forth between two, must each give the spec's text."""
    rng = random.Random(11)
    stamps = [1_700_000_000_000] * 5 + [1_700_000_000_001, 1_700_000_000_000] * 5 + [0, 0]
    for ts in stamps:
        randomness = rng.randbytes(10)
        assert encode_ulid(ts, randomness) == reference_ulid(ts, randomness)
    ids = MonotonicIds("dlv")
    for ts in stamps[:5]:
        made = ids.next(ts, rng.randbytes(10))
        assert made[4:14] == reference_ulid(ts, bytes(10))[:10]
