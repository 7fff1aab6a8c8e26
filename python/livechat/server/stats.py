"""What the compiled edge and the broker timing report to ``/metrics``, as typed values.

``Edge.stats()`` crosses from Rust as a plain dict (``livechat._edge``); ``edge_stats`` gives it its
shape here, once, so ``livechat.server.metrics`` reads it by checked keys. The keys are the Rust
core's counter names (``edge_core/src/server``: ``ThreadStats::snapshot`` and ``Edge::stats``);
``tests/ops/test_admin_server.py`` compares them with a running edge's, so a counter renamed in Rust
fails there and one renamed here fails mypy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypedDict, cast

from livechat.histogram import HistogramSnapshot


class EdgeThreadStats(TypedDict):
    """The counters of one I/O thread (``Edge.stats()["threads"][i]``)."""

    connections: int
    accepted: int
    rejected: int
    handshake_timeouts: int
    protocol_errors: int
    messages_in: int
    bytes_in: int
    frames_out: int
    deliveries: int
    bytes_out: int
    queue_bytes: int
    ticks_skipped: int
    slow_closes: int
    write_timeouts: int
    idle_closes: int
    loop_busy_us: int


class EdgeStats(EdgeThreadStats):
    """``Edge.stats()``: every per-thread counter summed over the threads, the edge-wide ones, and
    ``threads``, the per-thread counters one by one."""

    events_published: int
    ticks: int
    frames_built: int
    tick_build_ns: int
    io_threads: int
    threads: Sequence[EdgeThreadStats]


#: Every key of ``Edge.stats()`` this module knows; any other is a counter the core added since.
EDGE_KEYS: Final = frozenset(EdgeStats.__required_keys__)


class StatsSource(Protocol):
    """What ``edge_stats`` reads: ``livechat._edge.Edge`` or a test double."""

    def stats(self) -> dict[str, Any]: ...


def edge_stats(edge: StatsSource) -> EdgeStats | None:
    """The edge's counters, or None once the edge has finished its drain (nothing left to show)."""
    try:
        return cast(EdgeStats, edge.stats())
    except RuntimeError:
        return None


@dataclass(frozen=True, slots=True)
class BrokerTimes:
    """Broker round trips and counts (``livechat.server.broker_timing.MeasuredBroker``)."""

    publish: HistogramSnapshot
    published_events: int
    publish_errors: int
    probe: HistogramSnapshot
    probe_errors: int
    # Whether the last probe succeeded; None before the first.
    up: bool | None
