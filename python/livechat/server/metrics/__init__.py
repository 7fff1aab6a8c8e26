"""``/metrics``: a prometheus_client custom collector over counters kept elsewhere.

Every value is read at scrape time from counters that already exist (``Edge.stats()`` in Rust, the
chat services' ``ChatStats``, the broker timing, ``/proc/self``): nothing is counted twice and the
hot path pays nothing for metrics. That is the case prometheus_client's custom collectors serve:
``ScrapeCollector.collect()`` turns one ``MetricsInput`` into metric families, and
``prometheus_client.exposition.generate_latest`` writes them in the text format 0.0.4. One module
per source: ``edge``, ``chat``, ``broker``, ``process``; ``families`` has the shared helpers.

The names, types and labels are documented in ``docs/operations.md``; ``tests/ops`` checks the
output with the reference parser and against a scripted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from livechat.config import DEFAULTS
from livechat.server.metrics.broker import broker_families
from livechat.server.metrics.chat import chat_families
from livechat.server.metrics.edge import edge_families
from livechat.server.metrics.families import gauge, histogram
from livechat.server.metrics.process import process_families
from livechat.server.stats import EDGE_KEYS, BrokerTimes, EdgeStats
from livechat.services.stats import ChatStats

__all__ = [
    "CONTENT_TYPE",
    "EDGE_KEYS",
    "BrokerTimes",
    "MetricsInput",
    "ScrapeCollector",
    "histogram",
    "metrics_registry",
    "render",
]

#: What ``generate_latest`` writes (prometheus_client's CONTENT_TYPE_LATEST names a newer format).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class MetricsInput:
    """Everything one scrape reads (``livechat.server.admin.gather``); ``edge`` is None once the
    edge has stopped, ``chat`` before the services have started."""

    edge_id: str
    version: str
    ready: bool
    draining: bool
    edge: EdgeStats | None
    chat: ChatStats | None
    broker: BrokerTimes | None
    stream_series: int = DEFAULTS.ops.metrics_stream_series
    process: bool = True


class ScrapeCollector(Collector):
    """The whole page: ``read()`` is called once per scrape, and every family comes from what it
    returned (so one scrape is one consistent snapshot)."""

    def __init__(self, read: Callable[[], MetricsInput]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        data = self._read()
        info = GaugeMetricFamily(
            "livechat_build_info",
            "Always 1; labels name the version and this edge.",
            labels=["version", "edge_id"],
        )
        info.add_metric([data.version, data.edge_id], 1)
        yield info
        yield gauge("livechat_ready", "1 when /readyz answers 200.", int(data.ready))
        yield gauge("livechat_draining", "1 from SIGTERM until the process exits.", int(data.draining))
        if data.edge is not None:
            yield from edge_families(data.edge)
        if data.chat is not None:
            yield from chat_families(data.chat, data.stream_series)
        if data.broker is not None:
            yield from broker_families(data.broker)
        if data.process:
            yield from process_families()


def metrics_registry(read: Callable[[], MetricsInput]) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one) holding a ``ScrapeCollector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(read))
    return registry


def render(data: MetricsInput) -> str:
    """The ``/metrics`` page for ``data``."""
    return generate_latest(ScrapeCollector(lambda: data)).decode()
