"""``/metrics`` families of the compiled edge (``Edge.stats()``): per I/O thread, and edge-wide."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, UnknownMetricFamily

from livechat.server.metrics.families import counter, gauge
from livechat.server.stats import EDGE_KEYS, EdgeStats, EdgeThreadStats


def edge_families(stats: EdgeStats) -> Iterator[Metric]:
    threads = stats["threads"]

    def per_thread(
        kind: type[CounterMetricFamily | GaugeMetricFamily],
        name: str,
        help_text: str,
        read: Callable[[EdgeThreadStats], float],
        scale: float = 1,
    ) -> Metric:
        family = kind(name, help_text, labels=["thread"])
        for index, thread in enumerate(threads):
            family.add_metric([str(index)], read(thread) * scale)
        return family

    yield per_thread(
        GaugeMetricFamily, "livechat_connections", "Open WebSocket connections.", lambda t: t["connections"]
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_connections_accepted_total",
        "TCP connections accepted (counted before the upgrade request is read).",
        lambda t: t["accepted"],
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_connections_rejected_total",
        "Upgrade requests refused (malformed, not a WebSocket upgrade, over max_connections).",
        lambda t: t["rejected"],
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_handshake_timeouts_total",
        "Connections dropped for not finishing the upgrade within handshake_timeout_ms.",
        lambda t: t["handshake_timeouts"],
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_protocol_errors_total",
        "Connections closed for breaking RFC 6455 / RFC 7692 (close 1002, 1007, 1009).",
        lambda t: t["protocol_errors"],
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_messages_in_total",
        "Whole client messages received.",
        lambda t: t["messages_in"],
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_bytes_in_total",
        "Bytes read from client sockets.",
        lambda t: t["bytes_in"],
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_frames_out_total",
        "Frames written to clients (tick frames, replies, control frames).",
        lambda t: t["frames_out"],
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_deliveries_total",
        "Events written to clients inside tick frames (one per event per subscriber).",
        lambda t: t["deliveries"],
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_bytes_out_total",
        "Bytes written to client sockets.",
        lambda t: t["bytes_out"],
    )
    yield per_thread(
        GaugeMetricFamily,
        "livechat_send_queue_bytes",
        "Bytes waiting in per-connection send queues.",
        lambda t: t["queue_bytes"],
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_slow_consumer_skipped_ticks_total",
        "Stale tick frames skipped for connections above send_queue_soft_bytes.",
        lambda t: t["ticks_skipped"],
    )
    closes = CounterMetricFamily(
        "livechat_slow_consumer_closes_total",
        "Slow consumers closed: queue over send_queue_hard_bytes (4008) or no write progress "
        "for write_timeout_ms (4009).",
        labels=["thread", "reason"],
    )
    for index, thread in enumerate(threads):
        closes.add_metric([str(index), "queue_cap"], thread["slow_closes"])
        closes.add_metric([str(index), "write_timeout"], thread["write_timeouts"])
    yield closes
    yield per_thread(
        CounterMetricFamily,
        "livechat_idle_closes_total",
        "Connections closed after idle_timeout_ms without a frame (1001).",
        lambda t: t["idle_closes"],
    )
    yield per_thread(
        CounterMetricFamily,
        "livechat_io_busy_seconds_total",
        "Time I/O threads spent working (not waiting in epoll).",
        lambda t: t["loop_busy_us"],
        1e-6,
    )
    yield counter(
        "livechat_events_published_total",
        "Events published to stream ticks (comments, tombstones, room events).",
        stats["events_published"],
    )
    yield counter("livechat_ticks_total", "Tick passes that built at least one frame.", stats["ticks"])
    yield counter(
        "livechat_tick_frames_built_total",
        "Tick frames built (one per stream per tick with news, shared by every subscriber).",
        stats["frames_built"],
    )
    yield counter(
        "livechat_tick_build_seconds_total",
        "Time spent encoding and compressing tick frames.",
        stats["tick_build_ns"] * 1e-9,
    )
    yield gauge("livechat_io_threads", "I/O threads of the edge.", stats["io_threads"])
    # A counter the core grows later still shows up, untyped, until it is named in EdgeStats.
    for key, value in stats.items():
        if key not in EDGE_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
            yield UnknownMetricFamily(f"livechat_edge_{key}", f"Edge.stats()[{key!r}].", value=value)
