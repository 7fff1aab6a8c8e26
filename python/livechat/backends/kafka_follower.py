"""LogFollower on Kafka: one consumer without a group reads the partitions of the followed streams.

Each followed stream remembers the last offset it delivered; each assigned partition remembers
where its scan goes on (``_scan``). A record is delivered when its key is a followed stream and
its offset is above that stream's position, so a partition re-read (a stream followed from an
older offset, a reconnect) never repeats a record, and since the scan only advances over records
already handed to the handler, nothing is skipped. Partitions shared with streams nobody follows
are read and filtered: the cost of key partitioning, bounded by the partition count.

Every consumer call runs in the follower's one task. ``follow``/``unfollow`` record the change and
wake that task (cancelling a fetch that is waiting), which reassigns and seeks before its next
fetch; ``follow`` returns once that happened. aiokafka reconnects by itself when a broker goes
away (fetches resume at the consumer's positions); an error that reaches ``getmany`` is retried
with backoff after seeking every partition back to its scan position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import ConsumerStoppedError  # type: ignore[import-untyped]

from livechat.backends.kafka_connect import (
    CONNECT_TIMEOUT_S,
    FETCH_MAX_RECORDS,
    RETRY_MAX_S,
    RETRY_MIN_S,
    KafkaUrl,
    partition_of,
    translate,
)
from livechat.backends.kafka_log import consumer_for, record_from
from livechat.backends.kafka_topic import ensure_topic
from livechat.ports.comment_log import LogRecord
from livechat.ports.errors import BackendError, BackendUnavailable, ClosedError
from livechat.ports.log_follower import FollowerStats, LogHandler

log = logging.getLogger("livechat.backends.kafka")

# A fetch waits at most this long before the loop looks at its state again (a broker answers
# sooner: FETCH_MAX_WAIT_MS). Changes wake the loop at once, so this only bounds idle spinning.
POLL_TIMEOUT_MS = 500
# A followed partition whose last fetch answer is older than this is reported in
# ``stats().last_error`` (healthy answers come every few ms: FETCH_MAX_WAIT_MS).
STALE_AFTER_S = 1.0


@dataclass(slots=True)
class _Follow:
    stream: str
    key: bytes
    partition: int
    # Offset of the last record delivered, or the offset followed from.
    position: int


class KafkaLogFollower:
    """Live delivery of a Kafka comment log (see the module and ``LogFollower`` docstrings)."""

    def __init__(self, url: KafkaUrl, partitions: int, exclude_origin: str | None) -> None:
        self._url = url
        self._topic = url.topic
        self._partitions = partitions
        self._exclude = exclude_origin
        self._handler: LogHandler | None = None
        self._consumer: Any = None
        self._by_key: dict[bytes, _Follow] = {}
        # Partition -> the next offset its scan reads.
        self._scan: dict[int, int] = {}
        self._dirty = False  # the assignment or a seek must be redone before the next fetch
        self._applied: list[asyncio.Future[None]] = []
        self._changed = asyncio.Event()
        self._paused = False
        self._delivered = 0
        self._retries = 0
        self._truncated = 0
        self._last_error: str | None = None
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._fetch: asyncio.Task[Any] | None = None

    @classmethod
    async def open(
        cls, url: str, *, exclude_origin: str | None = None, retention_s: float = 7 * 86400.0
    ) -> KafkaLogFollower:
        parsed = KafkaUrl.parse(url)
        info = await ensure_topic(parsed, retention_s)
        follower = cls(parsed, info.partitions, exclude_origin)
        await follower._connect()
        follower._task = asyncio.get_running_loop().create_task(follower._run())
        return follower

    async def _connect(self) -> None:
        consumer = consumer_for(self._url, "livechat-log-follower")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await consumer.start()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            if isinstance(exc, TimeoutError):
                raise BackendUnavailable(
                    f"kafka: follower could not connect to {self._url.bootstrap}"
                ) from exc
            if isinstance(exc, Exception) and not isinstance(exc, BackendError):
                raise translate(exc, "connect") from exc
            raise
        self._consumer = consumer
        self._dirty = True

    # -- the port ----------------------------------------------------------------------------------
    def set_handler(self, handler: LogHandler) -> None:
        if self._handler is not None:
            raise RuntimeError("log follower handler already set")
        self._handler = handler

    async def follow(self, stream: str, after_offset: int) -> None:
        if self._closed:
            raise ClosedError("log follower is closed")
        if self._handler is None:
            raise RuntimeError("set a handler before following")
        key = stream.encode()
        if key in self._by_key:
            raise RuntimeError(f"stream {stream!r} is already followed")
        after = max(after_offset, -1)
        partition = partition_of(stream, self._partitions)
        self._by_key[key] = _Follow(stream, key, partition, after)
        scan = self._scan.get(partition)
        if scan is None or after + 1 < scan:
            self._scan[partition] = after + 1
        await self._apply()

    async def unfollow(self, stream: str) -> None:
        follow = self._by_key.pop(stream.encode(), None)
        if follow is None:
            return
        if not any(f.partition == follow.partition for f in self._by_key.values()):
            del self._scan[follow.partition]
            self._dirty = True
            self._wake()

    def position(self, stream: str) -> int | None:
        follow = self._by_key.get(stream.encode())
        return None if follow is None else follow.position

    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._wake()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._dirty = True  # seek back to the scan positions (paused fetches were dropped)
            self._wake()

    def stats(self) -> FollowerStats:
        behind = 0
        last_error = self._last_error
        consumer = self._consumer
        if consumer is not None and not self._dirty:  # then every partition in _scan is assigned
            now_ms = time.time() * 1000
            stalest = 0.0
            for partition, scan in self._scan.items():
                tp = TopicPartition(self._topic, partition)
                high = consumer.highwater(tp)
                if high is not None:
                    behind += max(0, high - scan)
                polled = consumer.last_poll_timestamp(tp)
                if polled is not None:
                    stalest = max(stalest, now_ms - polled)
            # aiokafka retries broken connections silently: a partition without a fetch answer
            # for this long is how an outage shows.
            if not self._paused and stalest > STALE_AFTER_S * 1000 and last_error is None:
                last_error = f"no fetch answer from the broker for {stalest / 1000:.1f} s"
        return FollowerStats(
            streams=len(self._by_key),
            behind=behind,
            delivered=self._delivered,
            retries=self._retries,
            truncated=self._truncated,
            paused=self._paused,
            last_error=last_error,
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiter in self._applied:
            if not waiter.done():
                waiter.set_exception(ClosedError("log follower is closed"))
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    # -- the loop ----------------------------------------------------------------------------------
    async def _apply(self) -> None:
        """Wake the loop and wait until it applied the current follows."""
        waiter = asyncio.get_running_loop().create_future()
        self._applied.append(waiter)
        self._dirty = True
        self._wake()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await asyncio.shield(waiter)
        except TimeoutError:
            # The loop is reconnecting: the follow stays registered and starts when it is back.
            raise BackendUnavailable(
                f"kafka: follower not connected within {CONNECT_TIMEOUT_S} s (the follow takes effect later)"
            ) from None

    def _wake(self) -> None:
        self._changed.set()
        fetch = self._fetch
        if fetch is not None and not fetch.done():
            fetch.cancel()  # no record is lost: a cancelled getmany had taken none

    def _assign(self) -> None:
        """Assign the followed partitions and seek each to its scan position."""
        consumer = self._consumer
        tps = {p: TopicPartition(self._topic, p) for p in self._scan}
        consumer.assign(list(tps.values()))
        for partition, tp in tps.items():
            consumer.seek(tp, self._scan[partition])
        if self._paused and tps:
            consumer.pause(*tps.values())
        self._dirty = False

    def _release_waiters(self) -> None:
        waiters, self._applied = self._applied, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _run(self) -> None:
        backoff = RETRY_MIN_S
        while True:
            self._changed.clear()
            try:
                if self._consumer is None:
                    await self._connect()
                if self._dirty:
                    self._assign()
                self._release_waiters()
                if self._paused or not self._scan:
                    await self._changed.wait()
                    continue
                self._fetch = asyncio.ensure_future(
                    self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS, max_records=FETCH_MAX_RECORDS)
                )
                try:
                    batch = await self._fetch
                except asyncio.CancelledError:
                    if self._closed or not self._fetch.cancelled():
                        raise  # aclose, not a wake-up
                    continue
                finally:
                    self._fetch = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._retries += 1
                self._last_error = str(translate(exc, "follow"))
                log.warning("log follower read failed (retry in %.2f s): %s", backoff, self._last_error)
                if isinstance(exc, ConsumerStoppedError):
                    self._consumer = None
                self._dirty = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX_S)
                continue
            backoff = RETRY_MIN_S
            if batch:
                self._last_error = None
                self._deliver(batch)

    def _deliver(self, batch: dict[Any, list[Any]]) -> None:
        by_key = self._by_key
        exclude = self._exclude
        out: list[LogRecord] = []
        for tp, messages in batch.items():
            scan = self._scan.get(tp.partition)
            if scan is None:
                continue  # unfollowed while this fetch ran
            if messages and messages[0].offset > scan > 0:
                # Offsets of this topic are dense (no transactions, no compaction): a jump means
                # retention deleted records before this scan reached them.
                self._truncated += 1
                log.warning(
                    "log follower: %s lost offsets %d-%d to retention", tp, scan, messages[0].offset - 1
                )
            for msg in messages:
                follow = by_key.get(msg.key)
                if follow is None or msg.offset <= follow.position:
                    continue
                follow.position = msg.offset
                record = record_from(msg, follow.stream)
                if exclude is None or record.origin != exclude:
                    out.append(record)
            if messages:
                self._scan[tp.partition] = messages[-1].offset + 1
        if out and self._handler is not None:
            self._delivered += len(out)
            try:
                self._handler(out)
            except Exception:
                log.exception("log follower handler failed on %d records", len(out))


if TYPE_CHECKING:
    from livechat.ports.log_follower import LogFollower

    def _check(b: KafkaLogFollower) -> LogFollower:
        return b
