"""CommentLog: the durable, ordered record of what happened in each stream.

Shaped after a Kafka topic partitioned by stream id with an idempotent producer (acks=all): records of
one stream share one partition, so they keep one order, and their offsets increase. Offsets are NOT
dense (other streams on the same partition take numbers in between), so readers only rely on
"strictly increasing per stream".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record in a stream's log."""

    stream: str
    # Position in the stream: strictly increasing per stream, not dense.
    offset: int
    payload: bytes
    # Idempotency key given at append (the author's client message id), if any.
    client_msg_id: str | None
    # Wall-clock seconds when the log accepted the record.
    appended_at: float
    # Id of the edge that appended it (``None`` when the appender gave none): a follower's handler
    # skips the records its own edge already applied.
    origin: str | None = None
    # W3C ``traceparent`` of the post that wrote it, when traced (``livechat.tracing``); backends
    # that cannot carry it give None.
    trace: bytes | None = None


@dataclass(frozen=True, slots=True)
class LogAppend:
    """Result of an append: where the record lives and whether it was already there."""

    offset: int
    # True when (stream, client_msg_id) was appended earlier within the window; ``offset`` and
    # ``payload`` are then the ORIGINAL record's, and nothing new was written.
    duplicate: bool
    payload: bytes


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One record to append (see ``CommentLog.append_many``)."""

    stream: str
    payload: bytes
    client_msg_id: str | None = None
    # The appending edge's id, stored with the record (``LogRecord.origin``).
    origin: str | None = None
    # Trace context to carry with the record (``LogRecord.trace``), when traced.
    trace: bytes | None = None


class CommentLog(Protocol):
    """Durable append-only log per stream.

    Guarantees every backend keeps:
    - **Durability**: once ``append`` returns, the record survives a process crash (SQLite: WAL
      committed with synchronous=NORMAL, so an OS crash or power cut may lose the last commits;
      Kafka: acks=all). A failed append raises and wrote nothing.
    - **Ordering**: records of one stream are read back in append order, with strictly increasing
      offsets. Concurrent appends from one process to one stream take offsets in call order.
    - **Idempotency**: (stream, client_msg_id) is appended at most once while the first append is
      younger than ``dedupe_window_s``; a repeat returns the original offset and payload with
      ``duplicate=True``. Records without a client_msg_id are never deduplicated.
    - **Epoch**: ``epoch()`` names the log's lineage. It changes only when the log's offsets restart
      (data wiped, a new database, the topic recreated); a reader holding an offset from another
      epoch must resync.
    - **Repeats after a failure**: an append that raised may still have landed (Kafka: the broker
      stored a batch whose acknowledgement was lost). Its retry then adds a second record with the
      same (stream, client_msg_id); readers drop repeats of a (stream, client_msg_id) they applied.
      Nothing that was acknowledged is ever written twice.
    """

    @property
    def dedupe_window_s(self) -> float:
        """How long (seconds) a client_msg_id is remembered for idempotent appends."""
        ...

    async def epoch(self) -> str:
        """Identity of this log's offset lineage (stable across restarts of the same data)."""
        ...

    async def append(
        self, stream: str, payload: bytes, client_msg_id: str | None = None, origin: str | None = None
    ) -> LogAppend:
        """Append one record durably; idempotent on (stream, client_msg_id) within the window."""
        ...

    async def append_many(self, entries: Sequence[LogEntry]) -> list[LogAppend]:
        """Append several records in one durable write (all or nothing), results in input order.

        Same per-entry rules as ``append``; a client_msg_id repeated inside the batch is appended
        once and reported as a duplicate for the later entries.
        """
        ...

    async def read(self, stream: str, after_offset: int, limit: int) -> list[LogRecord]:
        """Up to ``limit`` records of ``stream`` with offset > ``after_offset``, oldest first.

        ``after_offset=-1`` reads from the beginning still retained. Sees every append that returned
        before this call started.
        """
        ...

    async def last_offset(self, stream: str) -> int:
        """Offset of the newest record of ``stream``, or -1 when it has none.

        May scan (Kafka reads the stream's partition backwards until it meets a record of
        ``stream``); to start reading "from now", use ``end_offset``.
        """
        ...

    async def end_offset(self, stream: str) -> int:
        """A position at or after the newest record of ``stream``, without a scan: every record
        appended after this call returns has a larger offset, so ``read(stream, end_offset, …)``
        and a follower started there see exactly the records appended later. -1 for an empty log.
        """
        ...

    async def aclose(self) -> None:
        """Finish pending writes and release the backing store. Idempotent."""
