"""`livechat worker persist` as a real subprocess: Kafka log -> history (SQLite, Cassandra).

Each test appends room events to a fresh topic with the real ``KafkaCommentLog`` and keeps a model
of what history must hold (``Expected``: comments in, deletes and purges applied in log order),
then waits for the worker's watermarks to reach the log's last offsets and compares history with
the model row by row. Every worker runs in its own consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from livechat.backends import open_history
from livechat.backends.kafka_log import KafkaCommentLog
from livechat.ids import first_id_at
from livechat.ports.comment_log import LogEntry
from livechat.ports.errors import BackendUnavailable
from livechat.ports.history import HistoryStore
from livechat.protocol import unpackb
from livechat.protocol.encode import (
    encode_ban,
    encode_comment,
    encode_delete,
    encode_highlight,
    encode_pin,
    encode_purge,
)
from livechat.workers.persist import PlanWriter, apply_records, plan_records

from tests.cluster.conftest import LivechatProcess, TopicFactory
from tests.cluster_services import service_url

Start = Callable[..., LivechatProcess]


@dataclass
class Expected:
    """What history must hold after the worker applied everything appended so far."""

    comments: dict[str, dict[int, str]] = field(default_factory=dict)  # stream -> id -> author
    last_offset: dict[str, int] = field(default_factory=dict)
    appended: int = 0
    next_id: int = field(default_factory=lambda: first_id_at(int(time.time() * 1000)))


class Appender:
    """Appends events to the log and applies them to the model in the same order."""

    def __init__(self, log: KafkaCommentLog) -> None:
        self.log = log
        self.model = Expected()

    def comment(self, stream: str, user: str) -> tuple[str, bytes, int]:
        cid = self.model.next_id
        self.model.next_id += 1
        payload = encode_comment(
            cid, user, user.title(), f"comment {cid}", int(time.time() * 1000), None, [], None
        )
        return stream, payload, cid

    async def append(self, events: list[tuple[str, bytes, int | None]]) -> None:
        results = await self.log.append_many([LogEntry(s, p) for s, p, _ in events])
        model = self.model
        for (stream, payload, _), result in zip(events, results, strict=True):
            model.appended += 1
            model.last_offset[stream] = result.offset
            room = model.comments.setdefault(stream, {})
            event = unpackb(payload)
            if event["k"] == "c":
                room[event["id"]] = event["u"]
            elif event["k"] == "del":
                room.pop(event["id"], None)
            elif event["k"] == "purge":
                for gone in [c for c, u in room.items() if u == event["u"]]:
                    del room[gone]

    async def comments(self, streams: list[str], users: list[str], count: int) -> list[tuple[str, int]]:
        events = [self.comment(streams[i % len(streams)], users[i % len(users)]) for i in range(count)]
        await self.append([(s, p, c) for s, p, c in events])
        return [(s, c) for s, _, c in events]


async def history_rows(history: HistoryStore, stream: str) -> dict[int, str]:
    """Every comment of ``stream`` in history (id -> author), paging oldest first."""
    rows: dict[int, str] = {}
    after = 0
    while True:
        page = await history.after(stream, after, 1000)
        for row in page:
            assert row.comment_id not in rows, f"comment {row.comment_id} read twice"
            rows[row.comment_id] = row.user_id
        if len(page) < 1000:
            return rows
        after = page[-1].comment_id


async def caught_up(history: HistoryStore, model: Expected, timeout: float = 90.0) -> None:
    """Wait until history's watermark of every stream is the stream's last offset in the log."""
    deadline = time.monotonic() + timeout
    marks: dict[str, int] = {}
    while time.monotonic() < deadline:
        marks = {s: await history.watermark(s) for s in model.last_offset}
        if marks == model.last_offset:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"watermarks {marks} never reached the log's last offsets {model.last_offset}")


async def assert_history_matches(history: HistoryStore, model: Expected) -> None:
    for stream, expected in model.comments.items():
        assert await history_rows(history, stream) == expected, stream
        assert await history.watermark(stream) == model.last_offset[stream]


@dataclass(frozen=True)
class Record:
    """A log record as the worker reads it (the fields of aiokafka's ConsumerRecord it uses)."""

    key: bytes
    offset: int
    value: bytes
    topic: str = "t"
    partition: int = 0


def records_of(events: list[tuple[str, bytes]], first_offset: int = 0) -> list[Record]:
    return [Record(s.encode(), first_offset + i, p) for i, (s, p) in enumerate(events)]


def comment_payload(cid: int, user: str) -> bytes:
    return encode_comment(cid, user, user, f"comment {cid}", int(time.time() * 1000), None, [], None)


async def test_records_apply_in_log_order_without_kafka(tmp_path: Path) -> None:
    """The worker's Kafka-independent part (``apply_records``) on a real SQLite history."""
    history = await open_history(f"sqlite://{tmp_path}/history.db")
    c1, c2, c3, c4, c5 = (first_id_at(int(time.time() * 1000)) + i for i in range(5))
    try:
        records = records_of(
            [
                ("s", comment_payload(c1, "ann")),
                ("s", comment_payload(c2, "bob")),
                ("s", comment_payload(c3, "bob")),
                ("s", encode_delete(c1)),
                ("s", encode_purge("bob")),  # bob's comments logged before it go
                ("s", comment_payload(c4, "bob")),  # posted after the purge: stays
                ("s", encode_ban("bob", None)),  # nothing to store
                ("s", b"\xc1"),  # not msgpack: skipped
                ("t", comment_payload(c5, "ann")),
                ("s", comment_payload(c2, "bob")),  # a repeat of a purged comment stays out
            ],
            first_offset=100,
        )
        plans = await apply_records(history, records)
        # Split after the purge: the offsets through it are committed before the rest is written.
        assert [p.records for p in plans] == [5, 5]
        assert [p.purges for p in plans] == [1, 0]
        assert (sum(p.skipped for p in plans), sum(p.ignored for p in plans)) == (1, 1)
        assert await history_rows(history, "s") == {c4: "bob"}
        assert await history_rows(history, "t") == {c5: "ann"}
        assert (await history.watermark("s"), await history.watermark("t")) == (109, 108)
        # What a restart after the purge's checkpoint redoes changes nothing.
        await apply_records(history, records[5:])
        assert await history_rows(history, "s") == {c4: "bob"}
        assert await history.watermark("s") == 109
    finally:
        await history.aclose()


class FailingOnce:
    """The real store, whose ``method`` raises BackendUnavailable the first time it is called."""

    def __init__(self, store: HistoryStore, method: str) -> None:
        self.store = store
        self.method = method
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> object:
        real = getattr(self.store, name)

        async def call(*args: object) -> object:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name == self.method and self.calls[name] == 1:
                raise BackendUnavailable(f"{name}: injected outage")
            return await real(*args)

        return call


async def test_a_failed_step_is_retried_from_where_it_failed(tmp_path: Path) -> None:
    history = await open_history(f"sqlite://{tmp_path}/history.db")
    c1, c2 = (first_id_at(int(time.time() * 1000)) + i for i in range(2))
    try:
        flaky = FailingOnce(history, "delete_user")
        records = records_of(
            [("s", comment_payload(c1, "bob")), ("s", comment_payload(c2, "ann")), ("s", encode_purge("bob"))]
        )
        [plan] = plan_records(records)
        writer = PlanWriter(flaky, plan)  # type: ignore[arg-type]
        with pytest.raises(BackendUnavailable):
            await writer.write()
        assert await history.watermark("s") == -1  # nothing claimed while a step is missing
        await writer.write()
        assert flaky.calls == {"put_many": 1, "delete_user": 2, "set_watermarks": 1}
        assert await history_rows(history, "s") == {c2: "ann"}
        assert await history.watermark("s") == 2
    finally:
        await history.aclose()


def persist(start: Start, log_url: str, history_url: str, group: str) -> LivechatProcess:
    return start(
        "worker",
        "persist",
        "--log",
        log_url,
        "--history",
        history_url,
        "--group",
        group,
        "--log-format",
        "plain",
        "--metrics-port",
        "0",
        name="persist",
    )


def _names() -> tuple[list[str], str]:
    tag = uuid.uuid4().hex[:8]
    return [f"s-{tag}-{i}" for i in range(3)], f"g-{tag}"


async def test_comments_deletes_and_purges_reach_history_in_log_order(
    kafka_topic: TopicFactory, livechat_process: Start, tmp_path: Path
) -> None:
    log_url = kafka_topic()
    history_url = f"sqlite://{tmp_path}/history.db"
    streams, group = _names()
    log = await KafkaCommentLog.open(log_url)
    worker = persist(livechat_process, log_url, history_url, group)
    history = await open_history(history_url)
    try:
        app = Appender(log)
        posted = await app.comments(streams, ["ann", "bob", "cat"], 90)
        # A delete, a purge, then the purged user posts again (must stay), and events history ignores.
        s0 = streams[0]
        late = app.comment(s0, "bob")
        await app.append(
            [
                (posted[0][0], encode_delete(posted[0][1]), None),
                (s0, encode_purge("bob"), None),
                late,
                (s0, encode_ban("bob", None), None),
                (s0, encode_pin(None), None),
                (s0, encode_highlight(late[2]), None),
            ]
        )
        await caught_up(history, app.model)
        await assert_history_matches(history, app.model)
        assert late[2] in app.model.comments[s0] and posted[0][1] not in app.model.comments[posted[0][0]]
        assert all(u != "bob" or c == late[2] for c, u in app.model.comments[s0].items())
        # The deleted comment left a tombstone: a late put of it stays out.
        assert await history.get(posted[0][0], posted[0][1]) is None
        assert worker.metric("livechat_worker_records_total", worker="persist") == app.model.appended
        assert worker.metric("livechat_worker_events_total", worker="persist", event="purges") == 1
        assert worker.stop() == 0
        assert "Traceback" not in worker.output()
    finally:
        await history.aclose()
        await log.aclose()


async def _kill_mid_stream_then_restart(
    log_url: str, history_url: str, start: Start, rounds: int, per_round: int
) -> None:
    streams, group = _names()
    users = ["ann", "bob", "cat", "dan"]
    log = await KafkaCommentLog.open(log_url)
    history = await open_history(history_url)
    try:
        app = Appender(log)
        first = persist(start, log_url, history_url, group)
        killed_at = None
        posted: list[tuple[str, int]] = []
        for n in range(rounds):
            posted += await app.comments(streams, users, per_round)
            if n % 4 == 3:  # some deletes along the way, some while the worker is down
                stream, cid = posted[-per_round]
                await app.append([(stream, encode_delete(cid), None)])
            if (
                killed_at is None
                and n >= rounds // 3
                and await asyncio.to_thread(first.metric, "livechat_worker_batches_total", worker="persist")
            ):
                first.kill()  # mid-stream: it has committed some batches, more are on their way
                killed_at = app.model.appended
            await asyncio.sleep(0.02)
        assert killed_at is not None and killed_at < app.model.appended, "the worker never got going"
        # Killed with -9 it committed nothing after its last finished batch; history may hold more.
        second = persist(start, log_url, history_url, group)
        await caught_up(history, app.model, timeout=120.0)
        await assert_history_matches(history, app.model)
        # Resumed from the committed offsets: the second run did not start over.
        redone = second.metric("livechat_worker_records_total", worker="persist")
        assert 0 < redone < app.model.appended
        assert second.stop() == 0
        for worker in (first, second):
            assert "Traceback" not in worker.output()
    finally:
        await history.aclose()
        await log.aclose()


async def test_kill_9_mid_stream_and_restart_keeps_every_comment_once_sqlite(
    kafka_topic: TopicFactory, livechat_process: Start, tmp_path: Path
) -> None:
    await _kill_mid_stream_then_restart(
        kafka_topic(), f"sqlite://{tmp_path}/history.db", livechat_process, rounds=40, per_round=100
    )


@pytest.fixture
def cassandra_keyspace() -> Iterator[str]:
    """A fresh keyspace (made by the store on open), dropped afterwards."""
    name = f"lc_t_{uuid.uuid4().hex[:12]}"
    server = service_url("cassandra")
    yield f"{server}/{name}?replication=1"
    from cassandra.cluster import Cluster

    host, _, port = server.removeprefix("cassandra://").partition(":")
    cluster = Cluster([host], port=int(port), protocol_version=5)
    try:
        with contextlib.suppress(Exception):
            cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)
    finally:
        cluster.shutdown()


async def test_kill_9_mid_stream_and_restart_keeps_every_comment_once_cassandra(
    kafka_topic: TopicFactory, livechat_process: Start, cassandra_keyspace: str
) -> None:
    await _kill_mid_stream_then_restart(
        kafka_topic(), cassandra_keyspace, livechat_process, rounds=24, per_round=100
    )


async def test_history_down_the_worker_lags_then_catches_up_nothing_skipped(
    kafka_topic: TopicFactory, livechat_process: Start, tmp_path: Path
) -> None:
    log_url = kafka_topic()
    path = tmp_path / "history.db"
    history_url = f"sqlite://{path}"
    streams, group = _names()
    log = await KafkaCommentLog.open(log_url)
    history = await open_history(history_url)
    worker = persist(livechat_process, log_url, history_url, group)
    try:
        app = Appender(log)
        await app.comments(streams, ["ann"], 30)
        await caught_up(history, app.model)
        # Another writer holds SQLite's write lock: every write of the worker fails (after the
        # 5 s busy timeout) while comments keep arriving.
        blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        mark = len(worker.output())
        try:
            for _ in range(5):
                await app.comments(streams, ["bob", "cat"], 40)
            await asyncio.to_thread(worker.wait_for, r"history_write failed \(attempt 2", 60.0, mark)
            assert {s: await history.watermark(s) for s in streams} != app.model.last_offset
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await caught_up(history, app.model)
        await assert_history_matches(history, app.model)
        assert worker.metric("livechat_worker_retries_total", worker="persist", step="history_write") >= 2
        assert worker.stop() == 0
    finally:
        await history.aclose()
        await log.aclose()
