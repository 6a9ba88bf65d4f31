"""Identifiers: a type prefix plus a time-ordered, URL-safe random id (ULID layout).

Time order lets lists paginate by id alone and keeps B-tree inserts at the right edge.
"""

from __future__ import annotations

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two digits (10 bits) per lookup: 13 steps instead of 26 (ids are made for every delivery).
_DIGIT_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_PAIR_SHIFTS = tuple(range(120, -1, -10))


def encode_ulid(timestamp_ms: int, randomness: bytes) -> str:
    """26 characters: 48 bits of milliseconds then 80 bits of ``randomness`` (10 bytes)."""
    if len(randomness) != 10:
        raise ValueError("randomness must be 10 bytes")
    value = (timestamp_ms & ((1 << 48) - 1)) << 80 | int.from_bytes(randomness, "big")
    return "".join([_DIGIT_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def make_id(prefix: str, timestamp_ms: int, randomness: bytes) -> str:
    return f"{prefix}_{encode_ulid(timestamp_ms, randomness)}"


class MonotonicIds:
    """Ids that sort in the order they were made, even within one millisecond.

    Within a millisecond the random part is incremented instead of redrawn (the ULID spec's
    monotonic mode), so ordering by id is ordering by creation in this process: what keeps one
    recipient's status reports in order.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._last_ms = -1
        self._last_random = 0

    def next(self, timestamp_ms: int, randomness: bytes) -> str:
        if timestamp_ms <= self._last_ms:
            timestamp_ms = self._last_ms
            value = self._last_random + 1
        else:
            value = int.from_bytes(randomness, "big") >> 1  # room to increment
        self._last_ms, self._last_random = timestamp_ms, value
        return make_id(self.prefix, timestamp_ms, value.to_bytes(10, "big"))
