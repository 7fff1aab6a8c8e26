"""History follows the comment log on an embedded edge (issue 13): history's watermark never passes
a comment history does not hold, a failed history put is retried with the next batch, and what a
crash left out is put by the start-up replay, so a ``dup`` ack names a comment that reads back.

History here is the real SQLite store behind a wrapper that makes chosen ``put_many`` calls fail
the way a locked or full database does (``BackendError``); nothing else is replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chat_harness import Harness, RecordingOutbox, chat_config
from livechat.backends import Backends
from livechat.backends.sqlite_log import SqliteCommentLog
from livechat.ports.errors import BackendError
from livechat.ports.history import HistoryStore, StoredComment
from livechat.server.log_replay import replay_into_history
from livechat.services.chat import ChatService
from livechat.services.clock import ManualClock


class FailingPuts:
    """``history`` whose next ``failures`` puts raise BackendError (everything else passes through)."""

    def __init__(self, history: HistoryStore) -> None:
        self._history = history
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._history, name)

    async def put_many(self, comments: Sequence[StoredComment]) -> None:
        if self.failures:
            self.failures -= 1
            raise BackendError("sqlite: database is locked")
        await self._history.put_many(comments)


async def edge(backends: Backends, clock: ManualClock, history: Any) -> Harness:
    """A ChatService on ``backends`` with ``history`` (the unit harness, with its history swapped)."""
    outbox = RecordingOutbox()
    chat = ChatService(
        chat_config(), outbox, log=backends.log, history=history, meta=backends.meta, clock=clock
    )
    await chat.start(periodic=False)
    return Harness(chat, outbox, clock, backends)


async def ids_in_history(h: Harness) -> list[int]:
    return sorted(c.comment_id for c in await h.backends.history.page("s1", None, 100))


async def test_a_failed_put_is_retried_and_the_watermark_waits_for_it(
    backends: Backends, clock: ManualClock
) -> None:
    flaky = FailingPuts(backends.history)
    h = await edge(backends, clock, flaky)
    author = h.connect("author")
    await h.join(author)
    flaky.failures = 1
    first = await h.post(author, "lost for a moment")
    assert first["t"] == "ack"  # in the log: acked
    assert await ids_in_history(h) == []
    # Nothing claimed yet: a restart now would replay the first comment.
    assert await h.backends.history.watermark("s1") == -1
    second = await h.post(author, "next")
    assert await ids_in_history(h) == [first["id"], second["id"]]
    records = await h.backends.log.read("s1", -1, 10)
    assert await h.backends.history.watermark("s1") == records[-1].offset
    await h.chat.aclose()


async def test_what_failed_puts_left_out_is_replayed_and_a_retry_reads_back(
    backends: Backends, clock: ManualClock
) -> None:
    flaky = FailingPuts(backends.history)
    h = await edge(backends, clock, flaky)
    author = h.connect("author")
    await h.join(author)
    ok = await h.post(author, "stored", cmid="a")
    flaky.failures = 10  # history is down from here on, then the edge "crashes"
    lost = [await h.post(author, f"only in the log {i}", cmid=f"b{i}") for i in range(3)]
    assert await ids_in_history(h) == [ok["id"]]
    # The watermark still names the last comment history holds: the replay starts there.
    assert await h.backends.history.watermark("s1") == (await h.backends.log.read("s1", -1, 1))[0].offset
    log = h.backends.log
    assert isinstance(log, SqliteCommentLog)
    assert await replay_into_history(log, h.backends.history) == 3
    assert await ids_in_history(h) == sorted([ok["id"], *(a["id"] for a in lost)])
    # A fresh edge on the same stores (the restart): the retry of an acked cmid is a duplicate of a
    # comment that reads back.
    await h.chat.aclose()
    again = await edge(backends, clock, backends.history)
    conn = again.connect("author")
    await again.join(conn)
    dup = await again.post(conn, "only in the log 1", cmid="b1")
    assert dup["dup"] is True and dup["id"] == lost[1]["id"]
    assert await again.backends.history.get("s1", dup["id"]) is not None
    await again.chat.aclose()
