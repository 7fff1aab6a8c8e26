"""``livechat worker persist``: the comment log -> the HistoryStore, and history's watermarks.

In shared-log mode (``kafka://``) this worker is the only writer of comments into history. Per
batch of log records (several partitions, each in offset order):

1. ``plan_records`` turns the records into store steps, in log order where order matters: comments
   -> ``put_many`` (a comment id already stored, or deleted, writes nothing: the port's idempotency
   and "deletes win" rules), ``del`` -> ``delete``, ``purge`` -> ``delete_user``; every other event
   (ban, pin, modes, highlight...) has nothing to store here. Comments are put in one ``put_many``
   per run of records up to a purge: a delete may go after the puts (its tombstone blocks a later
   put of the comment), but a purge must see exactly the user's comments logged before it.
2. ``PlanWriter`` runs the steps, then ``set_watermarks`` (stream -> offset of the stream's last
   record in the batch): a watermark only ever claims records whose writes returned. A step that
   fails (``BackendError``: Cassandra down, SQLite locked) is retried with backoff from that step
   on, never skipped, so the worker lags while a store is down and catches up after.
3. ``GroupLoop`` commits the consumer offsets after that. A worker killed between the writes and
   the commit redoes the batch: puts and deletes are idempotent. A purge is not, once the same
   user's later comments are stored (replayed, it would delete them and its tombstones would keep
   them out), so a batch is split after each purge (``plan_records`` returns one plan per part)
   and the offsets through the purge are committed (``checkpoint``) before the rest is written.

A record that is not a well-formed event (not msgpack, no ``k``, a comment without an integer
``id``) is logged, counted as ``skipped`` and passed over: it can never be written.

Steps 1 and 2 are ``livechat.workers.apply`` (imported, one copy): an embedded edge's start-up
replay of its SQLite log follows the same rules without importing a Kafka client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from livechat import tracing
from livechat.backends.kafka_connect import KafkaUrl
from livechat.ports.errors import BackendError
from livechat.ports.history import HistoryStore
from livechat.workers.apply import Plan, PlanWriter, apply_records, plan_records
from livechat.workers.group import Checkpoint, GroupLoop
from livechat.workers.metrics import WorkerMetrics
from livechat.workers.retry import Retrier
from livechat.workers.settings import MAX_BATCH_RECORDS, PERSIST_GROUP

# The log -> history rules live in ``livechat.workers.apply`` (one copy, shared with the embedded
# start-up replay); they are re-exported here for the worker's callers.
__all__ = ["PersistWorker", "PlanWriter", "apply_records", "plan_records", "run_persist"]


def _traceparent(record: Any) -> bytes | None:
    for name, value in record.headers or ():
        if name == tracing.TRACEPARENT:
            return bytes(value)
    return None


class PersistWorker:
    """The batch handler of ``livechat worker persist`` (see the module docstring)."""

    def __init__(self, history: HistoryStore, metrics: WorkerMetrics, retrier: Retrier) -> None:
        self._history = history
        self._metrics = metrics
        self._retrier = retrier

    async def handle(self, records: Sequence[Any], checkpoint: Checkpoint) -> None:
        plans = plan_records(records)
        start = 0
        for number, plan in enumerate(plans):
            writer = PlanWriter(self._history, plan)
            started = tracing.now_ns()
            await self._retrier.run("history_write", writer.write, (BackendError,))
            if started:
                traced = records[start : start + plan.records]
                tracing.record_spans("comment.persist", [_traceparent(r) for r in traced], started)
            self._count(plan)
            if number + 1 < len(plans):  # the plan ends with a purge: never redo it after what follows
                await checkpoint(records[start : start + plan.records])
            start += plan.records

    def _count(self, plan: Plan) -> None:
        metrics = self._metrics
        metrics.event("comments", plan.comments)
        metrics.event("deletes", plan.deletes)
        metrics.event("purges", plan.purges)
        metrics.event("ignored", plan.ignored)
        metrics.event("skipped", plan.skipped)


async def run_persist(
    log_url: str,
    history: HistoryStore,
    stop: asyncio.Event,
    *,
    group: str = PERSIST_GROUP,
    retention_s: float,
    metrics: WorkerMetrics | None = None,
    max_records: int = MAX_BATCH_RECORDS,
) -> WorkerMetrics:
    """Persist ``log_url``'s records into ``history`` until ``stop`` is set."""
    metrics = metrics or WorkerMetrics("persist")
    retrier = Retrier(stop, metrics)
    worker = PersistWorker(history, metrics, retrier)
    loop = GroupLoop(
        KafkaUrl.parse(log_url),
        group,
        worker.handle,
        metrics,
        retrier,
        retention_s=retention_s,
        max_records=max_records,
    )
    await loop.run()
    return metrics
