"""LogFollower: live delivery of a ``CommentLog``'s records to an edge, stream by stream.

The log is each stream's sequencer: every edge appends its room events to it and follows the
streams it has open, so all edges apply one order per stream and a fan-out side channel (Redis) can
fail without losing an event. A follower reads what any edge appended, including this edge's own
records (``LogRecord.origin`` names the appender, so the handler can skip what it applied already,
or the follower drops them when opened with ``exclude_origin``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from livechat.ports.comment_log import LogRecord

# Called on the follower's event loop with one or more records (of one or several streams).
LogHandler = Callable[[Sequence[LogRecord]], None]


@dataclass(frozen=True, slots=True)
class FollowerStats:
    """What a follower has done and how far behind it is (a snapshot, cheap to take)."""

    # Streams followed now.
    streams: int
    # Records in the log positions the follower still has to scan (Kafka: high watermark minus
    # position, summed over the followed partitions; SQLite: the newest sequence number minus the
    # oldest position). An upper bound on the followed streams' records not yet delivered.
    behind: int
    # Records handed to the handler since the follower opened.
    delivered: int
    # Reads that failed and were retried from the last delivered offsets.
    retries: int
    # Times records a position still needed were already deleted by retention (delivery resumed
    # at the oldest retained record; the records in between are gone for every reader).
    truncated: int
    # True while delivery is paused (``pause``).
    paused: bool
    # The last read error, None once a read succeeded after it.
    last_error: str | None


class LogFollower(Protocol):
    """Delivers, per followed stream, every record after a given offset, in offset order.

    Guarantees every backend keeps:
    - **Per-stream order**: the records of one stream reach the handler in offset order. Records
      of different streams may interleave in any order.
    - **Exactly once per follow, no gaps**: between ``follow(stream, after)`` and
      ``unfollow(stream)``, each record of ``stream`` with offset > ``after`` is delivered once. A
      failed read (broker unreachable, timeout) is retried with backoff and resumes from the last
      offset delivered, so an outage delays records but never skips one. The one exception is
      retention: records deleted before they were read cannot be delivered (counted in
      ``stats().truncated``).
    - **Bounded memory**: the follower holds at most one fetch of records per followed partition
      (Kafka: ``max_partition_fetch_bytes``; SQLite: one page of ``FOLLOW_BATCH`` rows) and hands
      each to the handler before it reads more. ``pause()`` stops reading altogether while the
      edge is overloaded; ``resume()`` continues from the last delivered offsets.
    - **Latency**: a record appended while its stream is followed reaches the handler within
      tens of milliseconds when nothing is behind (Kafka: ``fetch_max_wait_ms`` is 5 ms; SQLite:
      woken by appends in this process, polled every 20 ms for others). The contract suite prints
      the p99 per backend.

    The handler runs on the event loop synchronously; it must not block. An exception it raises
    is logged and swallowed: the records it was given count as delivered.
    """

    def set_handler(self, handler: LogHandler) -> None:
        """Register the one handler. Raises RuntimeError if called twice."""

    async def follow(self, stream: str, after_offset: int) -> None:
        """Start delivering the records of ``stream`` with offset > ``after_offset`` (-1: every
        record still retained). Returns once the follow is in place. Raises RuntimeError when no
        handler is set or ``stream`` is already followed; BackendUnavailable when the backend is
        reconnecting (the follow stays registered and starts delivering once it is back).
        Followed from an offset of another ``CommentLog.epoch()``, a stream may skip or repeat:
        the caller resyncs across epochs."""

    async def unfollow(self, stream: str) -> None:
        """Stop delivering ``stream``; once this returns, the handler sees none of its records.
        Unfollowing a stream that is not followed does nothing."""

    def position(self, stream: str) -> int | None:
        """Offset of the last record of ``stream`` delivered (or the ``after_offset`` it was
        followed from when none was yet); None when ``stream`` is not followed."""
        ...

    def pause(self) -> None:
        """Stop reading (memory stays at what is already fetched); idempotent."""

    def resume(self) -> None:
        """Read again from the last delivered offsets; idempotent."""

    def stats(self) -> FollowerStats:
        """Progress and lag (see ``FollowerStats``)."""
        ...

    async def aclose(self) -> None:
        """Stop delivering and release the connection. Idempotent."""
