"""Identifiers: a type prefix plus a time-ordered, URL-safe random id (ULID layout).

Time order lets lists paginate by id alone and keeps B-tree inserts at the right edge.
"""

from __future__ import annotations

from collections.abc import Callable

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two digits (10 bits) per lookup, on integers of at most 48 bits (no big-integer shifts): ids
# are made for every message, delivery and attempt.
_DIGIT_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_MASK_48 = (1 << 48) - 1
_MASK_40 = (1 << 40) - 1


def _digits_48(value: int) -> str:
    """10 digits (50 bits, the top two zero) of a 48-bit value: the time part."""
    p = _DIGIT_PAIRS
    return (
        p[value >> 40]
        + p[(value >> 30) & 1023]
        + p[(value >> 20) & 1023]
        + p[(value >> 10) & 1023]
        + p[value & 1023]
    )


def _digits_80(value: int) -> str:
    """16 digits of an 80-bit value, as two 40-bit halves."""
    p = _DIGIT_PAIRS
    high, low = value >> 40, value & _MASK_40
    return (
        p[high >> 30]
        + p[(high >> 20) & 1023]
        + p[(high >> 10) & 1023]
        + p[high & 1023]
        + p[low >> 30]
        + p[(low >> 20) & 1023]
        + p[(low >> 10) & 1023]
        + p[low & 1023]
    )


class _TimeDigits:
    """The time part of the last millisecond asked for: ids come in runs within one."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        # One tuple, replaced whole: threads (the event loop, the SQLite writer) share it.
        self.last: tuple[int, str] = (-1, "")

    def of(self, timestamp_ms: int) -> str:
        ms, text = self.last
        if ms != timestamp_ms:
            text = _digits_48(timestamp_ms)
            self.last = (timestamp_ms, text)
        return text


_TIME = _TimeDigits()


def encode_ulid(timestamp_ms: int, randomness: bytes) -> str:
    """26 characters: 48 bits of milliseconds then 80 bits of ``randomness`` (10 bytes)."""
    if len(randomness) != 10:
        raise ValueError("randomness must be 10 bytes")
    return _TIME.of(timestamp_ms & _MASK_48) + _digits_80(int.from_bytes(randomness, "big"))


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
        return self.next_from(timestamp_ms, lambda _size: randomness)

    def next_from(self, timestamp_ms: int, source: Callable[[int], bytes]) -> str:
        """As ``next``, drawing 10 bytes from ``source`` (``os.urandom``) only when a new
        millisecond starts: the ids of one ingest are mostly increments, and a draw is a
        system call."""
        if timestamp_ms <= self._last_ms:
            timestamp_ms = self._last_ms
            value = self._last_random + 1
        else:
            value = int.from_bytes(source(10), "big") >> 1  # room to increment
        self._last_ms, self._last_random = timestamp_ms, value
        return f"{self.prefix}_{_TIME.of(timestamp_ms & _MASK_48)}{_digits_80(value)}"
