"""HistoryStore contract (livechat.ports.history), run against every history backend."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from livechat.backends import open_history
from livechat.ids import CommentIdGenerator
from livechat.ports import ClosedError, HistoryStore, StoredComment

IDS = CommentIdGenerator(node=3)


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
