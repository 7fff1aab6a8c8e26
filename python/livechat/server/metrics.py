"""``/metrics``: the Prometheus text exposition format (version 0.0.4), written by hand.

Every value is read at scrape time from counters that already exist (``Edge.stats()``, the chat
services' ``stats()``, the broker timing, ``/proc/self``): nothing is counted twice and the hot
path pays nothing for metrics. Why no ``prometheus_client``: its registry wants each metric
updated where it happens, while every number here is a snapshot of a counter kept elsewhere (in
Rust for the edge); a custom collector plus its global registry would be more code than the
~100 lines of exposition below, and one more dependency for every deployment.

The names, types and labels are documented in ``docs/operations.md``; ``tests/ops`` checks the
output with the reference parser and against a scripted run.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from livechat.histogram import HistogramSnapshot

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]
Sample = tuple[Labels, float]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items()) + "}"


class Exposition:
    """Metric families in the order they are added; each name is written once."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._names: set[str] = set()

    def _head(self, name: str, kind: str, help_text: str) -> None:
        if name in self._names:
            raise ValueError(f"metric family {name} written twice")
        self._names.add(name)
        self._lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        """A counter, gauge or untyped family; counters are named ``*_total`` by the caller."""
        self._head(name, kind, help_text)
        for labels, value in samples:
            self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(
        self, name: str, help_text: str, series: Iterable[tuple[Labels, HistogramSnapshot]]
    ) -> None:
        self._head(name, "histogram", help_text)
        for labels, snap in series:
            for bound, count in zip(snap.bounds, snap.cumulative, strict=True):
                self._lines.append(f"{name}_bucket{_labels({**labels, 'le': _number(float(bound))})} {count}")
            self._lines.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {snap.count}")
            self._lines.append(f"{name}_sum{_labels(labels)} {_number(snap.total)}")
            self._lines.append(f"{name}_count{_labels(labels)} {snap.count}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


# --- edge ---------------------------------------------------------------------------------------

# Edge.stats() key -> (metric, type, help, scale, extra labels). Per-thread keys get thread="i".
_EDGE_THREAD: Final[dict[str, tuple[str, str, str, float, dict[str, str]]]] = {
    "connections": ("livechat_connections", "gauge", "Open WebSocket connections.", 1, {}),
    "accepted": (
        "livechat_connections_accepted_total",
        "counter",
        "TCP connections accepted (counted before the upgrade request is read).",
        1,
        {},
    ),
    "rejected": (
        "livechat_connections_rejected_total",
        "counter",
        "Upgrade requests refused (malformed, not a WebSocket upgrade, over max_connections).",
        1,
        {},
    ),
    "handshake_timeouts": (
        "livechat_handshake_timeouts_total",
        "counter",
        "Connections dropped for not finishing the upgrade within handshake_timeout_ms.",
        1,
        {},
    ),
    "protocol_errors": (
        "livechat_protocol_errors_total",
        "counter",
        "Connections closed for breaking RFC 6455 / RFC 7692 (close 1002, 1007, 1009).",
        1,
        {},
    ),
    "messages_in": ("livechat_messages_in_total", "counter", "Whole client messages received.", 1, {}),
    "bytes_in": ("livechat_bytes_in_total", "counter", "Bytes read from client sockets.", 1, {}),
    "frames_out": (
        "livechat_frames_out_total",
        "counter",
        "Frames written to clients (tick frames, replies, control frames).",
        1,
        {},
    ),
    "deliveries": (
        "livechat_deliveries_total",
        "counter",
        "Events written to clients inside tick frames (one per event per subscriber).",
        1,
        {},
    ),
    "bytes_out": ("livechat_bytes_out_total", "counter", "Bytes written to client sockets.", 1, {}),
    "queue_bytes": (
        "livechat_send_queue_bytes",
        "gauge",
        "Bytes waiting in per-connection send queues.",
        1,
        {},
    ),
    "ticks_skipped": (
        "livechat_slow_consumer_skipped_ticks_total",
        "counter",
        "Stale tick frames skipped for connections above send_queue_soft_bytes.",
        1,
        {},
    ),
    "slow_closes": (
        "livechat_slow_consumer_closes_total",
        "counter",
        "Slow consumers closed: queue over send_queue_hard_bytes (4008) or no write progress "
        "for write_timeout_ms (4009).",
        1,
        {"reason": "queue_cap"},
    ),
    "write_timeouts": ("livechat_slow_consumer_closes_total", "counter", "", 1, {"reason": "write_timeout"}),
    "idle_closes": (
        "livechat_idle_closes_total",
        "counter",
        "Connections closed after idle_timeout_ms without a frame (1001).",
        1,
        {},
    ),
    "loop_busy_us": (
        "livechat_io_busy_seconds_total",
        "counter",
        "Time I/O threads spent working (not waiting in epoll).",
        1e-6,
        {},
    ),
}
_EDGE_GLOBAL: Final[dict[str, tuple[str, str, str, float]]] = {
    "events_published": (
        "livechat_events_published_total",
        "counter",
        "Events published to stream ticks (comments, tombstones, room events).",
        1,
    ),
    "ticks": ("livechat_ticks_total", "counter", "Tick passes that built at least one frame.", 1),
    "frames_built": (
        "livechat_tick_frames_built_total",
        "counter",
        "Tick frames built (one per stream per tick with news, shared by every subscriber).",
        1,
    ),
    "tick_build_ns": (
        "livechat_tick_build_seconds_total",
        "counter",
        "Time spent encoding and compressing tick frames.",
        1e-9,
    ),
    "io_threads": ("livechat_io_threads", "gauge", "I/O threads of the edge.", 1),
}
#: Keys of Edge.stats() that are aggregates of the per-thread values (written per thread instead).
EDGE_KEYS: Final = frozenset(_EDGE_THREAD) | frozenset(_EDGE_GLOBAL) | {"threads"}


def _edge(out: Exposition, stats: Mapping[str, Any]) -> None:
    threads: Sequence[Mapping[str, Any]] = stats.get("threads", [])
    families: dict[str, tuple[str, str, list[Sample]]] = {}
    for key, (name, kind, help_text, scale, extra) in _EDGE_THREAD.items():
        if key not in stats and not any(key in t for t in threads):
            continue
        if name not in families:
            families[name] = (kind, help_text, [])
        samples = families[name][2]
        for index, thread in enumerate(threads):
            if key in thread:
                samples.append(({"thread": str(index), **extra}, thread[key] * scale))
    for name, (kind, help_text, samples) in families.items():
        out.family(name, kind, help_text, samples)
    for key, (name, kind, help_text, scale) in _EDGE_GLOBAL.items():
        if key in stats:
            out.family(name, kind, help_text, [({}, stats[key] * scale)])
    # A counter the core grows later still shows up, untyped, until it is named here.
    for key, value in stats.items():
        if key not in EDGE_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
            out.family(f"livechat_edge_{key}", "untyped", f"Edge.stats()[{key!r}].", [({}, value)])


# --- chat ---------------------------------------------------------------------------------------

#: Error codes a post can be refused with (docs/protocol.md §6): always written, 0 until seen.
POST_REFUSALS: Final = (
    "not_joined",
    "read_only",
    "text_empty",
    "text_too_long",
    "bad_text",
    "banned",
    "timed_out",
    "comments_off",
    "followers_only",
    "slow_mode",
    "rate_limited",
    "stream_busy",
    "rejected",
    "unavailable",
    "internal",
)
BREAKER_STATES: Final = ("closed", "open", "half_open")


def _by(label: str, counts: Mapping[str, int], always: Iterable[str] = ()) -> list[Sample]:
    merged = dict.fromkeys(always, 0)
    merged.update(counts)
    return [({label: key}, value) for key, value in sorted(merged.items())]


def _chat(out: Exposition, stats: Mapping[str, Any], stream_series: int) -> None:
    comments = stats["comments"]
    out.family(
        "livechat_sessions", "gauge", "Authenticated connections (chat sessions).", [({}, stats["sessions"])]
    )
    out.family("livechat_rooms", "gauge", "Streams loaded on this edge.", [({}, stats["rooms"])])
    out.family(
        "livechat_joins_total",
        "counter",
        "Joins that subscribed a connection to a stream.",
        [({}, stats["joins"])],
    )
    out.family(
        "livechat_auth_refused_total",
        "counter",
        "Connections refused at open by the token check, by error code.",
        _by("code", stats["auth_refused"], ("auth_required", "auth_invalid", "auth_expired")),
    )
    out.family(
        "livechat_comments_accepted_total",
        "counter",
        "Comments stored and acknowledged (shadow-banned ones excluded).",
        [({}, comments["accepted"])],
    )
    out.family(
        "livechat_comments_rejected_total",
        "counter",
        "Posts refused, by the error code the author got.",
        _by("reason", stats["posts_refused"], POST_REFUSALS),
    )
    out.family(
        "livechat_comments_duplicate_total",
        "counter",
        "Reposts of a known client message id, answered with the first ack.",
        [({}, comments["duplicates"])],
    )
    out.family(
        "livechat_comments_sampled_out_total",
        "counter",
        "Accepted comments left out of the stream tick by adaptive sampling.",
        [({}, comments["sampled_out"])],
    )
    out.family(
        "livechat_comments_shadowed_total",
        "counter",
        "Comments of shadow-banned authors (shown to the author only).",
        [({}, comments["shadowed"])],
    )
    out.family(
        "livechat_comments_pending",
        "gauge",
        "Comments admitted and waiting for storage (acks go out once stored).",
        [({}, stats["comments_pending"])],
    )
    out.family(
        "livechat_error_replies_total",
        "counter",
        "Error replies sent to clients, by code.",
        _by("code", stats["errors_sent"]),
    )
    moderation = stats["moderation"]
    out.family(
        "livechat_moderation_classifier_calls_total",
        "counter",
        "Classifier calls by outcome.",
        [
            ({"outcome": "ok"}, moderation["reviewed"]),
            ({"outcome": "timeout"}, moderation["timeouts"]),
            ({"outcome": "error"}, moderation["failures"]),
        ],
    )
    out.family(
        "livechat_moderation_skipped_total",
        "counter",
        "Comments not sent to the classifier: breaker open, or too late for the tombstone budget.",
        [
            ({"reason": "breaker_open"}, moderation["breaker_skipped"]),
            ({"reason": "backlog"}, moderation["backlog_skipped"]),
        ],
    )
    out.family(
        "livechat_moderation_verdicts_total",
        "counter",
        "Classifier verdicts by decision (reject and shadow_ban retro-delete the comment).",
        _by("decision", stats["moderation_verdicts"]),
    )
    out.histogram(
        "livechat_moderation_classifier_seconds",
        "Wall time of each classifier call, timeouts and errors included.",
        [({}, stats["moderation_latency"])],
    )
    state = stats["breaker"]
    out.family(
        "livechat_moderation_breaker_state",
        "gauge",
        "Classifier circuit breaker: 1 for the current state.",
        [({"state": s}, 1 if s == state else 0) for s in BREAKER_STATES],
    )
    tiers: Mapping[str, tuple[int, float]] = stats["tiers"]
    per_tier: dict[str, int] = {}
    for level, _ in tiers.values():
        per_tier[str(level)] = per_tier.get(str(level), 0) + 1
    out.family(
        "livechat_sampling_streams",
        "gauge",
        "Streams with recent comments, by sampling tier (0 = everything broadcast).",
        _by("tier", per_tier, ["0"]),
    )
    busiest = sorted(tiers.items(), key=lambda item: (-item[1][1], item[0]))[:stream_series]
    out.family(
        "livechat_sampling_tier",
        "gauge",
        "Sampling tier of the busiest streams (lvl > 0: 'chat is moving fast').",
        [({"stream": stream}, level) for stream, (level, _) in busiest],
    )
    out.family(
        "livechat_stream_comment_rate",
        "gauge",
        "Comments per second of the busiest streams, as the sampler measures it.",
        [({"stream": stream}, rate) for stream, (_, rate) in busiest],
    )
    out.family(
        "livechat_idempotency_entries",
        "gauge",
        "Client message ids remembered for idempotent reposts.",
        [({}, stats["idempotency_entries"])],
    )
    out.family(
        "livechat_background_failures_total",
        "counter",
        "Background writes (flags, strikes, broker publishes) that failed.",
        [({}, stats["background_failures"])],
    )


# --- broker and process -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerTimes:
    publish: HistogramSnapshot
    published_events: int
    publish_errors: int
    probe: HistogramSnapshot
    probe_errors: int
    up: bool | None


def _broker(out: Exposition, broker: BrokerTimes) -> None:
    out.histogram(
        "livechat_broker_publish_seconds",
        "Broker publish round trip of each write to other edges (Redis: SPUBLISH to reply); "
        "a batch of events shares one.",
        [({}, broker.publish)],
    )
    out.family(
        "livechat_broker_published_events_total",
        "counter",
        "Events sent to other edges through the broker.",
        [({}, broker.published_events)],
    )
    out.family(
        "livechat_broker_publish_errors_total",
        "counter",
        "Publishes the broker refused or could not take.",
        [({}, broker.publish_errors)],
    )
    out.histogram(
        "livechat_broker_probe_seconds",
        "Round trip of the periodic broker probe (ops.broker_probe_interval_s).",
        [({}, broker.probe)],
    )
    out.family(
        "livechat_broker_probe_errors_total", "counter", "Failed broker probes.", [({}, broker.probe_errors)]
    )
    if broker.up is not None:
        out.family(
            "livechat_broker_up",
            "gauge",
            "1 when the last broker probe succeeded.",
            [({}, 1 if broker.up else 0)],
        )


def _proc_stat() -> dict[str, float]:
    """process_* metrics from /proc/self (Linux, a few µs); empty elsewhere."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
    except (OSError, StopIteration, IndexError, ValueError):
        return {}
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Fields after the command name, 0-based: 11 utime, 12 stime, 17 num_threads, 19 starttime,
    # 20 vsize, 21 rss (pages).
    return {
        "process_cpu_seconds_total": (int(fields[11]) + int(fields[12])) / ticks,
        "process_threads": int(fields[17]),
        "process_start_time_seconds": boot + int(fields[19]) / ticks,
        "process_virtual_memory_bytes": int(fields[20]),
        "process_resident_memory_bytes": int(fields[21]) * page,
        "process_max_fds": soft,
    }


_PROCESS_HELP: Final = {
    "process_cpu_seconds_total": ("counter", "User and system CPU time of the process."),
    "process_threads": ("gauge", "Threads of the process."),
    "process_start_time_seconds": ("gauge", "Start time of the process since the Unix epoch."),
    "process_virtual_memory_bytes": ("gauge", "Virtual memory size."),
    "process_resident_memory_bytes": (
        "gauge",
        "Resident set size (divide by livechat_connections for bytes per connection).",
    ),
    # No process_open_fds: counting /proc/self/fd walks a million entries on a dense edge; open
    # descriptors are livechat_connections plus a few dozen.
    "process_max_fds": ("gauge", "Open file descriptor limit (ulimit -n)."),
}


# --- the page -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricsInput:
    """Everything one scrape reads, gathered by the admin server."""

    edge_id: str
    version: str
    ready: bool
    draining: bool
    edge: Mapping[str, Any]
    chat: Mapping[str, Any] | None
    broker: BrokerTimes | None
    stream_series: int = 50
    process: bool = True


def render(data: MetricsInput) -> str:
    out = Exposition()
    out.family(
        "livechat_build_info",
        "gauge",
        "Always 1; labels name the version and this edge.",
        [({"version": data.version, "edge_id": data.edge_id}, 1)],
    )
    out.family("livechat_ready", "gauge", "1 when /readyz answers 200.", [({}, 1 if data.ready else 0)])
    out.family(
        "livechat_draining",
        "gauge",
        "1 from SIGTERM until the process exits.",
        [({}, 1 if data.draining else 0)],
    )
    _edge(out, data.edge)
    if data.chat is not None:
        _chat(out, data.chat, data.stream_series)
    if data.broker is not None:
        _broker(out, data.broker)
    if data.process:
        for name, value in _proc_stat().items():
            kind, help_text = _PROCESS_HELP[name]
            out.family(name, kind, help_text, [({}, value)])
    return out.text()
