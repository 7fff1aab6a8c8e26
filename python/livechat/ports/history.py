"""HistoryStore: comments a viewer can page back through, and the source of join/recovery snapshots.

Shaped after Cassandra: partition per stream (a time bucket in the cluster backend), clustering by
comment id descending, deletes as tombstones. Comment ids are 64-bit and time-ordered
(``livechat.ids``), so "by id" is "by time".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredComment:
    """One comment as kept in history. ``payload`` is the encoded event (opaque to the store)."""

    stream: str
    comment_id: int
    user_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted comment: readers that already hold it must drop it."""

    stream: str
    comment_id: int
    # Wall-clock seconds of the delete.
    deleted_at: float


class HistoryStore(Protocol):
    """Per-stream comment history with deletes.

    Guarantees every backend keeps:
    - **Durability**: once a write returns, it survives a restart (SQLite: committed to WAL).
    - **Order**: reads are by comment id; ``page`` and ``recent`` return newest first, ``after``
      returns oldest first. Comments of one stream only.
    - **Idempotency**: ``put`` of an existing (stream, comment_id) keeps the first version.
    - **Deletes win**: a deleted comment never comes back from any read, even if a ``put`` of it
      arrives after the delete (late writer, retried batch); its tombstone is kept for
      ``tombstone_ttl_s`` so recovery can tell clients to drop it.
    - **Retention**: comments older than ``retention_s`` (by the time in their id) go away on their
      own (SQLite: a purge at most once a minute; Cassandra: a TTL).
    """

    @property
    def retention_s(self) -> float:
        """Comments whose id is older than this (seconds) may be dropped; reads never rely on them."""
        ...

    @property
    def tombstone_ttl_s(self) -> float:
        """How long tombstones stay readable through ``tombstones_since``."""
        ...

    async def put(self, comment: StoredComment) -> None:
        """Store one comment (no-op if present or deleted)."""

    async def put_many(self, comments: Sequence[StoredComment]) -> None:
        """Store several comments in one write (all or nothing); same rules as ``put``."""

    async def get(self, stream: str, comment_id: int) -> StoredComment | None:
        """The comment, or None when it never existed or was deleted."""
        ...

    async def page(self, stream: str, before_id: int | None, limit: int) -> list[StoredComment]:
        """Up to ``limit`` comments with id < ``before_id`` (None: the newest), newest first."""
        ...

    async def recent(self, stream: str, limit: int) -> list[StoredComment]:
        """The newest ``limit`` comments, newest first (snapshot source): ``page(stream, None, limit)``."""
        ...

    async def after(self, stream: str, after_id: int, limit: int) -> list[StoredComment]:
        """Up to ``limit`` comments with id > ``after_id``, oldest first (reconnect recovery).

        A full page (len == limit) means there may be more: the caller decides between paging on
        and sending a snapshot with a gap signal.
        """
        ...

    async def delete(self, stream: str, comment_id: int) -> bool:
        """Delete one comment, leaving a tombstone. True when it existed (and was not deleted).

        The tombstone is written even when the comment has not arrived yet, so a late ``put`` of it
        is dropped.
        """
        ...

    async def delete_user(self, stream: str, user_id: str) -> list[int]:
        """Delete every comment ``user_id`` has in ``stream`` (a purge); returns their ids, ascending.

        Atomic: a concurrent reader sees all of them or none of them.
        """
        ...

    async def tombstones_since(self, stream: str, since: float, limit: int) -> list[Tombstone]:
        """Deletes in ``stream`` at or after ``since`` (wall-clock seconds), oldest first.

        Recovery sends these to a client that was away since ``since``.
        """
        ...

    async def watermark(self, stream: str) -> int:
        """The comment-log offset up to which ``stream``'s log records are applied here (-1: none).

        Written by whoever copies the log into history (``livechat worker persist``) after the
        records' writes returned; an edge that opens a stream loads history, then follows the log
        from this offset, so nothing between "persisted" and "live" is missed.
        """
        ...

    async def set_watermarks(self, marks: Mapping[str, int]) -> None:
        """Record stream -> offset watermarks (durable; a lower value never replaces a higher one)."""

    async def aclose(self) -> None:
        """Finish pending writes and release the backing store. Idempotent."""
