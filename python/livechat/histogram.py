"""A fixed-bucket latency histogram, cheap enough for per-call use (one bisect, two adds).

Read by the admin server's ``/metrics`` (``livechat.server.metrics``) as a Prometheus histogram.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Final

#: Upper bounds in seconds: 100 µs .. 10 s, about three per decade. Broker round trips sit at the
#: low end, classifier calls (0.8 s timeout by default) in the middle.
LATENCY_BUCKETS_S: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """``cumulative[i]`` observations were <= ``bounds[i]``; ``count`` includes those above all."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    total: float


class LatencyHistogram:
    __slots__ = ("_bounds", "_counts", "_total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram bounds must be distinct and ascending")
        self._bounds = bounds
        # One slot per bound plus the overflow slot (+Inf).
        self._counts = [0] * (len(bounds) + 1)
        self._total = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect_left(self._bounds, seconds)] += 1
        self._total += seconds

    @property
    def count(self) -> int:
        return sum(self._counts)

    def snapshot(self) -> HistogramSnapshot:
        cumulative = []
        running = 0
        for n in self._counts[:-1]:
            running += n
            cumulative.append(running)
        return HistogramSnapshot(self._bounds, tuple(cumulative), running + self._counts[-1], self._total)
