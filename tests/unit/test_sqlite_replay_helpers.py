"""The SQLite-only reads an embedded edge's start-up replay uses to find the streams history lags
behind in: the log's newest offset per stream and history's watermarks, one read each."""

from __future__ import annotations

from pathlib import Path

from livechat.backends.sqlite_history import SqliteHistoryStore
from livechat.backends.sqlite_log import SqliteCommentLog
from livechat.ports.comment_log import LogEntry


async def test_stream_heads_and_watermarks(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/livechat.db"
    log = await SqliteCommentLog.open(url)
    history = await SqliteHistoryStore.open(url)
    try:
        assert await log.stream_heads() == {}
        assert await history.watermarks() == {}
        # Names that sort next to each other (a prefix, a longer one, non-ASCII) and interleaved
        # appends: each head is that stream's own newest record.
        streams = ["a", "a.b", "ab", "b", "é", "a:1"]
        appended = await log.append_many([LogEntry(s, f"{s}{i}".encode()) for i in range(3) for s in streams])
        heads = await log.stream_heads()
        offsets = list(zip(streams * 3, (r.offset for r in appended), strict=True))
        assert heads == {s: max(offset for name, offset in offsets if name == s) for s in streams}
        assert heads == {s: await log.last_offset(s) for s in streams}
        await history.set_watermarks({"a": heads["a"], "b": 1})
        assert await history.watermarks() == {"a": heads["a"], "b": 1}
    finally:
        await log.aclose()
        await history.aclose()
