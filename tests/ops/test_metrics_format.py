"""The /metrics collector against the reference parser: escaping, histograms, label sets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from livechat.histogram import LatencyHistogram
from livechat.server.metrics import MetricsInput, histogram, render
from livechat.server.stats import EdgeStats, EdgeThreadStats
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tests.ops.ops_helpers import parse_metrics

CHAT_STATS = {
    "sessions": 2,
    "rooms": 1,
    "joins": 3,
    "auth_refused": {},
    "comments": {
        "accepted": 5,
        "duplicates": 1,
        "sampled_out": 0,
        "shadowed": 0,
        "rejected": 1,
        "reply_unknown": 2,
    },
    "hold": {"held": 3, "released": 2},
    "comments_pending": 0,
    "posts_refused": {"rejected": 1, "some_future_code": 2},
    "errors_sent": {"rejected": 1, "bad_field": 4},
    "moderation": {"reviewed": 4, "timeouts": 1, "failures": 0, "breaker_skipped": 0, "backlog_skipped": 0},
    "moderation_verdicts": {"accept": 4, "reject": 0, "shadow_ban": 0, "flag": 0},
    "moderation_latency": LatencyHistogram().snapshot(),
    "breaker": "half_open",
    "tiers": {'we"ird\\stream\n': (2, 123.5), "quiet": (0, 0.5)},
    "idempotency_entries": 5,
    "background_failures": 0,
}


def thread_stats() -> EdgeThreadStats:
    """Every counter of one I/O thread, all 0."""
    return cast(EdgeThreadStats, dict.fromkeys(EdgeThreadStats.__required_keys__, 0))


def edge_stats(**values: int) -> EdgeStats:
    """``Edge.stats()`` of a one-thread edge: every counter 0 but ``values``."""
    stats = dict.fromkeys(EdgeStats.__required_keys__, 0) | values
    return cast(EdgeStats, {**stats, "io_threads": 1, "threads": [thread_stats()]})


def test_histogram_buckets_are_cumulative() -> None:
    h = LatencyHistogram((0.001, 0.01, 0.1))
    for seconds in (0.0005, 0.001, 0.005, 0.05, 3.0):
        h.observe(seconds)
    snap = h.snapshot()
    assert snap.cumulative == (2, 3, 4) and snap.count == 5
    family = histogram("t_seconds", "help with \\ and\nnewline", snap, op="x")

    class One(Collector):
        def collect(self) -> Iterator[Metric]:
            yield family

    m = parse_metrics(generate_latest(One()).decode())
    assert m.value("t_seconds_bucket", op="x", le="0.001") == 2
    assert m.value("t_seconds_bucket", op="x", le="+Inf") == 5
    assert m.value("t_seconds_count", op="x") == 5
    assert abs(m.value("t_seconds_sum", op="x") - 3.0565) < 1e-9


def test_full_page_parses_and_escapes_labels() -> None:
    text = render(
        MetricsInput(
            edge_id="e1",
            version="0.1.0",
            ready=True,
            draining=False,
            edge={
                **edge_stats(ticks=4),
                "threads": [{**thread_stats(), "connections": 2, "accepted": 7}],
                "new_thing": 9,
            },
            chat=CHAT_STATS,
            broker=None,
            stream_series=1,
            process=False,
        )
    )
    m = parse_metrics(text)
    assert m.value("livechat_connections", thread="0") == 2
    assert m.value("livechat_ticks_total") == 4
    assert m.value("livechat_comments_reply_unknown_total") == 2
    assert m.value("livechat_hold_comments_total", outcome="held") == 3
    assert m.value("livechat_hold_comments_total", outcome="no_verdict") == 0  # written before it happens
    assert m.types["livechat_edge_new_thing"] == "unknown"  # a counter the core added later
    # Only the busiest stream (stream_series=1), its awkward name escaped and read back intact.
    assert m.labelled("livechat_sampling_tier", "stream") == {'we"ird\\stream\n': 2}
    assert (
        m.value("livechat_sampling_streams", tier="0") == 1
        and m.value("livechat_sampling_streams", tier="2") == 1
    )
    assert m.value("livechat_comments_rejected_total", reason="some_future_code") == 2
    assert m.value("livechat_comments_rejected_total", reason="slow_mode") == 0  # written before it happens
    assert m.value("livechat_moderation_breaker_state", state="half_open") == 1
    assert "livechat_broker_up" not in m.types


def test_every_metric_is_documented() -> None:
    """docs/operations.md §1 names every family /metrics can write (edge, chat, broker, process)."""
    from pathlib import Path

    from livechat.server.metrics import BrokerTimes

    snap = LatencyHistogram().snapshot()
    page = render(
        MetricsInput("e", "v", True, False, edge_stats(), CHAT_STATS, BrokerTimes(snap, 0, 0, snap, 0, True))
    )
    names = {line.split()[2] for line in page.splitlines() if line.startswith("# TYPE")}
    assert len(names) > 50
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    missing = sorted(name for name in names if f"`{name}" not in doc)
    assert not missing, missing
