"""``livechat worker notify``: @mentions of real users and replies -> the ``notifications`` topic and
an optional webhook.

Per batch of log records, for each comment (``{"k": "c", ...}``):
- each handle in ``m`` is resolved to a user with ``MetaStore.find_user_by_name`` (cached
  ``RESOLVE_TTL_S``, "no such user" too); a handle naming nobody, or several users, notifies nobody;
- ``r`` (a reply) notifies the replied-to comment's author: from the authors of the comments this
  worker read lately, else ``HistoryStore.get`` (None when that comment is gone, or not persisted
  yet and older than what this worker read since it started: counted as ``reply_unknown``);
- one notification per user and comment (a reply beats a mention of the same user); an author is
  never notified of their own comment.

A notification is the JSON object ``{"user", "stream", "comment_id", "kind": "mention"|"reply",
"from", "ts"}``, with ``comment_id`` as a decimal string (ids are 63-bit: a JSON number loses
digits in JavaScript) and ``ts`` the comment's time in ms. It is produced to the notifications topic
(created if missing) keyed by the notified user, with an idempotent producer and ``acks="all"``,
then POSTed to the webhook (``livechat.workers.webhook``); the consumer offsets are committed after
both. Delivery is at least once: a worker killed before its commit notifies that batch again, so
consumers drop repeats by (user, stream, comment_id, kind).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from livechat.backends.kafka_connect import CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_MS, KafkaUrl, translate
from livechat.backends.kafka_topic import ensure_topic
from livechat.ports.errors import BackendError
from livechat.ports.history import HistoryStore
from livechat.ports.meta import MetaStore
from livechat.protocol import EventKind, unpackb
from livechat.workers.group import Checkpoint, GroupLoop
from livechat.workers.metrics import WorkerMetrics
from livechat.workers.retry import Retrier, Stopped
from livechat.workers.settings import (
    AUTHOR_CACHE,
    MAX_BATCH_RECORDS,
    NOTIFICATIONS_TOPIC,
    NOTIFY_GROUP,
    RESOLVE_CACHE,
    RESOLVE_TTL_S,
)
from livechat.workers.webhook import WebhookSender

log = logging.getLogger("livechat.workers")

_COMMENT = EventKind.COMMENT.value
# Handles resolved at once when a batch brings several new ones.
_RESOLVE_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class Notification:
    user: str
    stream: str
    comment_id: int
    kind: str  # "mention" | "reply"
    sender: str
    ts: int

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "user": self.user,
                "stream": self.stream,
                "comment_id": str(self.comment_id),
                "kind": self.kind,
                "from": self.sender,
                "ts": self.ts,
            },
            separators=(",", ":"),
        ).encode()


@dataclass(frozen=True, slots=True)
class _Comment:
    stream: str
    comment_id: int
    user: str
    ts: int
    reply_to: int | None
    mentions: tuple[str, ...]


class HandleResolver:
    """@handle -> user id through the MetaStore, cached (misses too) for ``RESOLVE_TTL_S``."""

    def __init__(self, meta: MetaStore, retrier: Retrier, ttl_s: float = RESOLVE_TTL_S) -> None:
        self._meta = meta
        self._retrier = retrier
        self._ttl = ttl_s
        self._cache: collections.OrderedDict[str, tuple[str | None, float]] = collections.OrderedDict()

    def cached(self, handle: str, now: float) -> tuple[bool, str | None]:
        hit = self._cache.get(handle)
        if hit is None or hit[1] < now:
            return False, None
        return True, hit[0]

    async def resolve_many(self, handles: set[str]) -> None:
        """Look up every handle not cached (a store outage is retried until it answers)."""
        now = time.monotonic()
        missing = [h for h in handles if not self.cached(h, now)[0]]
        slots = asyncio.Semaphore(_RESOLVE_CONCURRENCY)

        async def one(handle: str) -> None:
            async with slots:
                user = await self._retrier.run(
                    "meta_read", lambda: self._meta.find_user_by_name(handle), (BackendError,)
                )
            self._cache[handle] = (user.user_id if user is not None else None, time.monotonic() + self._ttl)
            self._cache.move_to_end(handle)

        await asyncio.gather(*(one(h) for h in missing))
        while len(self._cache) > RESOLVE_CACHE:
            self._cache.popitem(last=False)


class NotifyWorker:
    """The batch handler of ``livechat worker notify`` (see the module docstring)."""

    def __init__(
        self,
        meta: MetaStore,
        history: HistoryStore | None,
        producer: Any,
        topic: str,
        webhook: WebhookSender | None,
        metrics: WorkerMetrics,
        retrier: Retrier,
    ) -> None:
        self._history = history
        self._producer = producer
        self._topic = topic
        self._webhook = webhook
        self._metrics = metrics
        self._retrier = retrier
        self._resolver = HandleResolver(meta, retrier)
        # (stream, comment id) -> author, of the comments read lately.
        self._authors: collections.OrderedDict[tuple[str, int], str] = collections.OrderedDict()

    async def handle(self, records: Sequence[Any], checkpoint: Checkpoint) -> None:
        notes = await self.notifications(records)
        if notes:
            await self._produce(notes)
            if self._webhook is not None:
                await self._webhook.deliver([n.to_json() for n in notes])

    async def notifications(self, records: Sequence[Any]) -> list[Notification]:
        """The notifications ``records`` cause, in log order."""
        comments = [c for c in (self._comment(r) for r in records) if c is not None]
        handles = {h for c in comments for h in c.mentions}
        if handles:
            await self._resolver.resolve_many(handles)
        now = time.monotonic()
        notes: list[Notification] = []
        authors = self._authors
        for c in comments:
            authors[(c.stream, c.comment_id)] = c.user
            targets: dict[str, str] = {}
            if c.reply_to is not None:
                parent = await self._author_of(c.stream, c.reply_to)
                if parent is None:
                    self._metrics.event("reply_unknown")
                elif parent != c.user:
                    targets[parent] = "reply"
            for handle in c.mentions:
                _, user = self._resolver.cached(handle, now)
                if user is None:
                    self._metrics.event("unknown_handle")
                elif user != c.user and user not in targets:
                    targets[user] = "mention"
            for user, kind in targets.items():
                notes.append(Notification(user, c.stream, c.comment_id, kind, c.user, c.ts))
                self._metrics.event(kind)
        while len(authors) > AUTHOR_CACHE:
            authors.popitem(last=False)
        return notes

    def _comment(self, record: Any) -> _Comment | None:
        if record.key is None or record.value is None:
            return None
        try:
            event = unpackb(record.value)
            if event.get("k") != _COMMENT:
                return None
            mentions = event.get("m")
            reply_to = event.get("r")
            return _Comment(
                record.key.decode(),
                int(event["id"]),
                str(event["u"]),
                int(event.get("ts") or 0),
                int(reply_to) if reply_to is not None else None,
                tuple(str(m) for m in mentions) if isinstance(mentions, list) else (),
            )
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            self._metrics.event("skipped")
            log.warning("notify worker: skipping the record at offset %d: %s", record.offset, exc)
            return None

    async def _author_of(self, stream: str, comment_id: int) -> str | None:
        author = self._authors.get((stream, comment_id))
        if author is not None or self._history is None:
            return author
        history = self._history
        stored = await self._retrier.run(
            "history_read", lambda: history.get(stream, comment_id), (BackendError,)
        )
        return stored.user_id if stored is not None else None

    async def _produce(self, notes: list[Notification]) -> None:
        """Every notification acknowledged by Kafka (acks=all); what failed is sent again."""
        left = list(notes)

        async def attempt() -> None:
            nonlocal left
            try:
                futures = [
                    await self._producer.send(self._topic, n.to_json(), key=n.user.encode()) for n in left
                ]
            except KafkaError as exc:
                raise translate(exc, "produce") from exc
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [n for n, r in zip(left, results, strict=True) if isinstance(r, BaseException)]
            errors = [r for r in results if isinstance(r, BaseException)]
            self._metrics.event("produced", len(left) - len(failed))
            left = failed
            if errors:
                raise translate(errors[0], "produce")

        await self._retrier.run("produce", attempt, (BackendError,))


async def open_producer(url: KafkaUrl) -> Any:
    producer = AIOKafkaProducer(
        bootstrap_servers=url.bootstrap,
        client_id="livechat-notify",
        # Both explicit: no repeats from the producer's own retries, and a notification counts as
        # sent once every in-sync replica has it.
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await producer.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await producer.stop()
        raise
    return producer


async def run_notify(
    log_url: str,
    meta: MetaStore,
    history: HistoryStore | None,
    stop: asyncio.Event,
    *,
    topic: str = NOTIFICATIONS_TOPIC,
    webhook: str | None = None,
    group: str = NOTIFY_GROUP,
    retention_s: float,
    metrics: WorkerMetrics | None = None,
    max_records: int = MAX_BATCH_RECORDS,
) -> WorkerMetrics:
    """Notify from ``log_url``'s comments until ``stop`` is set."""
    metrics = metrics or WorkerMetrics("notify")
    retrier = Retrier(stop, metrics)
    url = KafkaUrl.parse(log_url)
    out = dataclasses.replace(url, topic=topic, dedupe=None)

    async def connect() -> Any:
        await ensure_topic(out, retention_s)
        return await open_producer(out)

    try:
        producer = await retrier.run("connect", connect, (BackendError, KafkaError, OSError, TimeoutError))
    except Stopped:
        return metrics
    sender = WebhookSender(webhook, metrics, retrier) if webhook else None
    worker = NotifyWorker(meta, history, producer, topic, sender, metrics, retrier)
    try:
        await GroupLoop(
            url, group, worker.handle, metrics, retrier, retention_s=retention_s, max_records=max_records
        ).run()
    finally:
        if sender is not None:
            await sender.aclose()
        with contextlib.suppress(Exception):
            await producer.stop()
    return metrics
