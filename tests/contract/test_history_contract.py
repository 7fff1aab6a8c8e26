"""HistoryStore contract (livechat.ports.history), run against every history backend.

Every test names its streams through the ``name`` fixture: cluster backends share one store (one
Cassandra keyspace) between tests. The ``test_cassandra_*`` cases check what the port leaves to
that backend (its keyspace settings, its errors when the server is out of reach)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import backend_cassandra
import pytest
from livechat.backends import open_history
from livechat.backends.cassandra_schema import CassandraUrl, replication_map
from livechat.ids import CommentIdGenerator
from livechat.ports import BackendUnavailable, ClosedError, ConfigurationError, HistoryStore, StoredComment

from tests.cluster_services import Toxiproxy, service_url

IDS = CommentIdGenerator(node=3)
T = TypeVar("T")


def comments(stream: str, n: int, users: tuple[str, ...] = ("u1", "u2", "u3")) -> list[StoredComment]:
    ids = IDS
    return [
        StoredComment(stream, ids.next_id(), users[i % len(users)], f"{stream}:{i}".encode())
        for i in range(n)
    ]


def ids_of(items: list[StoredComment]) -> list[int]:
    return [c.comment_id for c in items]


@pytest.fixture
def name() -> Callable[[str], str]:
    """Stream names of this test only: cluster backends share one store between tests (see
    ``backend_cassandra``), and streams are what keeps their data apart."""
    prefix = uuid.uuid4().hex[:12]
    return lambda stream: f"{prefix}-{stream}"


async def test_pages_newest_first_and_after_oldest_first(
    history: HistoryStore, name: Callable[[str], str]
) -> None:
    s = name("s")
    stored = comments(s, 120)
    await history.put_many(stored[:60])
    for c in stored[60:]:
        await history.put(c)
    newest_first = ids_of(stored)[::-1]
    assert ids_of(await history.recent(s, 25)) == newest_first[:25]
    assert await history.page(s, None, 25) == await history.recent(s, 25)

    seen: list[int] = []
    before = None
    while page := await history.page(s, before, 50):
        seen += ids_of(page)
        before = page[-1].comment_id
    assert seen == newest_first

    middle = stored[39].comment_id
    assert ids_of(await history.after(s, middle, 30)) == ids_of(stored[40:70])
    assert ids_of(await history.after(s, stored[-1].comment_id, 30)) == []
    assert await history.get(s, stored[7].comment_id) == stored[7]
    assert await history.get(s, 12345) is None
    assert await history.page(s, None, 0) == []


async def test_streams_are_separate(history: HistoryStore, name: Callable[[str], str]) -> None:
    sa, sb = name("a"), name("b")
    a, b = comments(sa, 10), comments(sb, 10)
    await history.put_many(a + b)
    assert ids_of(await history.recent(sa, 100)) == ids_of(a)[::-1]
    assert {c.stream for c in await history.recent(sb, 100)} == {sb}
    assert await history.get(sb, a[0].comment_id) is None


async def test_a_large_put_many_skips_existing_and_deleted(
    history: HistoryStore, name: Callable[[str], str]
) -> None:
    s = name("s")
    # 700 comments: several multi-row statements in the SQLite backend.
    stored = comments(s, 700)
    await history.put(StoredComment(s, stored[300].comment_id, "first", b"first version"))
    await history.delete(s, stored[500].comment_id)
    await history.put_many(stored)
    kept = [c for c in stored if c.comment_id != stored[500].comment_id]
    read = await history.after(s, 0, 1000)
    assert ids_of(read) == ids_of(kept)
    assert read[300] == StoredComment(s, stored[300].comment_id, "first", b"first version")


async def test_put_is_idempotent_and_keeps_the_first_version(
    history: HistoryStore, name: Callable[[str], str]
) -> None:
    s = name("s")
    [c] = comments(s, 1)
    await history.put(c)
    await history.put(StoredComment(s, c.comment_id, "someone-else", b"rewritten"))
    assert await history.get(s, c.comment_id) == c
    assert len(await history.recent(s, 10)) == 1
    assert await history.delete_user(s, "someone-else") == []  # the second author owns nothing
    assert await history.get(s, c.comment_id) == c


async def test_delete_removes_from_every_read_and_leaves_a_tombstone(
    history: HistoryStore, name: Callable[[str], str]
) -> None:
    s, other = name("s"), name("other")
    stored = comments(s, 10)
    await history.put_many(stored)
    start = time.time()
    gone = stored[4]
    assert await history.delete(s, gone.comment_id) is True
    assert await history.delete(s, gone.comment_id) is False
    assert await history.get(s, gone.comment_id) is None
    assert gone.comment_id not in ids_of(await history.recent(s, 100))
    assert gone.comment_id not in ids_of(await history.page(s, stored[6].comment_id, 100))
    assert gone.comment_id not in ids_of(await history.after(s, stored[0].comment_id, 100))
    [tomb] = await history.tombstones_since(s, start - 1, 10)
    assert (tomb.stream, tomb.comment_id) == (s, gone.comment_id)
    assert start - 1 <= tomb.deleted_at <= time.time() + 1
    assert await history.tombstones_since(s, time.time() + 60, 10) == []
    assert await history.tombstones_since(other, 0, 10) == []


async def test_a_delete_before_the_put_wins(history: HistoryStore, name: Callable[[str], str]) -> None:
    s = name("s")
    [late] = comments(s, 1)
    assert await history.delete(s, late.comment_id) is False  # not there yet
    await history.put(late)  # the late writer (retried batch, slow edge)
    assert await history.get(s, late.comment_id) is None
    assert await history.recent(s, 10) == []


async def test_delete_user_purges_only_that_user_in_that_stream(
    history: HistoryStore, name: Callable[[str], str]
) -> None:
    s, other = name("s"), name("t")
    stored = comments(s, 30)
    elsewhere = comments(other, 6)
    await history.put_many(stored + elsewhere)
    purged = await history.delete_user(s, "u2")
    assert purged == [c.comment_id for c in stored if c.user_id == "u2"]
    remaining = await history.recent(s, 100)
    assert {c.user_id for c in remaining} == {"u1", "u3"} and len(remaining) == 20
    assert len(await history.recent(other, 100)) == 6  # same user, other stream: untouched
    tombs = await history.tombstones_since(s, 0, 100)
    assert sorted(t.comment_id for t in tombs) == purged
    await history.put(next(c for c in stored if c.user_id == "u2"))  # late copy stays deleted
    assert len(await history.recent(s, 100)) == 20
    assert await history.delete_user(s, "nobody") == []


async def test_tombstones_come_oldest_first_and_page(
    history: HistoryStore, name: Callable[[str], str]
) -> None:
    s = name("s")
    stored = comments(s, 5)
    await history.put_many(stored)
    for c in stored:
        await history.delete(s, c.comment_id)
        await asyncio.sleep(0.002)
    tombs = await history.tombstones_since(s, 0, 3)
    assert [t.comment_id for t in tombs] == ids_of(stored[:3])
    rest = await history.tombstones_since(s, tombs[-1].deleted_at + 1e-6, 10)
    assert [t.comment_id for t in rest] == ids_of(stored[3:])


async def test_history_and_tombstones_survive_reopen(history_url: str, name: Callable[[str], str]) -> None:
    s = name("s")
    stored = comments(s, 20)
    store = await open_history(history_url)
    await store.put_many(stored)
    await store.delete(s, stored[3].comment_id)
    await store.aclose()

    store = await open_history(history_url)
    try:
        assert ids_of(await store.recent(s, 100)) == [
            c.comment_id for c in stored[::-1] if c is not stored[3]
        ]
        assert [t.comment_id for t in await store.tombstones_since(s, 0, 10)] == [stored[3].comment_id]
        await store.put(stored[3])
        assert await store.get(s, stored[3].comment_id) is None
    finally:
        await store.aclose()


async def test_comments_past_retention_are_purged(history_url: str, name: Callable[[str], str]) -> None:
    s, quiet = name("s"), name("quiet")
    now_ms = int(time.time() * 1000)
    old_ids = CommentIdGenerator(node=5, clock_ms=lambda: now_ms - 120_000)  # two minutes ago
    old = [StoredComment(s, old_ids.next_id(), "u", b"old") for _ in range(5)]
    only_old = [StoredComment(quiet, old_ids.next_id(), "u", b"old") for _ in range(2)]
    fresh = comments(s, 5)
    store = await open_history(history_url, retention_s=60)
    assert store.retention_s == 60
    await store.put_many(old + only_old + fresh)
    await store.aclose()

    store = await open_history(history_url, retention_s=60)  # purges at open
    try:
        assert ids_of(await store.recent(s, 100)) == ids_of(fresh)[::-1]
        assert await store.recent(quiet, 100) == []
    finally:
        await store.aclose()


async def test_bad_payload_is_refused_and_writes_nothing(
    history: HistoryStore, name: Callable[[str], str]
) -> None:
    s = name("s")
    good = comments(s, 1)[0]
    with pytest.raises(TypeError):
        await history.put_many([good, StoredComment(s, good.comment_id + 1, "u", "text")])  # type: ignore[arg-type]
    assert await history.recent(s, 10) == []


async def test_closed_store_refuses_calls(history_url: str, name: Callable[[str], str]) -> None:
    s = name("s")
    store = await open_history(history_url)
    await store.aclose()
    await store.aclose()
    with pytest.raises(ClosedError):
        await store.recent(s, 1)


def spread(stream: str, n: int, hours: float) -> list[StoredComment]:
    """``n`` comments with ids spread evenly over the last ``hours`` hours (ascending): with the
    Cassandra backend's one-hour buckets they fill ``hours`` + 1 partitions."""
    start_ms = int(time.time() * 1000 - hours * 3_600_000)
    clock = iter(start_ms + int(i * hours * 3_600_000 / n) for i in range(n))
    ids = CommentIdGenerator(node=4, clock_ms=lambda: next(clock))
    return [StoredComment(stream, ids.next_id(), f"u{i % 3}", f"{i}".encode()) for i in range(n)]


async def test_pages_across_many_time_buckets(history: HistoryStore, name: Callable[[str], str]) -> None:
    s = name("s")
    stored = spread(s, 60, hours=5)  # 12 an hour: most pages below span two or more buckets
    await history.put_many(stored[::2])
    await history.put_many(stored[1::2])
    newest_first = ids_of(stored)[::-1]
    assert ids_of(await history.recent(s, 100)) == newest_first

    seen: list[int] = []
    before = None
    while page := await history.page(s, before, 7):
        seen += ids_of(page)
        before = page[-1].comment_id
    assert seen == newest_first

    forward: list[int] = []
    after = 0
    while chunk := await history.after(s, after, 7):
        forward += ids_of(chunk)
        after = chunk[-1].comment_id
    assert forward == ids_of(stored)
    assert ids_of(await history.page(s, stored[30].comment_id, 25)) == ids_of(stored[5:30])[::-1]
    assert ids_of(await history.after(s, stored[10].comment_id, 25)) == ids_of(stored[11:36])

    # Deletes and a purge reach every bucket.
    assert await history.delete(s, stored[20].comment_id) is True
    purged = await history.delete_user(s, "u1")
    assert purged == [c.comment_id for c in stored if c.user_id == "u1"]
    left = [c for c in stored if c.user_id != "u1" and c is not stored[20]]
    assert ids_of(await history.after(s, 0, 100)) == ids_of(left)
    assert ids_of(await history.recent(s, 100)) == ids_of(left)[::-1]


async def test_a_re_put_is_not_duplicated(history_url: str, name: Callable[[str], str]) -> None:
    """The persist worker may write a record again after a restart (a new process, a new store)."""
    s = name("s")
    stored = spread(s, 30, hours=2)
    store = await open_history(history_url)
    try:
        await store.put_many(stored)
        await store.put_many(stored[10:])
        await store.put(stored[0])
    finally:
        await store.aclose()
    store = await open_history(history_url)
    try:
        await store.put_many(stored)
        assert ids_of(await store.after(s, 0, 100)) == ids_of(stored)
        assert await store.recent(s, 100) == stored[::-1]
        assert await store.delete_user(s, "u0") == [c.comment_id for c in stored if c.user_id == "u0"]
    finally:
        await store.aclose()


async def test_a_late_put_of_an_old_deleted_comment_stays_deleted(
    history: HistoryStore, name: Callable[[str], str]
) -> None:
    """Comments hours old (older than Cassandra's gc_grace on the history table) deleted, then put
    again by a late writer (a persist worker replaying its log)."""
    s = name("s")
    stored = spread(s, 6, hours=5)
    await history.put_many(stored)
    assert await history.delete(s, stored[0].comment_id) is True
    assert await history.delete_user(s, "u1") == [stored[1].comment_id, stored[4].comment_id]
    await history.put_many(stored)
    assert await history.recent(s, 10) == [stored[5], stored[3], stored[2]]
    assert await history.get(s, stored[0].comment_id) is None


async def test_watermarks_only_move_forward_and_survive_reopen(
    history_url: str, name: Callable[[str], str]
) -> None:
    s, t, quiet = name("s"), name("t"), name("quiet")
    store = await open_history(history_url)
    try:
        assert await store.watermark(s) == -1
        await store.set_watermarks({s: 10, t: 3})
        await store.set_watermarks({s: 7})  # a lower mark (a slower writer) does not go back
        await store.set_watermarks({})
        assert (await store.watermark(s), await store.watermark(t)) == (10, 3)
        await asyncio.gather(*(store.set_watermarks({t: n}) for n in (5, 40, 12, 39)))
        assert await store.watermark(t) == 40
    finally:
        await store.aclose()
    store = await open_history(history_url)
    try:
        assert [await store.watermark(x) for x in (s, t, quiet)] == [10, 40, -1]
    finally:
        await store.aclose()


# -- Cassandra only: what the port leaves to the backend -------------------------------------


async def test_cassandra_refuses_a_keyspace_made_with_another_bucket_width(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = backend_cassandra.fresh_url("history", request, tmp_path)
    await (await open_history(url)).aclose()  # the keyspace exists, made with the default width
    with pytest.raises(ConfigurationError, match="bucket_s"):
        await open_history(url + "&bucket_s=60")


async def test_cassandra_out_of_reach_is_backend_unavailable_and_heals(
    request: pytest.FixtureRequest, tmp_path: Path, name: Callable[[str], str]
) -> None:
    """Through a Toxiproxy proxy: slow answers (past the 2 s request timeout) and a dropped
    connection both raise BackendUnavailable; the same store works again once the path is back."""
    toxiproxy = Toxiproxy(service_url("toxiproxy"))
    server = backend_cassandra.server_url().removeprefix("cassandra://")
    proxy = f"lc-history-{uuid.uuid4().hex[:8]}"
    listen = toxiproxy.proxy(proxy, "127.0.0.1:0", server)["listen"]
    keyspace_url = backend_cassandra.fresh_url("history", request, tmp_path)
    url = keyspace_url.replace(server, listen) + "&timeout=2"
    s = name("s")
    first, second = comments(s, 2)
    store = await open_history(url)
    try:
        await store.put(first)
        toxiproxy.add_toxic(proxy, "latency", attributes={"latency": 4000})
        with pytest.raises(BackendUnavailable):
            await store.recent(s, 10)
        with pytest.raises(BackendUnavailable):
            await store.put(second)
        toxiproxy.remove_toxic(proxy, "latency_downstream")
        assert await _eventually(lambda: store.recent(s, 10)) in ([first], [second, first])

        toxiproxy.set_enabled(proxy, False)
        with pytest.raises(BackendUnavailable):
            await store.get(s, first.comment_id)
        toxiproxy.set_enabled(proxy, True)
        await _eventually(lambda: store.put(second))
        assert await store.recent(s, 10) == [second, first]
    finally:
        await store.aclose()
        toxiproxy.delete_proxy(proxy)


def test_cassandra_url_options() -> None:
    url = CassandraUrl.parse(
        "cassandra://10.0.0.1:9142,10.0.0.2/history?consistency=one&replication=dc1:3,dc2:2&timeout=0.5"
    )
    assert url.hosts == (("10.0.0.1", 9142), ("10.0.0.2", 9042))
    assert (url.keyspace, url.consistency, url.timeout_s, url.bucket_s) == ("history", "ONE", 0.5, 3600)
    assert replication_map(url.replication) == ("{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}")
    assert "SimpleStrategy" in replication_map(CassandraUrl.parse("cassandra://h:1/ks").replication)
    for bad in (
        "cassandra://h:1/",  # no keyspace
        "cassandra://h:1/bad-name",
        "cassandra://h:1/ks?bucket_s=0",
        "cassandra://h:1/ks?replication=dc1",
        "cassandra://h:1/ks?colour=blue",
        "cassandra://h:x/ks",
    ):
        with pytest.raises(ConfigurationError):
            CassandraUrl.parse(bad)


async def _eventually(call: Callable[[], Awaitable[T]], within_s: float = 30.0) -> T:
    """``call()`` retried on BackendUnavailable (the driver reconnects with a back-off)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call()
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
