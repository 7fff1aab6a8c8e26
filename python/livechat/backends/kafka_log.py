"""CommentLog on Kafka: one topic, the stream id as the record key, so each stream lives on one
partition and that partition is the stream's sequencer for every edge.

Writes: an idempotent producer (``enable_idempotence=True``, ``acks="all"``, set explicitly) and
one sequencer task per log. ``append_many`` queues its entries; the sequencer takes everything
queued (group commit), checks the dedupe window (``kafka_dedupe``), and packs the new records into
one record batch per partition (more when one fills ``MAX_BATCH_BYTES``), sent in call order. A
record batch is stored atomically by its partition leader, and the idempotent producer keeps
batches of one partition in order across retries, so records of one stream take offsets in call
order.

All or nothing: an ``append_many`` returns only when every batch holding one of its records was
acknowledged by the broker (acks=all: by every in-sync replica); if any failed or timed out
(``APPEND_TIMEOUT_S``) it raises BackendUnavailable and acknowledges nothing. Batches of that call
that did land stay in the log: their client_msg_ids are confirmed in the dedupe window anyway, so
the author's retry gets the stored original (``duplicate=True``) instead of a second record;
records without a client_msg_id are appended again by a retry (the ``CommentLog`` repeat rule).

Offsets are the records' Kafka offsets in their partition: strictly increasing per stream, not
dense (other streams share the partition). ``read`` scans the stream's partition from an offset
and keeps the stream's records, so its cost grows with the partition's traffic since that offset;
history pages belong to the HistoryStore. The epoch is the cluster id plus the topic id, which
changes when the topic is recreated.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]

from livechat.backends.kafka_connect import (
    APPEND_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    FETCH_MAX_WAIT_MS,
    HEADER_CMID,
    HEADER_ORIGIN,
    MAX_BATCH_BYTES,
    MAX_PARTITION_FETCH_BYTES,
    MAX_REQUEST_BYTES,
    READERS,
    REQUEST_TIMEOUT_MS,
    KafkaUrl,
    partition_of,
    translate,
)
from livechat.backends.kafka_dedupe import Key, LocalWindow, Original, Pending, RedisDedupe
from livechat.backends.kafka_topic import TopicInfo, ensure_topic
from livechat.ports.comment_log import LogAppend, LogEntry, LogRecord
from livechat.ports.errors import BackendError, BackendUnavailable, ClosedError
from livechat.tracing import TRACEPARENT

log = logging.getLogger("livechat.backends.kafka")

# Records one sequencer round takes from the queue (one dedupe round trip, one batch per
# partition for most rounds).
MAX_ROUND_RECORDS = 20_000
# The producer waits this long for more records before sending a batch that is not full. 0: the
# edge already group-commits, and while one batch per partition is in flight the next one fills.
LINGER_MS = 0
# Largest payload accepted: a record must fit one produce request (and the broker's default
# message.max.bytes, 1 MiB) with its key and headers.
MAX_RECORD_BYTES = MAX_REQUEST_BYTES - 16 * 1024
# ``last_offset`` scans backwards in windows of this many records, growing 4x per step.
SCAN_WINDOW = 1024


async def start_producer(url: KafkaUrl) -> Any:
    """A started idempotent producer with the topic's metadata loaded; BackendUnavailable when
    the brokers cannot be reached within ``CONNECT_TIMEOUT_S``."""
    producer = AIOKafkaProducer(
        bootstrap_servers=url.bootstrap,
        client_id="livechat-log",
        # Both explicit: the broker drops the producer's own resends (no repeats from retries,
        # order kept per partition) and acknowledges only what every in-sync replica holds.
        enable_idempotence=True,
        acks="all",
        linger_ms=LINGER_MS,
        max_batch_size=MAX_BATCH_BYTES,
        max_request_size=MAX_REQUEST_BYTES,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await producer.start()
            await producer.partitions_for(url.topic)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await producer.stop()
        if isinstance(exc, TimeoutError):
            raise BackendUnavailable(f"kafka: producer could not connect to {url.bootstrap}") from exc
        if isinstance(exc, Exception) and not isinstance(exc, BackendError):
            raise translate(exc, "connect") from exc
        raise
    return producer


def record_from(msg: Any, stream: str) -> LogRecord:
    """A LogRecord from an aiokafka ConsumerRecord of ``stream``."""
    cmid = origin = None
    trace: bytes | None = None
    for name, value in msg.headers:
        if name == HEADER_CMID:
            cmid = value.decode()
        elif name == HEADER_ORIGIN:
            origin = value.decode()
        elif name == TRACEPARENT:
            trace = value
    return LogRecord(stream, msg.offset, msg.value, cmid, msg.timestamp / 1000, origin, trace)


def consumer_for(url: KafkaUrl, client_id: str) -> Any:
    """A consumer without a group (partitions are assigned by hand, offsets kept by the caller)."""
    return AIOKafkaConsumer(
        bootstrap_servers=url.bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        # A position below the log start (retention) restarts at the oldest record kept.
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        isolation_level="read_uncommitted",
    )


@dataclass(slots=True)
class _Job:
    """One ``append_many`` call waiting in the sequencer queue."""

    entries: list[LogEntry]
    future: asyncio.Future[list[LogAppend]]


@dataclass(slots=True)
class _Round:
    """What one sequencer round sent and what each job waits for."""

    jobs: list[_Job]
    # Per job, per entry: ("new", slot) | ("dup", Original) | ("chain", future) | ("wait", key)
    plans: list[list[tuple[str, Any]]] = field(default_factory=list)
    # Per new slot: (entry, key it owns or None, batch index, index in the batch)
    slots: list[tuple[LogEntry, Key | None, int, int]] = field(default_factory=list)
    batches: list[asyncio.Future[Any]] = field(default_factory=list)
    # Keys first appended by this round, resolved when it completes.
    owned: dict[Key, asyncio.Future[Original]] = field(default_factory=dict)
    error: BackendError | None = None


class KafkaCommentLog:
    """Durable per-stream log on a Kafka topic (see the module and ``CommentLog`` docstrings)."""

    def __init__(
        self,
        url: KafkaUrl,
        info: TopicInfo,
        producer: Any,
        shared: RedisDedupe | None,
        dedupe_window_s: float,
    ) -> None:
        self._url = url
        self._topic = url.topic
        self._info = info
        self._partitions = info.partitions
        self._producer = producer
        # Set when a batch failed: the producer is replaced before the next round.
        self._reset_needed = False
        self._producer_resets = 0
        self._shared = shared
        self._window = dedupe_window_s
        self._local = LocalWindow(dedupe_window_s)
        # Keys whose first append is in flight in this process.
        self._inflight: dict[Key, asyncio.Future[Original]] = {}
        self._queue: collections.deque[_Job] = collections.deque()
        self._wake = asyncio.Event()
        self._sequencer = asyncio.get_running_loop().create_task(self._sequence())
        self._completions: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._readers: list[Any] = []
        self._reader_slots = asyncio.Semaphore(READERS)
        self._closed = False

    @classmethod
    async def open(
        cls, url: str, dedupe_window_s: float = 600.0, retention_s: float = 7 * 86400.0
    ) -> KafkaCommentLog:
        if dedupe_window_s <= 0 or retention_s < dedupe_window_s:
            raise ValueError("need 0 < dedupe_window_s <= retention_s")
        parsed = KafkaUrl.parse(url)
        info = await ensure_topic(parsed, retention_s)
        producer = await start_producer(parsed)
        shared: RedisDedupe | None = None
        try:
            if parsed.dedupe is not None:
                shared = await RedisDedupe.open(
                    parsed.dedupe, info.topic_id, info.partitions, parsed.dedupe_prefix, dedupe_window_s
                )
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        return cls(parsed, info, producer, shared, dedupe_window_s)

    @property
    def dedupe_window_s(self) -> float:
        return self._window

    @property
    def partitions(self) -> int:
        return self._partitions

    async def epoch(self) -> str:
        self._check_open()
        return self._info.epoch

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("comment log is closed")

    # -- appends -----------------------------------------------------------------------------------
    async def append(
        self, stream: str, payload: bytes, client_msg_id: str | None = None, origin: str | None = None
    ) -> LogAppend:
        return (await self.append_many([LogEntry(stream, payload, client_msg_id, origin)]))[0]

    async def append_many(self, entries: Sequence[LogEntry]) -> list[LogAppend]:
        self._check_open()
        if not entries:
            return []
        for entry in entries:
            if not isinstance(entry.payload, bytes):
                raise TypeError(f"payload must be bytes, got {type(entry.payload).__name__}")
            if len(entry.payload) > MAX_RECORD_BYTES:
                raise BackendError(f"a payload of {len(entry.payload)} bytes is over {MAX_RECORD_BYTES}")
        job = _Job(list(entries), asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._wake.set()
        return await job.future

    async def _sequence(self) -> None:
        """The one task that sends: rounds go out in call order."""
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                jobs: list[_Job] = []
                count = 0
                while queue and (not jobs or count + len(queue[0].entries) <= MAX_ROUND_RECORDS):
                    job = queue.popleft()
                    jobs.append(job)
                    count += len(job.entries)
                current = _Round(jobs)
                try:
                    if self._reset_needed or self._producer is None:
                        await self._reset_producer()
                    await self._send_round(current)
                except Exception as exc:  # what was not sent fails; what was sent completes
                    log.warning("comment log round of %d records failed to send: %s", count, exc)
                    current.error = exc if isinstance(exc, BackendError) else translate(exc, "append")
                task = asyncio.get_running_loop().create_task(self._complete(current))
                self._completions.add(task)
                task.add_done_callback(self._completions.discard)

    async def _reset_producer(self) -> None:
        """Replace the producer after a failed batch.

        aiokafka numbers each partition's batches for the idempotent producer and does not
        renumber after a batch failed for good: every later batch of that partition would be
        refused (OutOfOrderSequenceNumber). A new producer gets a new producer id and starts
        numbering afresh. Rounds sent by the old one finish first (each within
        APPEND_TIMEOUT_S) and it flushes before the new one sends, so call order holds; only if
        the broker is unreachable at that moment may a late batch of the old one land after the
        new one's first batches (its callers had been told it failed). If the new producer cannot
        connect this raises and the round fails; the next round tries again.
        """
        if self._completions:
            await asyncio.wait(list(self._completions), timeout=APPEND_TIMEOUT_S)
        old, self._producer = self._producer, None
        if old is not None:
            stopping = asyncio.get_running_loop().create_task(old.stop())
            await asyncio.wait([stopping], timeout=REQUEST_TIMEOUT_MS / 1000)
            if not stopping.done():  # the broker is away: the old one finishes in the background
                self._background.add(stopping)
                stopping.add_done_callback(self._background.discard)
        self._producer = await start_producer(self._url)
        self._reset_needed = False
        self._producer_resets += 1
        log.warning("comment log producer replaced after a failed batch (%d so far)", self._producer_resets)

    async def _send_round(self, current: _Round) -> None:
        now = time.monotonic()
        loop = asyncio.get_running_loop()
        to_claim: list[Key] = []
        for job in current.jobs:
            plan: list[tuple[str, Any]] = []
            for entry in job.entries:
                cmid = entry.client_msg_id
                if cmid is None:
                    plan.append(("new", None))
                    continue
                key = (entry.stream, cmid)
                original = self._local.get(key, now)
                if original is not None:
                    plan.append(("dup", original))
                elif key in current.owned:
                    plan.append(("chain", current.owned[key]))
                elif key in self._inflight:
                    plan.append(("chain", self._inflight[key]))
                else:
                    current.owned[key] = self._inflight[key] = loop.create_future()
                    to_claim.append(key)
                    plan.append(("new", key))
            current.plans.append(plan)
        claimed = await self._claim(to_claim)
        for key, holder in claimed.items():
            owned = current.owned.pop(key)
            self._inflight.pop(key, None)
            if isinstance(holder, Original):
                owned.set_result(holder)  # repeats inside this round answer with it too
            else:
                owned.set_exception(BackendUnavailable("an append of this client_msg_id is in flight: retry"))
                owned.exception()  # retrieved: no repeat may be waiting on it
        # Records in call order, one batch per partition until it fills.
        open_batches: dict[int, tuple[int, Any]] = {}
        builders: list[tuple[int, Any]] = []
        timestamp = int(time.time() * 1000)
        for plan, job in zip(current.plans, current.jobs, strict=True):
            for index, (step, key) in enumerate(plan):
                if step != "new":
                    continue
                found = claimed.get(key) if key is not None else None
                if found is not None:  # another edge appended it, or is appending it
                    plan[index] = ("dup", found) if isinstance(found, Original) else ("wait", key)
                    continue
                entry = job.entries[index]
                partition = partition_of(entry.stream, self._partitions)
                where = open_batches.get(partition)
                if where is None or not _fits(where[1], timestamp, entry):
                    where = open_batches[partition] = (len(builders), self._producer.create_batch())
                    builders.append((partition, where[1]))
                    if not _fits(where[1], timestamp, entry):
                        raise BackendError(f"a record of {len(entry.payload)} bytes does not fit a batch")
                plan[index] = ("new", len(current.slots))
                current.slots.append((entry, key, where[0], where[1].record_count() - 1))
        for partition, builder in builders:
            current.batches.append(await self._producer.send_batch(builder, self._topic, partition=partition))

    async def _claim(self, keys: list[Key]) -> dict[Key, Original | Pending]:
        """Keys another append holds (shared window); empty without one or while it is down."""
        shared = self._shared
        if not keys or shared is None or not shared.available:
            return {}
        try:
            replies = await shared.claim(keys)
        except BackendError:
            return {}  # fail open: the local window alone (kafka_dedupe docstring)
        return {key: reply for key, reply in zip(keys, replies, strict=True) if reply is not None}

    async def _complete(self, current: _Round) -> None:
        """Wait for the round's batches, resolve its jobs, confirm or release its keys. Whatever
        goes wrong, no job of the round is left waiting."""
        try:
            await self._settle(current)
        except BaseException as exc:
            error = exc if isinstance(exc, BackendError) else BackendError(f"append failed: {exc!r}")
            for job in current.jobs:
                _fail(job, error)
            for key, owned in current.owned.items():
                if not owned.done():
                    self._inflight.pop(key, None)
                    owned.set_exception(error)
                    owned.exception()
            if not isinstance(exc, Exception):
                raise
            log.exception("comment log round failed")

    async def _settle(self, current: _Round) -> None:
        """The round's outcome, in this order: jobs that cannot succeed fail; keys that did not
        land are released (before their authors hear of it, so a retry finds them free); jobs
        are answered; keys that landed are confirmed in the shared window.

        A batch not acknowledged within APPEND_TIMEOUT_S fails its jobs (the authors retry), but
        its keys stay claimed while it is still in the producer: aiokafka's idempotent producer
        never gives up on a batch while its partition has a leader, so the batch lands once the
        broker answers again. When it does, its keys are confirmed and the retries get the
        original back (``duplicate``) instead of appending a second copy.
        """
        unsent = current.error or BackendUnavailable("append failed")
        outcomes: list[Any] = []
        if current.batches:
            _, waiting = await asyncio.wait(current.batches, timeout=APPEND_TIMEOUT_S)
            if waiting:
                late = BackendUnavailable(f"kafka did not acknowledge within {APPEND_TIMEOUT_S} s: retry")
                for job in current.jobs:
                    _fail(job, late)
                await asyncio.wait(current.batches)  # keeps the keys claimed until the outcome
            outcomes = [b.exception() or b.result() for b in current.batches]
        errors: list[BackendError | None] = [
            translate(o, "append") if isinstance(o, BaseException) else None for o in outcomes
        ]
        if any(errors):
            # A batch failed for good: aiokafka does not renumber the partition's later batches.
            # (A round that failed before its batches were queued used no batch numbers.)
            self._reset_needed = True
        # Per slot: its offset, or the error of its batch.
        landed: list[int | BackendError] = []
        for _, _, batch, position in current.slots:
            if batch >= len(outcomes):
                landed.append(unsent)
            else:
                error = errors[batch]
                landed.append(error if error is not None else outcomes[batch].offset + position)
        now = time.monotonic()
        confirmed: list[tuple[Key, Original]] = []
        released: list[Key] = []
        placed: set[Key] = set()
        for (entry, key, _, _), offset in zip(current.slots, landed, strict=True):
            if key is None:
                continue
            placed.add(key)
            if isinstance(offset, BackendError):
                released.append(key)
            else:
                original = Original(offset, entry.payload)
                self._local.put(key, original, now)
                confirmed.append((key, original))
        released.extend(key for key in current.owned if key not in placed and not current.owned[key].done())
        if self._shared is not None and released:
            await self._shared.release(released)
        # Repeats waiting on these keys (this round's and later rounds') learn the outcome.
        for key, original in confirmed:
            self._inflight.pop(key, None)
            current.owned[key].set_result(original)
        for key in released:
            self._inflight.pop(key, None)
            owned = current.owned[key]
            offset = next(
                (o for (_, k, _, _), o in zip(current.slots, landed, strict=True) if k == key), unsent
            )
            owned.set_exception(offset if isinstance(offset, BackendError) else unsent)
            owned.exception()  # retrieved: no repeat may be waiting on it
        for index, job in enumerate(current.jobs):
            if job.future.done():
                continue
            plan = current.plans[index] if index < len(current.plans) else []
            if len(plan) != len(job.entries):  # the round failed before planning all of this job
                _fail(job, unsent)
            elif any(step in ("chain", "wait") for step, _ in plan):
                task = asyncio.get_running_loop().create_task(self._answer(job, plan, current, landed))
                self._completions.add(task)
                task.add_done_callback(self._completions.discard)
            else:
                await self._answer(job, plan, current, landed)
        if self._shared is not None:
            await self._shared.confirm(confirmed)

    async def _answer(
        self, job: _Job, plan: list[tuple[str, Any]], current: _Round, landed: list[int | BackendError]
    ) -> None:
        try:
            results = [await self._result(step, value, current, landed) for step, value in plan]
        except BackendError as exc:
            _fail(job, exc)
        else:
            if not job.future.done():
                job.future.set_result(results)

    async def _result(
        self, step: str, value: Any, current: _Round, landed: list[int | BackendError]
    ) -> LogAppend:
        if step == "new":
            if not isinstance(value, int):  # the round failed before packing this entry
                raise current.error or BackendUnavailable("append failed")
            offset = landed[value]
            if isinstance(offset, BackendError):
                raise offset
            return LogAppend(offset, False, current.slots[value][0].payload)
        if step == "dup":
            return LogAppend(value.offset, True, value.payload)
        if step == "chain":  # the first append of this key is in flight on this edge
            try:
                async with asyncio.timeout(APPEND_TIMEOUT_S):
                    original: Original = await asyncio.shield(value)
            except TimeoutError:
                raise BackendUnavailable(
                    "an earlier append of this client_msg_id is still in flight: retry"
                ) from None
            return LogAppend(original.offset, True, original.payload)
        assert step == "wait" and self._shared is not None
        original = await self._shared.wait_pending(value)
        self._local.put(value, original, time.monotonic())
        return LogAppend(original.offset, True, original.payload)

    # -- reads -------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[Any]:
        """A started consumer from the pool (at most ``READERS`` at once)."""
        async with self._reader_slots:
            consumer = self._readers.pop() if self._readers else None
            if consumer is None:
                consumer = consumer_for(self._url, "livechat-log-reader")
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        await consumer.start()
                except TimeoutError as exc:
                    await consumer.stop()
                    raise BackendUnavailable("kafka: reader could not connect") from exc
                except Exception as exc:
                    await consumer.stop()
                    raise translate(exc, "connect") from exc
            healthy = False
            try:
                yield consumer
                healthy = True
            finally:
                if healthy and not self._closed:
                    self._readers.append(consumer)
                else:
                    await consumer.stop()

    def _tp(self, stream: str) -> Any:
        return TopicPartition(self._topic, partition_of(stream, self._partitions))

    async def _bounds(self, consumer: Any, tp: Any) -> tuple[int, int]:
        begin = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        return int(begin), int(end)

    async def _scan(
        self, consumer: Any, tp: Any, start: int, end: int, stream: str, limit: int | None
    ) -> list[LogRecord]:
        """Records of ``stream`` in [start, end) of ``tp`` (at most ``limit``), oldest first."""
        key = stream.encode()
        found: list[LogRecord] = []
        consumer.assign([tp])
        consumer.seek(tp, start)
        position = start
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=REQUEST_TIMEOUT_MS)
            records = batch.get(tp)
            if not records:
                raise BackendUnavailable(f"kafka: no records from {tp} within {REQUEST_TIMEOUT_MS} ms")
            for msg in records:
                if msg.offset >= end:
                    return found
                if msg.key == key:
                    found.append(record_from(msg, stream))
                    if limit is not None and len(found) >= limit:
                        return found
            position = records[-1].offset + 1
        return found

    async def read(self, stream: str, after_offset: int, limit: int) -> list[LogRecord]:
        self._check_open()
        if limit <= 0:
            return []
        tp = self._tp(stream)
        try:
            async with self._reader() as consumer:
                begin, end = await self._bounds(consumer, tp)
                start = max(after_offset + 1, begin)
                if start >= end:
                    return []
                return await self._scan(consumer, tp, start, end, stream, limit)
        except BackendError:
            raise
        except Exception as exc:
            raise translate(exc, "read") from exc

    async def last_offset(self, stream: str) -> int:
        self._check_open()
        tp = self._tp(stream)
        try:
            async with self._reader() as consumer:
                begin, end = await self._bounds(consumer, tp)
                window, high = SCAN_WINDOW, end
                while high > begin:
                    low = max(begin, high - window)
                    found = await self._scan(consumer, tp, low, high, stream, None)
                    if found:
                        return found[-1].offset
                    high, window = low, window * 4
                return -1
        except BackendError:
            raise
        except Exception as exc:
            raise translate(exc, "read") from exc

    async def end_offset(self, stream: str) -> int:
        self._check_open()
        tp = self._tp(stream)
        try:
            async with self._reader() as consumer:
                return int((await consumer.end_offsets([tp]))[tp]) - 1
        except BackendError:
            raise
        except Exception as exc:
            raise translate(exc, "read") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Finish what was queued: the sequencer empties the queue, then every round completes
        # (within APPEND_TIMEOUT_S each; rounds still waiting on an unreachable broker are
        # cancelled: their callers get an error, their records may still land).
        deadline = time.monotonic() + APPEND_TIMEOUT_S
        while self._queue and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.001)
        self._sequencer.cancel()
        for job in self._queue:
            _fail(job, ClosedError("comment log is closed"))
        self._queue.clear()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sequencer
        if self._completions:
            await asyncio.wait(list(self._completions), timeout=max(0.1, deadline - time.monotonic()))
        for task in [*self._completions, *self._background]:
            task.cancel()
        await asyncio.gather(*self._completions, *self._background, return_exceptions=True)
        for consumer in self._readers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        self._readers.clear()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(REQUEST_TIMEOUT_MS / 1000):
                    await self._producer.stop()
        if self._shared is not None:
            await self._shared.aclose()


def _fail(job: _Job, error: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(error)


def _fits(builder: Any, timestamp: int, entry: LogEntry) -> bool:
    """Append ``entry`` to ``builder``; False when the batch is full (the first record of a batch
    always fits)."""
    appended = builder.append(
        timestamp=timestamp, key=entry.stream.encode(), value=entry.payload, headers=_headers(entry)
    )
    return appended is not None


def _headers(entry: LogEntry) -> list[tuple[str, bytes]]:
    headers = []
    if entry.origin is not None:
        headers.append((HEADER_ORIGIN, entry.origin.encode()))
    if entry.client_msg_id is not None:
        headers.append((HEADER_CMID, entry.client_msg_id.encode()))
    if entry.trace is not None:
        headers.append((TRACEPARENT, entry.trace))
    return headers


if TYPE_CHECKING:
    from livechat.ports.comment_log import CommentLog

    def _check(b: KafkaCommentLog) -> CommentLog:
        return b
