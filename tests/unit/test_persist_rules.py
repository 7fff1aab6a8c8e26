"""``livechat worker persist`` follows the one copy of the log -> history rules
(``livechat.workers.apply``, also the embedded start-up replay's): it defines none of its own, and
its batch handler applies a batch as those rules say, on a real SQLite history.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livechat.backends import open_history
from livechat.protocol.encode import encode_ban, encode_comment, encode_delete, encode_purge
from livechat.workers import apply, persist
from livechat.workers.metrics import WorkerMetrics
from livechat.workers.retry import Retrier


@dataclass(frozen=True)
class Record:
    """A log record as the worker reads one (aiokafka's ConsumerRecord has these fields)."""

    key: bytes
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def test_persist_has_no_copy_of_the_rules() -> None:
    for name in ("plan_records", "PlanWriter", "apply_records"):
        assert getattr(persist, name) is getattr(apply, name), name
    source = inspect.getsource(persist)
    for definition in ("def plan_records", "class PlanWriter", "class Plan", "class Step", "def _delete_all"):
        assert definition not in source, definition


def comment(comment_id: int, user: str) -> bytes:
    return encode_comment(comment_id, user, user, f"text {comment_id}", 0, None, (), None)


async def test_the_worker_applies_a_batch_by_the_shared_rules(tmp_path: Path) -> None:
    history = await open_history(f"sqlite:///{tmp_path}/history.db")
    stream = b"s1"
    records = [
        Record(stream, 0, comment(101, "ann")),
        Record(stream, 1, comment(102, "bob")),
        Record(stream, 2, encode_delete(101)),
        Record(stream, 3, encode_purge("bob")),
        Record(stream, 4, comment(103, "bob")),  # after the purge: kept
        Record(stream, 5, encode_ban("eve", None)),  # nothing to store
    ]
    checkpoints: list[list[int]] = []

    async def checkpoint(done: Sequence[Any]) -> None:
        checkpoints.append([r.offset for r in done])

    metrics = WorkerMetrics("persist")
    worker = persist.PersistWorker(history, metrics, Retrier(asyncio.Event(), metrics))
    try:
        await worker.handle(records, checkpoint)
        stored = await history.page("s1", None, 10)
        assert [c.comment_id for c in stored] == [103]
        assert await history.watermark("s1") == 5
        # The batch is split after the purge, and the offsets through it committed first.
        assert checkpoints == [[0, 1, 2, 3]]
    finally:
        await history.aclose()
