"""HistoryStore on SQLite: comments clustered by (stream, comment_id) and a tombstone table that
both answers ``tombstones_since`` and blocks late ``put``s of deleted comments."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from livechat.backends.sqlite import (
    Connection,
    SqliteDatabase,
    acquire_database,
    chunks,
    ensure_schema,
    placeholders,
    release_database,
)
from livechat.ids import EPOCH_MS, first_id_at
from livechat.ports.errors import ClosedError
from livechat.ports.history import StoredComment, Tombstone

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS history (
        stream TEXT NOT NULL,
        comment_id INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (stream, comment_id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS history_by_user ON history (stream, user_id, comment_id)",
    """CREATE TABLE IF NOT EXISTS history_tombstones (
        stream TEXT NOT NULL,
        comment_id INTEGER NOT NULL,
        deleted_at REAL NOT NULL,
        PRIMARY KEY (stream, comment_id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS history_tombstones_by_time ON history_tombstones (stream, deleted_at)",
    """CREATE TABLE IF NOT EXISTS history_watermarks (
        stream TEXT PRIMARY KEY,
        log_offset INTEGER NOT NULL) WITHOUT ROWID""",
)

# Many rows per statement (see ``chunks``); a tombstoned comment is skipped, an existing one kept.
_PUT = """INSERT OR IGNORE INTO history (stream, comment_id, user_id, payload)
    SELECT v.column1, v.column2, v.column3, v.column4 FROM (VALUES {rows}) AS v WHERE NOT EXISTS
    (SELECT 1 FROM history_tombstones AS t WHERE t.stream = v.column1 AND t.comment_id = v.column2)"""

_SELECT = "SELECT stream, comment_id, user_id, payload FROM history"

# Expired comments and tombstones are purged at open and then at most this often (seconds), from
# inside a write that is happening anyway.
PURGE_INTERVAL_S = 60.0


def _rows(rows: list[tuple[str, int, str, bytes]]) -> list[StoredComment]:
    return [StoredComment(stream, cid, user, payload) for stream, cid, user, payload in rows]


class SqliteHistoryStore:
    """Durable comment history in SQLite (see the ``HistoryStore`` docstring)."""

    def __init__(self, db: SqliteDatabase, url: str, tombstone_ttl_s: float, retention_s: float) -> None:
        self._db = db
        self._url = url
        self._ttl = tombstone_ttl_s
        self._retention = retention_s
        # Streams that may hold comments (worker thread only): the retention purge visits each.
        self._streams: set[str] = set()
        self._last_purge = 0.0
        self._closed = False

    @classmethod
    async def open(
        cls, url: str, tombstone_ttl_s: float = 86400.0, retention_s: float = 30 * 86400.0
    ) -> SqliteHistoryStore:
        if tombstone_ttl_s <= 0 or retention_s <= 0:
            raise ValueError("tombstone_ttl_s and retention_s must be positive")
        db = acquire_database(url)
        store = cls(db, url, tombstone_ttl_s, retention_s)
        try:
            await db.write(store._init)
        except BaseException:
            await release_database(db, url)
            raise
        return store

    def _init(self, conn: Connection) -> None:
        ensure_schema(conn, "history", 2, _SCHEMA)
        # One full index walk at open; afterwards put_many keeps the set current.
        self._streams = {row[0] for row in conn.execute("SELECT DISTINCT stream FROM history")}
        self._purge(conn, time.time())

    def _maybe_purge(self, conn: Connection, now: float) -> None:
        if now - self._last_purge >= PURGE_INTERVAL_S:
            self._purge(conn, now)

    def _purge(self, conn: Connection, now: float) -> None:
        self._last_purge = now
        conn.execute("DELETE FROM history_tombstones WHERE deleted_at < ?", (now - self._ttl,))
        # Ids are time-ordered, so "older than retention" is "id below the first id of the cutoff".
        cutoff_id = first_id_at(max(EPOCH_MS, int((now - self._retention) * 1000)))
        for stream in list(self._streams):
            conn.execute("DELETE FROM history WHERE stream = ? AND comment_id < ?", (stream, cutoff_id))
            if conn.execute("SELECT 1 FROM history WHERE stream = ? LIMIT 1", (stream,)).fetchone() is None:
                self._streams.discard(stream)

    @property
    def retention_s(self) -> float:
        return self._retention

    @property
    def tombstone_ttl_s(self) -> float:
        return self._ttl

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("history store is closed")

    async def put(self, comment: StoredComment) -> None:
        await self.put_many((comment,))

    async def watermark(self, stream: str) -> int:
        self._check_open()

        def run(conn: Connection) -> int:
            row = conn.execute(
                "SELECT log_offset FROM history_watermarks WHERE stream = ?", (stream,)
            ).fetchone()
            return int(row[0]) if row is not None else -1

        return await self._db.read(run)

    async def watermarks(self) -> dict[str, int]:
        """Every stream's watermark in one read (SQLite only: the embedded start-up replay)."""
        self._check_open()

        def run(conn: Connection) -> dict[str, int]:
            rows = conn.execute("SELECT stream, log_offset FROM history_watermarks")
            return {stream: int(offset) for stream, offset in rows}

        return await self._db.read(run)

    async def set_watermarks(self, marks: Mapping[str, int]) -> None:
        self._check_open()
        items = list(marks.items())
        if not items:
            return

        def run(conn: Connection) -> None:
            conn.executemany(
                "INSERT INTO history_watermarks (stream, log_offset) VALUES (?, ?) ON CONFLICT (stream)"
                " DO UPDATE SET log_offset = max(log_offset, excluded.log_offset)",
                items,
            )

        await self._db.write(run)

    async def put_many(self, comments: Sequence[StoredComment]) -> None:
        self._check_open()
        if not comments:
            return
        for c in comments:
            if not isinstance(c.payload, bytes):
                raise TypeError(f"payload must be bytes, got {type(c.payload).__name__}")
        batch = list(comments)

        def run(conn: Connection) -> None:
            # Return nothing that holds a statement: a cursor freed on the loop thread would race
            # this worker on the shared connection.
            for chunk in chunks(batch):
                conn.execute(
                    _PUT.format(rows=placeholders(len(chunk), 4)),
                    [value for c in chunk for value in (c.stream, c.comment_id, c.user_id, c.payload)],
                )
            self._streams.update(c.stream for c in batch)
            self._maybe_purge(conn, time.time())

        await self._db.write(run)

    async def get(self, stream: str, comment_id: int) -> StoredComment | None:
        self._check_open()

        def query(conn: Connection) -> StoredComment | None:
            row = conn.execute(
                _SELECT + " WHERE stream = ? AND comment_id = ?",
                (stream, comment_id),
            ).fetchone()
            return None if row is None else StoredComment(*row)

        return await self._db.read(query)

    async def page(self, stream: str, before_id: int | None, limit: int) -> list[StoredComment]:
        self._check_open()
        if limit <= 0:
            return []
        if before_id is None:
            sql = _SELECT + " WHERE stream = ? ORDER BY comment_id DESC LIMIT ?"
            args: tuple[object, ...] = (stream, limit)
        else:
            sql = _SELECT + " WHERE stream = ? AND comment_id < ? ORDER BY comment_id DESC LIMIT ?"
            args = (stream, before_id, limit)
        return await self._db.read(lambda conn: _rows(conn.execute(sql, args).fetchall()))

    async def recent(self, stream: str, limit: int) -> list[StoredComment]:
        return await self.page(stream, None, limit)

    async def after(self, stream: str, after_id: int, limit: int) -> list[StoredComment]:
        self._check_open()
        if limit <= 0:
            return []
        sql = _SELECT + " WHERE stream = ? AND comment_id > ? ORDER BY comment_id LIMIT ?"
        return await self._db.read(
            lambda conn: _rows(conn.execute(sql, (stream, after_id, limit)).fetchall())
        )

    async def delete(self, stream: str, comment_id: int) -> bool:
        self._check_open()

        def run(conn: Connection) -> bool:
            now = time.time()
            conn.execute(
                "INSERT OR IGNORE INTO history_tombstones (stream, comment_id, deleted_at) VALUES (?, ?, ?)",
                (stream, comment_id, now),
            )
            deleted = conn.execute(
                "DELETE FROM history WHERE stream = ? AND comment_id = ?", (stream, comment_id)
            ).rowcount
            self._maybe_purge(conn, now)
            return deleted > 0

        return await self._db.write(run)

    async def delete_user(self, stream: str, user_id: str) -> list[int]:
        self._check_open()

        def run(conn: Connection) -> list[int]:
            now = time.time()
            ids = [
                row[0]
                for row in conn.execute(
                    "SELECT comment_id FROM history WHERE stream = ? AND user_id = ? ORDER BY comment_id",
                    (stream, user_id),
                )
            ]
            conn.executemany(
                "INSERT OR IGNORE INTO history_tombstones (stream, comment_id, deleted_at) VALUES (?, ?, ?)",
                [(stream, cid, now) for cid in ids],
            )
            conn.execute("DELETE FROM history WHERE stream = ? AND user_id = ?", (stream, user_id))
            self._maybe_purge(conn, now)
            return ids

        return await self._db.write(run)

    async def tombstones_since(self, stream: str, since: float, limit: int) -> list[Tombstone]:
        self._check_open()
        if limit <= 0:
            return []

        def query(conn: Connection) -> list[Tombstone]:
            rows = conn.execute(
                "SELECT comment_id, deleted_at FROM history_tombstones"
                " WHERE stream = ? AND deleted_at >= ? ORDER BY deleted_at, comment_id LIMIT ?",
                (stream, since, limit),
            ).fetchall()
            return [Tombstone(stream, cid, at) for cid, at in rows]

        return await self._db.read(query)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await release_database(self._db, self._url)


if TYPE_CHECKING:
    from livechat.ports.history import HistoryStore

    def _check(b: SqliteHistoryStore) -> HistoryStore:
        return b
