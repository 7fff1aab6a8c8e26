"""`livechat worker notify` as a real subprocess: comments on a Kafka log -> notifications on a Kafka
topic and POSTs to a local webhook (a stdlib HTTP server that answers 500 to its first requests).

Users live in a real meta store (SQLite), the replied-to comments in a real history store (SQLite).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from livechat.backends import open_history, open_meta
from livechat.backends.kafka_log import KafkaCommentLog
from livechat.ids import first_id_at
from livechat.ports.comment_log import LogEntry
from livechat.ports.history import StoredComment
from livechat.ports.meta import UserInfo
from livechat.protocol import extract_mentions
from livechat.protocol.encode import encode_comment, encode_delete

from tests.cluster.conftest import LivechatProcess, TopicFactory, kafka_servers

Start = Callable[..., LivechatProcess]


class Webhook:
    """A local HTTP endpoint recording every POST body; answers 500 to the first ``fail_first``."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.attempts = 0
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.lock:
                    hook.attempts += 1
                    failing = hook.attempts <= hook.fail_first
                    if not failing:
                        hook.bodies.append(json.loads(body))
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(fail_first=2)
    yield hook
    hook.close()


async def read_topic(topic: str, partitions: int, want: int, timeout: float, settle: float) -> list[Any]:
    """Records of ``topic`` from the beginning: until ``want`` arrived, then ``settle`` s more (to
    catch extras), or until ``timeout``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_servers(), group_id=None)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while topic not in await consumer.topics():
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} never appeared")
            await asyncio.sleep(0.2)
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        found: list[Any] = []
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found.extend(records)
            if len(found) >= want:
                deadline = min(deadline, time.monotonic() + settle)
        return found
    finally:
        await consumer.stop()


def comment(cid: int, user: str, text: str, reply_to: int | None = None) -> bytes:
    mentions = extract_mentions(text)
    return encode_comment(cid, user, user.title(), text, int(time.time() * 1000), reply_to, mentions, None)


async def test_mentions_and_replies_reach_the_topic_and_the_webhook(
    kafka_topic: TopicFactory, livechat_process: Start, tmp_path: Path, webhook: Webhook
) -> None:
    log_url = kafka_topic()
    notifications = TopicFactory.name(kafka_topic(prefix="n"))
    meta_url = f"sqlite://{tmp_path}/meta.db"
    history_url = f"sqlite://{tmp_path}/history.db"
    stream = f"s-{uuid.uuid4().hex[:8]}"
    first = first_id_at(int(time.time() * 1000))
    old, c1, c2, c3, c4 = (first + i for i in range(5))

    meta = await open_meta(meta_url)
    history = await open_history(history_url)
    try:
        for user_id, name in (("ada", "Ada Lovelace"), ("carl", "Carl"), ("bob", "Bob"), ("dora", "Dora")):
            await meta.upsert_user(UserInfo(user_id, name, created_at=time.time()))
        await meta.upsert_user(UserInfo("twin-1", "Twin", created_at=time.time()))
        await meta.upsert_user(UserInfo("twin-2", "Twin", created_at=time.time()))
        # A comment from before this log: only history knows its author.
        await history.put(StoredComment(stream, old, "dora", comment(old, "dora", "earlier")))
    finally:
        await history.aclose()
        await meta.aclose()

    worker = livechat_process(
        "worker",
        "notify",
        "--log",
        log_url,
        "--meta",
        meta_url,
        "--history",
        history_url,
        "--topic",
        notifications,
        "--webhook",
        webhook.url,
        "--group",
        f"g-{uuid.uuid4().hex[:8]}",
        "--log-format",
        "plain",
        "--metrics-port",
        "0",
        name="notify",
    )
    log = await KafkaCommentLog.open(log_url)
    try:
        await log.append_many(
            [
                # A display name (any case), a handle naming nobody, one naming two users.
                LogEntry(stream, comment(c1, "carl", "hi @AdaLovelace and @nobody and @twin")),
                # A reply that also mentions the replied-to author: one notification, a reply.
                LogEntry(stream, comment(c2, "ada", "@carl thanks", reply_to=c1)),
                # A reply to a comment only history has; mentioning oneself notifies nobody.
                LogEntry(stream, comment(c3, "bob", "@bob agrees", reply_to=old)),
                LogEntry(stream, encode_delete(c3)),
                LogEntry(stream, comment(c4, "dora", "no mentions here")),
            ]
        )
    finally:
        await log.aclose()

    expected = [
        {"user": "ada", "stream": stream, "comment_id": str(c1), "kind": "mention", "from": "carl"},
        {"user": "carl", "stream": stream, "comment_id": str(c2), "kind": "reply", "from": "ada"},
        {"user": "dora", "stream": stream, "comment_id": str(c3), "kind": "reply", "from": "bob"},
    ]

    def key(n: dict[str, Any]) -> str:
        return json.dumps({k: n[k] for k in ("user", "stream", "comment_id", "kind", "from")}, sort_keys=True)

    records = await read_topic(notifications, 4, len(expected), timeout=90.0, settle=2.0)
    got = [json.loads(r.value) for r in records]
    assert sorted(map(key, got)) == sorted(map(key, expected))
    for record, note in zip(records, got, strict=True):
        assert record.key == note["user"].encode()  # keyed by the notified user
        assert isinstance(note["ts"], int) and note["ts"] > 0

    deadline = time.monotonic() + 60
    while len(webhook.received()) < len(expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    assert sorted(map(key, webhook.received())) == sorted(map(key, expected))
    # The first two POSTs got 500 and were sent again.
    assert webhook.attempts == len(expected) + 2
    assert worker.metric("livechat_worker_retries_total", worker="notify", step="webhook") == 2
    assert worker.metric("livechat_worker_events_total", worker="notify", event="unknown_handle") == 2
    assert worker.metric("livechat_worker_events_total", worker="notify", event="webhook_dropped") == 0
    assert worker.stop() == 0
    assert "Traceback" not in worker.output()
