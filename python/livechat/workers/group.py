"""The consumer-group loop the workers share: fetch a batch, hand it to the worker, commit.

Offsets are committed only after the worker's handler returned for the batch (``enable_auto_commit``
off), so a worker killed at any point restarts from the last batch it finished and redoes at most
the batch in hand. A handler may also ``checkpoint`` part of the batch (commit through it, retried
until Kafka takes it) before going on, when redoing that part after later work would be wrong. A
handler retries its own failures (``Retrier``) and returns only when its work is done; the loop
never skips a batch. A commit that fails because the partitions moved to another member (a
rebalance) is dropped: the new owner redoes those records from the last commit. Any other failed
commit is sent again with the next batch's (or at stop).

Lag (records between the worker's progress and the end of each assigned partition) is measured
every ``LAG_INTERVAL_S`` by a separate task, so it keeps being reported while a handler waits for a
store that is down: that is when it grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    CommitFailedError,
    IllegalStateError,
    KafkaError,
)

from livechat.backends.kafka_connect import CONNECT_TIMEOUT_S, KafkaUrl
from livechat.backends.kafka_topic import ensure_topic
from livechat.ports.errors import BackendError
from livechat.workers.metrics import WorkerMetrics
from livechat.workers.retry import Retrier, Stopped
from livechat.workers.settings import (
    FETCH_MAX_BYTES,
    FETCH_MAX_WAIT_MS,
    FETCH_MIN_BYTES,
    HEARTBEAT_INTERVAL_MS,
    LAG_INTERVAL_S,
    MAX_BATCH_RECORDS,
    MAX_PARTITION_FETCH_BYTES,
    POLL_TIMEOUT_MS,
    RETRY_MAX_S,
    RETRY_MIN_S,
    SESSION_TIMEOUT_MS,
    STOP_TIMEOUT_S,
)

log = logging.getLogger("livechat.workers")

#: ``checkpoint(records)``: commit through these records of the batch in hand before going on.
Checkpoint = Callable[[Sequence[Any]], Awaitable[None]]
#: A worker's job for one batch: records of several partitions, each partition's in offset order.
#: Returns when the work is done (retrying by itself); raises ``Stopped`` when asked to stop, or
#: lets ``PartitionsMoved`` from ``checkpoint`` through.
BatchHandler = Callable[[Sequence[Any], Checkpoint], Awaitable[None]]


class PartitionsMoved(Exception):
    """A commit was refused: a rebalance gave the batch's partitions to another member."""


_CONNECT_ERRORS = (BackendError, KafkaError, OSError, TimeoutError)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: GroupLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._loop.partitions_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._loop.partitions_assigned(set(assigned))


class GroupLoop:
    """Consumes ``url.topic`` in consumer group ``group`` and feeds ``handler`` (module docstring)."""

    def __init__(
        self,
        url: KafkaUrl,
        group: str,
        handler: BatchHandler,
        metrics: WorkerMetrics,
        retrier: Retrier,
        *,
        retention_s: float,
        max_records: int = MAX_BATCH_RECORDS,
    ) -> None:
        self._url = url
        self._group = group
        self._handler = handler
        self._metrics = metrics
        self._retrier = retrier
        self._retention_s = retention_s
        self._max_records = max_records
        self._consumer: Any = None
        # Partition -> the next offset to commit (batches handled, commit not yet acknowledged).
        self._pending: dict[Any, int] = {}
        # Partition -> the offset after the last record handled (the lag's reference).
        self._progress: dict[Any, int] = {}

    async def run(self) -> None:
        """Consume until the retrier's stop event is set; then commit what was finished and leave
        the group."""
        try:
            consumer = self._consumer = await self._retrier.run("connect", self._connect, _CONNECT_ERRORS)
        except Stopped:
            return
        lag_task = asyncio.get_running_loop().create_task(self._report_lag())
        try:
            await self._consume(consumer)
        except Stopped:
            pass
        finally:
            lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag_task
            # Bounded: with Kafka unreachable a commit would be retried for as long as it lasts.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await self._commit()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await consumer.stop()
            log.info("%s worker: stopped", self._metrics.worker, extra={"event": "worker_stopped"})

    async def _connect(self) -> Any:
        await ensure_topic(self._url, self._retention_s)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._url.bootstrap,
            client_id=f"livechat-{self._metrics.worker}",
            group_id=self._group,
            enable_auto_commit=False,
            # A new group starts at the oldest record the topic keeps.
            auto_offset_reset="earliest",
            max_poll_records=self._max_records,
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_MAX_BYTES,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            isolation_level="read_uncommitted",
        )
        consumer.subscribe([self._url.topic], listener=_Listener(self))
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        log.info(
            "%s worker: consuming %s as group %s",
            self._metrics.worker,
            self._url.topic,
            self._group,
            extra={"event": "worker_started", "topic": self._url.topic, "group": self._group},
        )
        return consumer

    async def _consume(self, consumer: Any) -> None:
        retrier = self._retrier
        while True:
            retrier.check()
            try:
                batch = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=self._max_records)
            except KafkaError as exc:  # aiokafka reconnects by itself; this is what surfaced
                self._metrics.retry("fetch")
                log.warning("%s worker: fetch failed: %s", self._metrics.worker, exc)
                await retrier.sleep(1.0)
                continue
            if not batch:
                continue
            started = time.monotonic()
            records = [record for part in batch.values() for record in part]
            try:
                await self._handler(records, self.checkpoint)
            except PartitionsMoved:
                # After a rebalance aiokafka fetches every partition it keeps from its committed
                # offset again, so the rest of this batch comes back (here or to the new owner).
                continue
            for tp, part in batch.items():
                self._pending[tp] = self._progress[tp] = part[-1].offset + 1
            await self._commit()
            self._metrics.batch(len(records), time.monotonic() - started)

    async def checkpoint(self, records: Sequence[Any]) -> None:
        """Commit through ``records`` (part of the batch in hand, whose work is done) before the
        handler goes on; a failed commit is retried. Raises ``PartitionsMoved`` when a rebalance
        took their partitions (the handler must stop: their new owner redoes them)."""
        offsets: dict[Any, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        for tp, offset in offsets.items():
            self._pending[tp] = self._progress[tp] = offset
        delay = RETRY_MIN_S
        while True:
            outcome = await self._commit(set(offsets))
            if outcome == "moved":
                raise PartitionsMoved
            if outcome == "ok":
                return
            await self._retrier.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _commit(self, only: set[Any] | None = None) -> str:
        """Commit the pending offsets (of ``only``): "ok", "moved" (partitions taken by a
        rebalance: dropped from pending) or "failed" (kept, sent again with the next commit)."""
        consumer = self._consumer
        if consumer is None:
            return "ok"
        assigned = consumer.assignment()
        moved = [tp for tp in self._pending if tp not in assigned]
        for tp in moved:
            del self._pending[tp]  # its new owner redoes what was not committed
        offsets = {tp: o for tp, o in self._pending.items() if only is None or tp in only}
        if not offsets:
            return "moved" if only is not None and any(tp not in assigned for tp in only) else "ok"
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            self._metrics.event("commit_lost")
            log.info(
                "%s worker: commit refused (partitions moved; their new owner redoes %s): %s",
                self._metrics.worker,
                _describe(offsets),
                exc,
            )
            for tp in offsets:
                self._pending.pop(tp, None)
            return "moved"
        except KafkaError as exc:
            self._metrics.retry("commit")
            log.warning("%s worker: commit failed (sent again later): %s", self._metrics.worker, exc)
            return "failed"
        for tp, offset in offsets.items():
            if self._pending.get(tp) == offset:
                del self._pending[tp]
        return "ok"

    async def partitions_revoked(self, revoked: set[Any]) -> None:
        """Before a rebalance moves partitions: commit what this member finished of them."""
        await self._commit(revoked)
        for tp in revoked:
            self._progress.pop(tp, None)

    def partitions_assigned(self, assigned: set[Any]) -> None:
        log.info(
            "%s worker: assigned partitions %s",
            self._metrics.worker,
            sorted(tp.partition for tp in assigned),
            extra={"event": "worker_assigned"},
        )

    async def lag(self) -> dict[int, int]:
        """Records between this worker's progress and the end, per assigned partition."""
        consumer = self._consumer
        tps = list(consumer.assignment()) if consumer is not None else []
        if not tps:
            return {}
        ends = await consumer.end_offsets(tps)
        lag: dict[int, int] = {}
        for tp in tps:
            done = self._progress.get(tp)
            if done is None:
                done = await consumer.committed(tp)
                if done is None:
                    done = (await consumer.beginning_offsets([tp]))[tp]
            lag[tp.partition] = max(0, int(ends[tp]) - int(done))
        return lag

    async def _report_lag(self) -> None:
        metrics = self._metrics
        records, at = metrics.records, time.monotonic()
        while True:
            await asyncio.sleep(LAG_INTERVAL_S)
            try:
                lag = await self.lag()
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("%s worker: lag not measured: %s", metrics.worker, exc)
                continue
            metrics.set_lag(lag)
            now = time.monotonic()
            rate = (metrics.records - records) / (now - at)
            records, at = metrics.records, now
            log.info(
                "%s worker: lag %d records %s; %.0f records/s",
                metrics.worker,
                sum(lag.values()),
                dict(sorted(lag.items())),
                rate,
                extra={"event": "worker_lag", "lag": sum(lag.values()), "rate": round(rate, 1)},
            )


def _describe(offsets: dict[Any, int]) -> str:
    return ", ".join(f"p{tp.partition}<{offset}" for tp, offset in sorted(offsets.items()))
