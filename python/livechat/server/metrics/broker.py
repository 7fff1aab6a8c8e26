"""``/metrics`` families of the broker round trips (``livechat.server.broker_timing``)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from livechat.server.metrics.families import counter, gauge, histogram
from livechat.server.stats import BrokerTimes


def broker_families(broker: BrokerTimes) -> Iterator[Metric]:
    yield histogram(
        "livechat_broker_publish_seconds",
        "Broker publish round trip of each write to other edges (Redis: SPUBLISH to reply); "
        "a batch of events shares one.",
        broker.publish,
    )
    yield counter(
        "livechat_broker_published_events_total",
        "Events sent to other edges through the broker.",
        broker.published_events,
    )
    yield counter(
        "livechat_broker_publish_errors_total",
        "Publishes the broker refused or could not take.",
        broker.publish_errors,
    )
    yield histogram(
        "livechat_broker_probe_seconds",
        "Round trip of the periodic broker probe (ops.broker_probe_interval_s).",
        broker.probe,
    )
    yield counter("livechat_broker_probe_errors_total", "Failed broker probes.", broker.probe_errors)
    if broker.up is not None:
        yield gauge("livechat_broker_up", "1 when the last broker probe succeeded.", int(broker.up))
