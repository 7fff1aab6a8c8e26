"""History follows the comment log: at start, replay what a crash left out.

An embedded edge acks a comment once it is in the SQLite log, then writes history and advances
history's watermark (the log offset up to which history holds the stream's comments). A kill -9
between the two leaves acked comments in the log only; before the edge accepts connections, this
copies every record above each stream's watermark into history, with the same code the cluster's
``livechat worker persist`` runs (``livechat.workers.apply.apply_records``: idempotent puts,
deletes win), so an ack always means "in history after a restart" too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from livechat.backends.sqlite_history import SqliteHistoryStore
from livechat.backends.sqlite_log import SqliteCommentLog
from livechat.ports.comment_log import LogRecord
from livechat.ports.history import HistoryStore
from livechat.workers.apply import apply_records

log = logging.getLogger(__name__)

#: Records read and applied per round.
PAGE: Final = 2_000


@dataclass(frozen=True, slots=True)
class _Record:
    """A LogRecord as the persist worker reads a Kafka record."""

    key: bytes
    offset: int
    value: bytes


def _as_kafka(record: LogRecord) -> _Record:
    return _Record(record.stream.encode(), record.offset, record.payload)


async def replay_into_history(comment_log: SqliteCommentLog, history: HistoryStore) -> int:
    """Apply every log record above its stream's history watermark; returns how many."""
    applied = 0
    heads = await comment_log.stream_heads()
    marks = await history.watermarks() if isinstance(history, SqliteHistoryStore) else {}
    for stream, head in heads.items():
        after = marks[stream] if stream in marks else await history.watermark(stream)
        if head <= after:
            continue
        while True:
            records = await comment_log.read(stream, after, PAGE)
            if records:
                await apply_records(history, [_as_kafka(r) for r in records])
                applied += len(records)
                after = records[-1].offset
            if len(records) < PAGE:
                break
    if applied:
        log.info("history caught up with the comment log: %d records replayed", applied)
    return applied
