"""64-bit time-ordered comment ids: ``ms since EPOCH | node | sequence``.

Layout, high to low: 41 bits of milliseconds since 2024-01-01 UTC (lasts until 2093), 10 bits of
node (0..1023, one per edge process), 12 bits of sequence (4096 ids per ms per node). The top bit
stays 0, so ids fit a signed 64-bit column (SQLite INTEGER, Cassandra bigint, PostgreSQL bigint).

Ids from one generator strictly increase, even when the wall clock steps back (the generator keeps
using its last millisecond) or a millisecond's 4096 sequence numbers run out (it borrows the next
millisecond). Ids from different nodes in the same millisecond order by node; that is the only
cross-node order promised, so per-stream order across edges is "by id", ties impossible.
"""

from __future__ import annotations

import time
from collections.abc import Callable

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
TIMESTAMP_BITS = 41
NODE_BITS = 10
SEQUENCE_BITS = 12

MAX_NODE = (1 << NODE_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
MAX_TIMESTAMP = (1 << TIMESTAMP_BITS) - 1
_NODE_SHIFT = SEQUENCE_BITS
_TIME_SHIFT = SEQUENCE_BITS + NODE_BITS


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class CommentIdGenerator:
    """Issues strictly increasing ids for one node. Not thread-safe: one per event loop."""

    __slots__ = ("_clock_ms", "_last_ms", "_node_bits", "_sequence")

    def __init__(self, node: int, clock_ms: Callable[[], int] = _wall_clock_ms) -> None:
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node must be in 0..{MAX_NODE}, got {node}")
        self._node_bits = node << _NODE_SHIFT
        self._clock_ms = clock_ms
        self._last_ms = -1
        self._sequence = 0

    @property
    def node(self) -> int:
        return self._node_bits >> _NODE_SHIFT

    def set_node(self, node: int) -> None:
        """Mint ids for ``node`` from now on (a re-leased node id; see ``livechat.server.node_lease``)."""
        if not 0 <= node <= MAX_NODE:
            raise ValueError(f"node must be in 0..{MAX_NODE}, got {node}")
        self._node_bits = node << _NODE_SHIFT

    def next_id(self) -> int:
        now = self._clock_ms() - EPOCH_MS
        if now > self._last_ms:
            self._last_ms = now
            self._sequence = 0
        elif self._sequence < MAX_SEQUENCE:
            # Same millisecond, or the clock stepped back: keep counting in the last millisecond.
            self._sequence += 1
        else:
            # 4096 ids in one millisecond: borrow the next one rather than block.
            self._last_ms += 1
            self._sequence = 0
        if not 0 <= self._last_ms <= MAX_TIMESTAMP:
            raise OverflowError(f"clock {self._last_ms + EPOCH_MS} ms is outside the id range")
        return (self._last_ms << _TIME_SHIFT) | self._node_bits | self._sequence


def id_timestamp_ms(comment_id: int) -> int:
    """Unix milliseconds at which ``comment_id`` was issued."""
    return (comment_id >> _TIME_SHIFT) + EPOCH_MS


def id_node(comment_id: int) -> int:
    return (comment_id >> _NODE_SHIFT) & MAX_NODE


def id_sequence(comment_id: int) -> int:
    return comment_id & MAX_SEQUENCE


def first_id_at(unix_ms: int) -> int:
    """The smallest id any node can issue at ``unix_ms``: ids >= it were issued at or after it."""
    offset = unix_ms - EPOCH_MS
    if not 0 <= offset <= MAX_TIMESTAMP:
        raise ValueError(f"time {unix_ms} ms is outside the id range")
    return offset << _TIME_SHIFT
