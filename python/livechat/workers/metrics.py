"""A worker's Prometheus series (own registry, so several workers can live in one process) and the
optional ``/metrics`` HTTP port.

Series (label ``worker``: persist | notify):
- ``livechat_worker_records_total``: log records handled (committed or about to be).
- ``livechat_worker_batches_total``, ``livechat_worker_batch_seconds``: batches and their time
  from fetch to commit.
- ``livechat_worker_lag_records{partition}``: records between the worker's progress and the log's
  end, measured every ``LAG_INTERVAL_S``; ``livechat_worker_lag_total_records`` is their sum.
- ``livechat_worker_retries_total{step}``: failed attempts of a store write, produce, commit...
- ``livechat_worker_events_total{event}``: what the worker did (persist: comments, deletes,
  purges, skipped; notify: mention, reply, unknown_handle, webhook_sent, webhook_dropped...).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("livechat.workers")

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class WorkerMetrics:
    """The series of one worker (see the module docstring)."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.registry = CollectorRegistry()
        labels = ("worker",)
        self._records = Counter(
            "livechat_worker_records", "Log records handled", labels, registry=self.registry
        ).labels(worker)
        self._batches = Counter(
            "livechat_worker_batches", "Batches handled", labels, registry=self.registry
        ).labels(worker)
        self._batch_seconds = Histogram(
            "livechat_worker_batch_seconds",
            "Time from a batch's fetch to its commit",
            labels,
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        ).labels(worker)
        self._lag = Gauge(
            "livechat_worker_lag_records",
            "Records between the worker's progress and the end of the partition",
            ("worker", "partition"),
            registry=self.registry,
        )
        self._lag_total = Gauge(
            "livechat_worker_lag_total_records",
            "Sum of the lag of every assigned partition",
            labels,
            registry=self.registry,
        ).labels(worker)
        self._retries = Counter(
            "livechat_worker_retries",
            "Failed attempts that were retried",
            ("worker", "step"),
            registry=self.registry,
        )
        self._events = Counter(
            "livechat_worker_events", "What the worker did", ("worker", "event"), registry=self.registry
        )
        # Plain counts too, for the periodic log line and tests (no registry walk).
        self.records = 0
        self.events: dict[str, int] = {}
        self.lag: dict[int, int] = {}

    def batch(self, records: int, seconds: float) -> None:
        self.records += records
        self._records.inc(records)
        self._batches.inc()
        self._batch_seconds.observe(seconds)

    def event(self, name: str, count: int = 1) -> None:
        if count:
            self.events[name] = self.events.get(name, 0) + count
            self._events.labels(self.worker, name).inc(count)

    def retry(self, step: str) -> None:
        self.event(f"retry_{step}")
        self._retries.labels(self.worker, step).inc()

    def set_lag(self, lag: dict[int, int]) -> None:
        for partition in set(self.lag) - set(lag):
            self._lag.remove(self.worker, str(partition))
        for partition, value in lag.items():
            self._lag.labels(self.worker, str(partition)).set(value)
        self._lag_total.set(sum(lag.values()))
        self.lag = dict(lag)

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on a daemon thread; returns the port (``port`` 0: any free one)."""
        server: Any
        server, _ = start_http_server(port, host, registry=self.registry)
        bound = int(server.server_port)
        log.info(
            "%s worker: metrics on http://%s:%d/metrics",
            self.worker,
            host,
            bound,
            extra={"event": "worker_metrics", "port": bound},
        )
        return bound
