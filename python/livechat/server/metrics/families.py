"""Building blocks of the ``/metrics`` families: prometheus_client's metric families, filled from
snapshots (counters kept elsewhere), never updated in place."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from livechat.histogram import HistogramSnapshot


def counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    """``name`` ends in ``_total``: prometheus_client strips it and writes it back on the samples."""
    return CounterMetricFamily(name, help_text, value=value)


def gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def labelled(
    family: CounterMetricFamily | GaugeMetricFamily,
    counts: Mapping[str, float],
    always: Iterable[str] = (),
) -> CounterMetricFamily | GaugeMetricFamily:
    """One sample per key of ``counts`` (label sorted), and a 0 for each of ``always`` not in it."""
    merged: dict[str, float] = dict.fromkeys(always, 0)
    merged.update(counts)
    for key, value in sorted(merged.items()):
        family.add_metric([key], value)
    return family


@functools.cache
def _bucket_labels(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """``le`` of each bound, then ``+Inf``; "1" rather than prometheus_client's "1.0", the label
    values dashboards already query."""
    return (*(str(int(b)) if b.is_integer() else repr(b) for b in bounds), "+Inf")


def histogram(name: str, help_text: str, snapshot: HistogramSnapshot, **labels: str) -> HistogramMetricFamily:
    """A histogram family of one series (``labels``) from a ``HistogramSnapshot``."""
    family = HistogramMetricFamily(name, help_text, labels=list(labels))
    counts = (*snapshot.cumulative, snapshot.count)
    buckets = list(zip(_bucket_labels(snapshot.bounds), map(float, counts), strict=True))
    family.add_metric(list(labels.values()), buckets, snapshot.total)
    return family
