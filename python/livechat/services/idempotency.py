"""Idempotent posting: a repost of the same client message id gets the first ack back.

Keys are ``user_id + "\\x1f" + cmid`` (the same string goes to the CommentLog as its
client_msg_id, so the log's own dedupe covers what this cache has forgotten, e.g. after a restart
or on another edge). Entries expire ``window_s`` after they were written.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple


def idempotency_key(user_id: str, cmid: str) -> str:
    return user_id + "\x1f" + cmid


class AckRecord(NamedTuple):
    stream: str
    comment_id: int
    ts_ms: int


class IdempotencyCache:
    """Recently acknowledged (key -> AckRecord), oldest first; bounded in time and size."""

    __slots__ = ("_entries", "_max", "_window")

    def __init__(self, window_s: float, max_entries: int) -> None:
        self._window = window_s
        self._max = max_entries
        # key -> (monotonic written, record) in write order. OrderedDict: dropping the oldest is
        # O(1); next(iter()) of a dict whose front was deleted walks every deleted slot, which at
        # 1M entries made each eviction, and ``expire`` as a whole, quadratic.
        self._entries: OrderedDict[str, tuple[float, AckRecord]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> AckRecord | None:
        entry = self._entries.get(key)
        if entry is None or now - entry[0] > self._window:
            return None
        return entry[1]

    def put(self, key: str, record: AckRecord, now: float) -> None:
        self._entries[key] = (now, record)
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def expire(self, now: float) -> int:
        """Drop entries older than the window; returns how many."""
        dropped = 0
        entries = self._entries
        while entries:
            key = next(iter(entries))
            if now - entries[key][0] <= self._window:
                break
            del entries[key]
            dropped += 1
        return dropped
