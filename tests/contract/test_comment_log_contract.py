"""CommentLog contract (livechat.ports.comment_log), run against every log backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from livechat.backends import open_comment_log
from livechat.ports import ClosedError, CommentLog, LogEntry


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


async def test_a_new_log_has_a_new_epoch(log_url: str, tmp_path: Path) -> None:
    a = await open_comment_log(log_url)
    b = await open_comment_log(f"sqlite://{tmp_path}/other-log.db")
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
