"""Time sources the services read: one object so tests and replays control both clocks."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """``monotonic()`` for intervals (rate limits, slow mode, windows); ``time()`` for wall-clock
    facts that leave the process (comment ids, ban expiry, timestamps on the wire)."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The process clocks."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told (tests, replays of recorded traffic)."""

    __slots__ = ("_mono", "_wall")

    def __init__(self, wall: float = 1_750_000_000.0, mono: float = 1_000.0) -> None:
        self._wall = wall
        self._mono = mono

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._mono += seconds
