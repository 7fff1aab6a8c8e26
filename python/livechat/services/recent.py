"""The newest visible comments of one stream, in memory: join snapshots and reconnect recovery."""

from __future__ import annotations

from collections import OrderedDict


class RecentBuffer:
    """Up to ``capacity`` (comment id -> (user id, encoded event)), ordered by id, each remembering
    when it arrived.

    ``floor`` is the newest id this buffer may be missing: recovery from a last seen id below it
    cannot be answered from memory. Deleted comments are removed, so neither snapshots nor recovery
    ever return them.

    Why arrival matters: ids are minted by the posting edge before its comment reaches the stream's
    sequencer (the log), so a comment can arrive after one with a larger id (by up to the time an
    append takes). A viewer who last saw id X has seen what arrived before X on its edge, which is
    not "every id below X". Recovery therefore answers "what arrived after X" when X is still here.
    """

    __slots__ = ("_arrived", "_capacity", "_items", "_ordered", "_seq", "floor")

    def __init__(self, capacity: int, floor: int) -> None:
        self._capacity = max(capacity, 1)
        # OrderedDict: dropping the oldest is O(1) (see ``IdempotencyCache``).
        self._items: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        # comment id -> arrival number (increasing): what came after a given comment.
        self._arrived: dict[int, int] = {}
        self._seq = 0
        self._ordered = True
        self.floor = floor

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, comment_id: int) -> bool:
        return comment_id in self._items

    def _order(self) -> None:
        # Events from other edges can arrive slightly out of id order; restore it lazily.
        if not self._ordered:
            self._items = OrderedDict(sorted(self._items.items()))
            self._ordered = True

    def _arrive(self, comment_id: int) -> None:
        if comment_id not in self._arrived:
            self._seq += 1
            self._arrived[comment_id] = self._seq

    def append(self, comment_id: int, user_id: str, payload: bytes) -> None:
        items = self._items
        if items and comment_id not in items and comment_id < next(reversed(items)):
            # Minted before comments that reached the log first (another edge's append was faster):
            # slot it in from the end, usually a few places back. A full sort of the buffer here
            # cost every such append ~500 entries' work, and with several posting edges that is
            # most appends.
            newer = []
            while items and next(reversed(items)) > comment_id:
                newer.append(items.popitem())
            items[comment_id] = (user_id, payload)
            for cid, value in reversed(newer):
                items[cid] = value
        else:
            items[comment_id] = (user_id, payload)
        self._arrive(comment_id)
        if len(items) > self._capacity:
            self._order()
            oldest, _ = self._items.popitem(last=False)
            self._arrived.pop(oldest, None)
            if oldest > self.floor:
                self.floor = oldest
        if len(self._arrived) > 2 * self._capacity:
            # Deleted comments keep their arrival number a while; bound them to the buffer's size.
            self._arrived = {cid: self._arrived[cid] for cid in items}

    def load(self, newest_first: list[tuple[int, str, bytes]], complete: bool) -> None:
        """Fill from history (newest first). ``complete``: that was the whole history."""
        for comment_id, user_id, payload in reversed(newest_first):
            self._items[comment_id] = (user_id, payload)
            self._arrive(comment_id)
        self._ordered = False
        self._order()
        # Everything newer than the oldest loaded id is here; before it, only when nothing is older.
        self.floor = 0 if complete or not newest_first else newest_first[-1][0]

    def get(self, comment_id: int) -> bytes | None:
        item = self._items.get(comment_id)
        return item[1] if item is not None else None

    def remove(self, comment_id: int) -> bool:
        # Its arrival number stays (until eviction): a viewer who saw it can still recover after it.
        return self._items.pop(comment_id, None) is not None

    def remove_user(self, user_id: str) -> list[int]:
        gone = [cid for cid, (uid, _) in self._items.items() if uid == user_id]
        for cid in gone:
            del self._items[cid]
        return gone

    def newest_id(self) -> int:
        self._order()
        return next(reversed(self._items)) if self._items else 0

    def latest(self, limit: int) -> list[tuple[int, bytes]]:
        """The newest ``limit`` comments, oldest first."""
        self._order()
        if limit <= 0:
            return []
        tail = list(self._items.items())[-limit:]
        return [(cid, payload) for cid, (_, payload) in tail]

    def after(self, last_id: int, limit: int) -> list[bytes] | None:
        """Comments that arrived after ``last_id`` (newer ids when it is unknown here), in id
        order; None when memory cannot tell (too old, or more than ``limit``)."""
        if last_id < self.floor:
            return None
        self._order()
        seen_at = self._arrived.get(last_id)
        if seen_at is None:
            out = [payload for cid, (_, payload) in self._items.items() if cid > last_id]
        else:
            arrived = self._arrived
            out = [payload for cid, (_, payload) in self._items.items() if arrived[cid] > seen_at]
        if len(out) > limit:
            return None
        return out
