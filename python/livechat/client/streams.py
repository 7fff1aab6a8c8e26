"""What a client knows about each stream it joined: the latest room state and the ids it has seen."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from livechat.client.events import (
    Comment,
    Counts,
    Event,
    Modes,
    ModesChanged,
    Pinned,
    Snapshot,
    StateChanged,
    Tier,
)


class SeenIds:
    """The newest ``capacity`` comment ids received, to drop a comment that arrives twice (in a
    snapshot and the first ticks, in ``missed`` and a tick, in a tick and an ``ev``)."""

    __slots__ = ("_capacity", "_ids", "_order")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"dedupe capacity must be >= 1, got {capacity}")
        self._capacity = capacity
        self._ids: set[int] = set()
        self._order: deque[int] = deque()

    def add(self, comment_id: int) -> bool:
        """Remember ``comment_id``; False when it was already there (a duplicate)."""
        if comment_id in self._ids:
            return False
        self._ids.add(comment_id)
        self._order.append(comment_id)
        if len(self._order) > self._capacity:
            self._ids.discard(self._order.popleft())
        return True

    def __contains__(self, comment_id: int) -> bool:
        return comment_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def clear(self) -> None:
        self._ids.clear()
        self._order.clear()


@dataclass(slots=True)
class StreamView:
    """The latest state of one joined stream, kept current from snapshots and ticks."""

    stream: str
    seen: SeenIds
    role: str = "viewer"
    # Newest comment id held; sent as ``last_id`` when re-joining. 0 before the first snapshot.
    last_id: int = 0
    joined: bool = False
    counts: Counts | None = None
    reactions: dict[str, int] = field(default_factory=dict)
    tier: Tier | None = None
    modes: Modes = field(default_factory=Modes)
    pin: Comment | None = None

    def rejoin_from(self) -> int | None:
        """``last_id`` for a join: None the first time; afterwards the newest id held (at least 1, so
        an empty stream's first comments are recovered too)."""
        return max(self.last_id, 1) if self.joined else None

    def saw(self, comment_id: int) -> None:
        if comment_id > self.last_id:
            self.last_id = comment_id

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.joined = True
        self.role = snap.role
        self.counts = snap.counts
        self.reactions = dict(snap.reactions)
        self.tier = snap.tier
        self.modes = snap.modes
        self.pin = snap.pin
        self.saw(snap.last_id)

    def apply(self, event: Event) -> None:
        kind = type(event)
        if kind is StateChanged:
            assert isinstance(event, StateChanged)
            if event.counts is not None:
                self.counts = event.counts
            if event.reactions is not None:
                self.reactions = event.reactions
            if event.tier is not None:
                self.tier = event.tier
        elif kind is ModesChanged:
            assert isinstance(event, ModesChanged)
            self.modes = event.modes
        elif kind is Pinned:
            assert isinstance(event, Pinned)
            self.pin = event.comment
