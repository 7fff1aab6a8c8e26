"""CommentLog contract (livechat.ports.comment_log), run against every log backend.

Kafka-only behaviour (the shared dedupe index in Redis and Redis Cluster, its crash rule and its
fail-open rule) is at the end of this file.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from pathlib import Path

import pytest
from livechat.backends import open_comment_log
from livechat.ports import ClosedError, CommentLog, LogEntry


@pytest.fixture
def another_log_url(log_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Each call: the URL of one more fresh, empty log on the same backend as ``log_url``."""
    count = 0

    def make() -> str:
        nonlocal count
        count += 1
        if log_url.startswith("sqlite://"):
            return f"sqlite://{tmp_path}/other-log-{count}.db"
        module = importlib.import_module(f"backend_{log_url.partition('://')[0]}")
        return str(module.fresh_url("log", request, tmp_path))

    return make


async def test_records_read_back_in_append_order_with_increasing_offsets(comment_log: CommentLog) -> None:
    assert await comment_log.last_offset("s") == -1
    sent = [f"c{i}".encode() for i in range(250)]
    offsets = [(await comment_log.append("s", p)).offset for p in sent]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    records = await comment_log.read("s", -1, 1000)
    assert [r.payload for r in records] == sent
    assert [r.offset for r in records] == offsets
    assert all(r.stream == "s" and r.client_msg_id is None for r in records)
    assert await comment_log.last_offset("s") == offsets[-1]


async def test_read_pages_from_an_offset(comment_log: CommentLog) -> None:
    for i in range(100):
        await comment_log.append("s", str(i).encode())
    pages, after = [], -1
    while page := await comment_log.read("s", after, 30):
        assert len(page) <= 30
        pages.append(page)
        after = page[-1].offset
    assert [len(p) for p in pages] == [30, 30, 30, 10]
    assert [r.payload for p in pages for r in p] == [str(i).encode() for i in range(100)]
    assert await comment_log.read("s", after, 10) == []
    assert await comment_log.read("s", -1, 0) == []


async def test_streams_are_separate_and_offsets_need_not_be_dense(comment_log: CommentLog) -> None:
    for i in range(50):
        await comment_log.append("even" if i % 2 == 0 else "odd", str(i).encode())
    even = await comment_log.read("even", -1, 100)
    odd = await comment_log.read("odd", -1, 100)
    assert [r.payload for r in even] == [str(i).encode() for i in range(0, 50, 2)]
    assert [r.payload for r in odd] == [str(i).encode() for i in range(1, 50, 2)]
    # Reading from an offset in the middle of another stream's numbers still works.
    middle = even[10].offset
    assert [r.payload for r in await comment_log.read("even", middle, 100)] == [r.payload for r in even[11:]]
    assert await comment_log.read("nobody", -1, 10) == []


async def test_concurrent_appends_keep_call_order(comment_log: CommentLog) -> None:
    results = await asyncio.gather(*(comment_log.append("s", str(i).encode()) for i in range(300)))
    offsets = [r.offset for r in results]
    assert offsets == sorted(offsets)
    assert [r.payload for r in await comment_log.read("s", -1, 1000)] == [str(i).encode() for i in range(300)]


async def test_append_is_idempotent_per_stream_and_client_message_id(comment_log: CommentLog) -> None:
    first = await comment_log.append("s", b"hello", client_msg_id="m-1")
    assert not first.duplicate
    again = await comment_log.append("s", b"hello (retry)", client_msg_id="m-1")
    assert again.duplicate
    assert again.offset == first.offset
    assert again.payload == b"hello"  # the ORIGINAL record, to re-ack the author
    other_stream = await comment_log.append("t", b"hello", client_msg_id="m-1")
    assert not other_stream.duplicate
    no_key_1 = await comment_log.append("s", b"same")
    no_key_2 = await comment_log.append("s", b"same")
    assert not no_key_1.duplicate and not no_key_2.duplicate and no_key_1.offset != no_key_2.offset
    records = await comment_log.read("s", -1, 10)
    assert [(r.payload, r.client_msg_id) for r in records] == [
        (b"hello", "m-1"),
        (b"same", None),
        (b"same", None),
    ]


async def test_append_many_is_ordered_and_dedupes_inside_the_batch(comment_log: CommentLog) -> None:
    await comment_log.append("s", b"before", client_msg_id="m-0")
    results = await comment_log.append_many(
        [
            LogEntry("s", b"a", "m-1"),
            LogEntry("s", b"b"),
            LogEntry("s", b"a again", "m-1"),
            LogEntry("t", b"c", "m-1"),
            LogEntry("s", b"before again", "m-0"),
        ]
    )
    assert [r.duplicate for r in results] == [False, False, True, False, True]
    assert results[2].offset == results[0].offset and results[2].payload == b"a"
    assert results[4].payload == b"before"
    assert [r.payload for r in await comment_log.read("s", -1, 10)] == [b"before", b"a", b"b"]
    assert await comment_log.append_many([]) == []


async def test_a_large_batch_keeps_order_offsets_and_dedupe(comment_log: CommentLog) -> None:
    # 1 300 entries: several multi-row statements in the SQLite backend; repeats across them.
    await comment_log.append_many([LogEntry("s", b"early", "k-5")])
    entries = [LogEntry("s" if i % 3 else "t", f"p{i}".encode(), f"k-{i % 1000}") for i in range(1300)]
    results = await comment_log.append_many(entries)
    first: dict[tuple[str, str], int] = {("s", "k-5"): -1}
    for i, (entry, result) in enumerate(zip(entries, results, strict=True)):
        key = (entry.stream, str(entry.client_msg_id))
        assert result.duplicate == (key in first), i
        first.setdefault(key, i)
        if result.duplicate and first[key] >= 0:
            assert (result.offset, result.payload) == (
                results[first[key]].offset,
                entries[first[key]].payload,
            )
    for stream in ("s", "t"):
        fresh = [r for e, r in zip(entries, results, strict=True) if e.stream == stream and not r.duplicate]
        offsets = [r.offset for r in fresh]
        assert offsets == sorted(set(offsets))
        records = await comment_log.read(stream, -1, 2000)
        tail = records[1:] if stream == "s" else records
        assert [(r.offset, r.payload) for r in tail] == [(r.offset, r.payload) for r in fresh]


async def test_dedupe_window_expires(log_url: str) -> None:
    log = await open_comment_log(log_url, dedupe_window_s=0.3, retention_s=60)
    try:
        assert log.dedupe_window_s == 0.3
        first = await log.append("s", b"x", client_msg_id="m")
        assert (await log.append("s", b"x", client_msg_id="m")).duplicate
        await asyncio.sleep(0.4)
        late = await log.append("s", b"x", client_msg_id="m")
        assert not late.duplicate and late.offset > first.offset
    finally:
        await log.aclose()


async def test_records_epoch_and_dedupe_survive_reopen(log_url: str) -> None:
    log = await open_comment_log(log_url)
    epoch = await log.epoch()
    first = await log.append("s", b"one", client_msg_id="m-1")
    await log.append("s", b"two")
    await log.aclose()

    log = await open_comment_log(log_url)
    try:
        assert await log.epoch() == epoch
        assert [r.payload for r in await log.read("s", -1, 10)] == [b"one", b"two"]
        retry = await log.append("s", b"one", client_msg_id="m-1")
        assert retry.duplicate and retry.offset == first.offset
        before = (await log.read("s", -1, 2))[-1].offset
        assert (await log.append("s", b"three")).offset > before
    finally:
        await log.aclose()


async def test_a_new_log_has_a_new_epoch(log_url: str, another_log_url: Callable[[], str]) -> None:
    a = await open_comment_log(log_url)
    b = await open_comment_log(another_log_url())
    try:
        assert await a.epoch() != await b.epoch()
    finally:
        await a.aclose()
        await b.aclose()


async def test_bad_payload_is_refused_and_writes_nothing(comment_log: CommentLog) -> None:
    with pytest.raises(TypeError):
        await comment_log.append_many([LogEntry("s", b"ok"), LogEntry("s", "not bytes")])  # type: ignore[arg-type]
    assert await comment_log.read("s", -1, 10) == []


async def test_closed_log_refuses_calls(log_url: str) -> None:
    log = await open_comment_log(log_url)
    await log.aclose()
    await log.aclose()
    with pytest.raises(ClosedError):
        await log.append("s", b"x")
    with pytest.raises(ClosedError):
        await log.read("s", -1, 1)


async def test_origin_is_stored_with_each_record(comment_log: CommentLog) -> None:
    await comment_log.append("s", b"a", origin="edge-1")
    await comment_log.append_many([LogEntry("s", b"b", "m-1", "edge-2"), LogEntry("s", b"c")])
    records = await comment_log.read("s", -1, 10)
    assert [(r.payload, r.client_msg_id, r.origin) for r in records] == [
        (b"a", None, "edge-1"),
        (b"b", "m-1", "edge-2"),
        (b"c", None, None),
    ]


async def test_end_offset_is_a_position_after_everything_appended(comment_log: CommentLog) -> None:
    assert await comment_log.end_offset("s") == -1
    for i in range(20):
        await comment_log.append("s" if i % 2 else "t", str(i).encode())
    end = await comment_log.end_offset("s")
    assert end >= await comment_log.last_offset("s")
    assert await comment_log.read("s", end, 10) == []
    later = await comment_log.append("s", b"later")
    assert later.offset > end
    assert [r.payload for r in await comment_log.read("s", end, 10)] == [b"later"]


async def test_two_clients_of_one_log_dedupe_each_other(log_url: str) -> None:
    """Two edges on one log: a client_msg_id retried on the other edge gets the first record."""
    a = await open_comment_log(log_url)
    b = await open_comment_log(log_url)
    try:
        first = await a.append("s", b"from a", client_msg_id="m-1")
        retry = await b.append("s", b"from b", client_msg_id="m-1")
        assert retry.duplicate and (retry.offset, retry.payload) == (first.offset, b"from a")
        both = await asyncio.gather(
            a.append_many([LogEntry("s", b"a2", "m-2")]), b.append_many([LogEntry("s", b"b2", "m-2")])
        )
        assert sorted(r[0].duplicate for r in both) == [False, True]
        assert both[0][0].offset == both[1][0].offset
        assert [r.payload for r in await a.read("s", -1, 10)] == [b"from a", both[0][0].payload]
    finally:
        await a.aclose()
        await b.aclose()


async def test_read_sees_appends_of_another_client(log_url: str) -> None:
    a = await open_comment_log(log_url)
    b = await open_comment_log(log_url)
    try:
        appended = await a.append_many([LogEntry("s", str(i).encode()) for i in range(30)])
        records = await b.read("s", -1, 100)
        assert [r.offset for r in records] == [r.offset for r in appended]
        assert await b.last_offset("s") == appended[-1].offset
    finally:
        await a.aclose()
        await b.aclose()


# -- Kafka only: partitioning and the shared dedupe index -------------------------------------


async def test_kafka_streams_land_where_the_default_partitioner_puts_them(
    request: pytest.FixtureRequest,
) -> None:
    """The log picks partitions itself (one batch per partition): it must agree with Kafka's
    default partitioner (murmur2 of the key), which every other client uses."""
    from aiokafka import AIOKafkaProducer
    from backend_kafka import broker, kafka_url

    url = kafka_url(request, partitions=8)
    log = await open_comment_log(url)
    producer = AIOKafkaProducer(bootstrap_servers=broker())
    await producer.start()
    try:
        topic = url.partition("://")[2].partition("/")[2].partition("?")[0]
        for i in range(40):
            stream = f"stream-{i}"
            theirs = await producer.send_and_wait(topic, b"x", key=stream.encode())
            ours = await log.append(stream, b"y")
            assert [r.payload for r in await log.read(stream, ours.offset - 1, 10)] == [b"y"]
            assert [r.offset for r in await log.read(stream, -1, 10)] == [theirs.offset, ours.offset]
    finally:
        await producer.stop()
        await log.aclose()


@pytest.mark.parametrize("index", ["redis", "redis-cluster"])
async def test_kafka_dedupe_is_shared_by_edges_on_redis_and_redis_cluster(
    request: pytest.FixtureRequest, index: str
) -> None:
    from backend_kafka import kafka_url

    url = kafka_url(request, dedupe=index)
    edges = [await open_comment_log(url) for _ in range(3)]
    try:
        keys = [f"m-{i}" for i in range(200)]
        first = await edges[0].append_many([LogEntry(f"s{i % 7}", b"first", k) for i, k in enumerate(keys)])
        for edge in edges[1:]:
            again = await edge.append_many([LogEntry(f"s{i % 7}", b"again", k) for i, k in enumerate(keys)])
            assert all(r.duplicate for r in again)
            assert [(r.offset, r.payload) for r in again] == [(r.offset, r.payload) for r in first]
        stored = [await edges[2].read(f"s{i}", -1, 1000) for i in range(7)]
        assert sum(len(records) for records in stored) == 200
    finally:
        for edge in edges:
            await edge.aclose()


async def test_kafka_dedupe_without_an_index_is_per_edge(request: pytest.FixtureRequest) -> None:
    from backend_kafka import kafka_url

    url = kafka_url(request, dedupe=None)
    a = await open_comment_log(url)
    b = await open_comment_log(url)
    try:
        assert not (await a.append("s", b"x", "m")).duplicate
        assert (await a.append("s", b"x", "m")).duplicate
        assert not (await b.append("s", b"x", "m")).duplicate  # documented: per edge
    finally:
        await a.aclose()
        await b.aclose()


async def test_kafka_appends_go_on_when_the_dedupe_index_is_unreachable(
    request: pytest.FixtureRequest,
) -> None:
    """Fail open: nothing in Redis answers on port 1, yet the log opens, appends, and still
    dedupes within this process."""
    from backend_kafka import broker, delete_topic

    name = f"t-dead-index-{request.node.name[-8:]}-{id(request)}"
    request.addfinalizer(lambda: delete_topic(name))
    log = await open_comment_log(f"kafka://{broker()}/{name}?partitions=2&dedupe=redis://127.0.0.1:1")
    try:
        first = await log.append("s", b"x", "m")
        assert not first.duplicate
        assert (await log.append("s", b"y", "m")).duplicate
        assert [r.payload for r in await log.read("s", -1, 10)] == [b"x"]
        assert log._shared is not None and log._shared.stats.redis_failures >= 1  # type: ignore[attr-defined]
    finally:
        await log.aclose()


async def test_kafka_claim_of_a_crashed_edge_blocks_retries_until_it_expires(
    request: pytest.FixtureRequest,
) -> None:
    """The crash rule: a claim left pending (its edge died between claim and confirm) makes a
    retry fail with BackendUnavailable until the claim expires; then the retry is appended."""
    import redis.asyncio as redis_asyncio
    from backend_kafka import kafka_url
    from livechat.ports import BackendUnavailable

    from tests.cluster_services import service_url

    url = kafka_url(request)
    log = await open_comment_log(url)
    shared = log._shared  # type: ignore[attr-defined]
    client = redis_asyncio.Redis.from_url(service_url("redis"))
    try:
        # Another edge's claim, as it stands when that edge crashed: pending, with a TTL.
        await client.set(shared.key_name(("s", "m-crash")), b"P" + b"x" * 16, px=800)
        with pytest.raises(BackendUnavailable):
            await log.append("s", b"retry", "m-crash")
        await asyncio.sleep(0.9)
        appended = await log.append("s", b"retry", "m-crash")
        assert not appended.duplicate
        # Another edge's claim that it confirms while this one waits: the retry gets its record.
        name = shared.key_name(("s", "m-slow"))
        await client.set(name, b"P" + b"y" * 16, px=30_000)
        waiting = asyncio.ensure_future(log.append("s", b"mine", "m-slow"))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await client.set(name, b"D" + (12345).to_bytes(8, "big") + b"theirs", px=30_000)
        result = await asyncio.wait_for(waiting, 2)
        assert (result.duplicate, result.offset, result.payload) == (True, 12345, b"theirs")
        assert [r.payload for r in await log.read("s", -1, 10)] == [b"retry"]
    finally:
        await client.aclose()
        await log.aclose()


async def test_kafka_a_refused_record_fails_its_call_and_the_log_goes_on(
    request: pytest.FixtureRequest,
) -> None:
    """All or nothing for the caller: a record the broker refuses (over the topic's
    max.message.bytes) fails the whole call. If the call's other record landed (in a batch of its
    own) its key is confirmed and the retry gets it back as a duplicate; either way the log ends
    with one copy of each, and the refused key is free. The producer is replaced after the
    failed batch (aiokafka does not renumber the partition's batches), so later appends to that
    partition work."""
    from backend_kafka import broker, create_topic, service_url
    from livechat.ports import BackendError

    topic = create_topic(request, {"max.message.bytes": "20000"})
    log = await open_comment_log(f"kafka://{broker()}/{topic}?dedupe={service_url('redis')}")
    try:
        with pytest.raises(BackendError):
            await log.append_many([LogEntry("s", b"ok", "m-ok"), LogEntry("s", b"x" * 50_000, "m-big")])
        retried = await log.append_many([LogEntry("s", b"ok", "m-ok"), LogEntry("s", b"small", "m-big")])
        assert not retried[1].duplicate  # "ok" was refused with its batch or landed in its own
        for i in range(20):
            await log.append("s", f"later-{i}".encode())
        records = await log.read("s", -1, 100)
        assert [r.payload for r in records] == [b"ok", b"small", *(f"later-{i}".encode() for i in range(20))]
        assert [r.offset for r in records[:2]] == [r.offset for r in retried]
        with pytest.raises(BackendError):  # over the client's own limit: refused before sending
            await log.append("s", b"x" * 2_000_000)
    finally:
        await log.aclose()


async def test_kafka_appends_fail_while_the_broker_is_unreachable_and_work_again_after(
    request: pytest.FixtureRequest,
) -> None:
    """Kafka unreachable: an append raises BackendUnavailable within the append timeout and
    acknowledges nothing it did not store; once the link is back appends work again (the
    producer is replaced), and every acknowledged record is in the log once, in order."""
    import time

    from backend_kafka import kafka_proxy, kafka_url
    from livechat.backends.kafka_connect import APPEND_TIMEOUT_S
    from livechat.ports import BackendUnavailable

    url = kafka_url(request)
    toxiproxy, name, _ = kafka_proxy(request)
    log = await open_comment_log(url)  # every connection of this log goes through the proxy
    acked: list[bytes] = []
    try:
        for i in range(20):
            await log.append("s", f"before-{i}".encode(), f"b{i}")
            acked.append(f"before-{i}".encode())
        toxiproxy.set_enabled(name, False)
        start = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await log.append("s", b"during", "d0")
        assert time.monotonic() - start <= APPEND_TIMEOUT_S + 1
        toxiproxy.set_enabled(name, True)
        deadline = time.monotonic() + 30
        while True:  # the author's retry loop, same client_msg_id
            try:
                retry = await log.append("s", b"during", "d0")
                break
            except BackendUnavailable:
                assert time.monotonic() < deadline, "appends did not work again within 30 s"
                await asyncio.sleep(0.5)
        acked.append(retry.payload)
        for i in range(20):
            await log.append("s", f"after-{i}".encode(), f"a{i}")
            acked.append(f"after-{i}".encode())
        records = await log.read("s", -1, 1000)
        assert [r.payload for r in records] == acked
    finally:
        await log.aclose()


# -- SQLite only: schema migration ------------------------------------------------------------


async def test_sqlite_log_written_by_schema_1_gains_origin_in_place(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE lc_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
        INSERT INTO lc_schema VALUES ('comment_log', 1);
        CREATE TABLE log_records (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL,
            payload BLOB NOT NULL, client_msg_id TEXT, appended_at REAL NOT NULL);
        INSERT INTO log_records (stream, payload, client_msg_id, appended_at)
            VALUES ('s', x'6f6c64', 'm', 1e10);"""
    )
    conn.commit()
    conn.close()
    log = await open_comment_log(f"sqlite://{path}")
    try:
        await log.append("s", b"new", origin="edge-1")
        records = await log.read("s", -1, 10)
        assert [(r.payload, r.client_msg_id, r.origin) for r in records] == [
            (b"old", "m", None),
            (b"new", None, "edge-1"),
        ]
    finally:
        await log.aclose()
