"""CommentLog on SQLite: one table, offsets from an AUTOINCREMENT key (never reused, even after
retention deletes), so offsets increase per stream but are not dense, as in a Kafka partition
shared by many streams. Writes go through the group-commit worker of ``livechat.backends.sqlite``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
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
from livechat.ports.comment_log import LogAppend, LogEntry, LogRecord
from livechat.ports.errors import ClosedError

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS log_records (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT NOT NULL,
        payload BLOB NOT NULL,
        client_msg_id TEXT,
        appended_at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS log_records_by_stream ON log_records (stream, seq)",
    """CREATE TABLE IF NOT EXISTS log_dedupe (
        stream TEXT NOT NULL,
        client_msg_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        appended_at REAL NOT NULL,
        PRIMARY KEY (stream, client_msg_id)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS log_dedupe_by_time ON log_dedupe (appended_at)",
    "CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# Expired dedupe keys and records past retention are deleted every this many appends.
MAINTENANCE_EVERY = 4096


class SqliteCommentLog:
    """Durable per-stream log in SQLite (see the module and ``CommentLog`` docstrings)."""

    def __init__(self, db: SqliteDatabase, url: str, dedupe_window_s: float, retention_s: float) -> None:
        self._db = db
        self._url = url
        self._window = dedupe_window_s
        self._retention = retention_s
        self._epoch = ""
        self._appends = 0
        self._closed = False

    @classmethod
    async def open(
        cls, url: str, dedupe_window_s: float = 600.0, retention_s: float = 7 * 86400.0
    ) -> SqliteCommentLog:
        if dedupe_window_s <= 0 or retention_s < dedupe_window_s:
            raise ValueError("need 0 < dedupe_window_s <= retention_s")
        db = acquire_database(url)
        log = cls(db, url, dedupe_window_s, retention_s)
        try:
            log._epoch = await db.write(log._init)
        except BaseException:
            await release_database(db, url)
            raise
        return log

    def _init(self, conn: Connection) -> str:
        ensure_schema(conn, "comment_log", 1, _SCHEMA)
        conn.execute("INSERT OR IGNORE INTO log_meta (key, value) VALUES ('epoch', ?)", (uuid.uuid4().hex,))
        epoch: str = conn.execute("SELECT value FROM log_meta WHERE key = 'epoch'").fetchone()[0]
        self._maintain(conn, time.time())
        return epoch

    @property
    def dedupe_window_s(self) -> float:
        return self._window

    async def epoch(self) -> str:
        self._check_open()
        return self._epoch

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("comment log is closed")

    async def append(self, stream: str, payload: bytes, client_msg_id: str | None = None) -> LogAppend:
        return (await self.append_many([LogEntry(stream, payload, client_msg_id)]))[0]

    async def append_many(self, entries: Sequence[LogEntry]) -> list[LogAppend]:
        self._check_open()
        if not entries:
            return []
        for entry in entries:
            if not isinstance(entry.payload, bytes):
                raise TypeError(f"payload must be bytes, got {type(entry.payload).__name__}")
        batch = list(entries)
        return await self._db.write(lambda conn: self._append(conn, batch))

    def _append(self, conn: Connection, entries: list[LogEntry]) -> list[LogAppend]:
        """Store ``entries`` with a few multi-row statements per ``ROWS_PER_STATEMENT`` entries (a
        per-entry statement costs a GIL hand-off each in the worker thread)."""
        now = time.time()
        keys = {(e.stream, e.client_msg_id) for e in entries if e.client_msg_id is not None}
        earlier = self._earlier_appends(conn, keys, now - self._window) if keys else {}
        # Per entry: an index into ``new`` (first appended here) or the result of an earlier append.
        plan: list[int | LogAppend] = []
        new: list[LogEntry] = []
        first_here: dict[tuple[str, str], int] = {}
        for entry in entries:
            cmid = entry.client_msg_id
            if cmid is not None:
                key = (entry.stream, cmid)
                found = earlier.get(key)
                if found is not None:
                    plan.append(found)
                    continue
                index = first_here.get(key)
                if index is not None:
                    plan.append(-1 - index)  # a repeat inside this batch
                    continue
                first_here[key] = len(new)
            plan.append(len(new))
            new.append(entry)
        offsets = self._insert_records(conn, new, now)
        if first_here:
            dedupe = [(new[i].stream, new[i].client_msg_id, offsets[i], now) for i in first_here.values()]
            for chunk in chunks(dedupe):
                conn.execute(
                    "INSERT OR REPLACE INTO log_dedupe (stream, client_msg_id, seq, appended_at) VALUES "
                    + placeholders(len(chunk), 4),
                    [value for row in chunk for value in row],
                )
        results = []
        for step in plan:
            if isinstance(step, LogAppend):
                results.append(step)
            elif step >= 0:
                results.append(LogAppend(offsets[step], False, new[step].payload))
            else:
                results.append(LogAppend(offsets[-1 - step], True, new[-1 - step].payload))
        before = self._appends
        self._appends += len(entries)
        if before // MAINTENANCE_EVERY != self._appends // MAINTENANCE_EVERY:
            self._maintain(conn, now)
        return results

    def _earlier_appends(
        self, conn: Connection, keys: set[tuple[str, str]], since: float
    ) -> dict[tuple[str, str], LogAppend]:
        """Appends of ``keys`` younger than the window, as duplicate results (one query per chunk)."""
        found: dict[tuple[str, str], LogAppend] = {}
        for chunk in chunks(list(keys)):
            # CROSS JOIN keeps the keys outermost, so each is one primary-key lookup.
            rows = conn.execute(
                "SELECT d.stream, d.client_msg_id, d.seq, r.payload FROM (VALUES "
                + placeholders(len(chunk), 2)
                + ") AS k CROSS JOIN log_dedupe AS d ON d.stream = k.column1 AND d.client_msg_id = k.column2"
                " LEFT JOIN log_records AS r ON r.seq = d.seq WHERE d.appended_at > ?",
                [*(value for key in chunk for value in key), since],
            ).fetchall()
            for stream, cmid, seq, payload in rows:
                # A record gone by retention keeps its dedupe key until the window ends.
                found[(stream, cmid)] = LogAppend(seq, True, payload if payload is not None else b"")
        return found

    def _insert_records(self, conn: Connection, entries: list[LogEntry], now: float) -> list[int]:
        """Insert ``entries`` in order; their offsets.

        AUTOINCREMENT gives each row one more than the largest seq the table ever held, and this
        worker holds the write lock (BEGIN IMMEDIATE), so the rows of one multi-row INSERT take
        consecutive seqs ending at ``lastrowid``.
        """
        offsets: list[int] = []
        for chunk in chunks(entries):
            before = conn.total_changes
            cur = conn.execute(
                "INSERT INTO log_records (stream, payload, client_msg_id, appended_at) VALUES "
                + placeholders(len(chunk), 4),
                [value for e in chunk for value in (e.stream, e.payload, e.client_msg_id, now)],
            )
            last = cur.lastrowid
            if last is None or conn.total_changes - before != len(chunk):
                raise RuntimeError("log_records insert did not report its rows")
            offsets.extend(range(last - len(chunk) + 1, last + 1))
        return offsets

    def _maintain(self, conn: Connection, now: float) -> None:
        conn.execute("DELETE FROM log_dedupe WHERE appended_at < ?", (now - self._window,))
        # Records are in seq order by time, so the first unexpired seq bounds what goes; the subquery
        # only walks the expired prefix.
        conn.execute(
            """DELETE FROM log_records WHERE seq < COALESCE(
                (SELECT seq FROM log_records WHERE appended_at >= ? ORDER BY seq LIMIT 1),
                (SELECT MAX(seq) + 1 FROM log_records))""",
            (now - self._retention,),
        )

    async def read(self, stream: str, after_offset: int, limit: int) -> list[LogRecord]:
        self._check_open()
        if limit <= 0:
            return []

        def query(conn: Connection) -> list[LogRecord]:
            rows = conn.execute(
                "SELECT seq, payload, client_msg_id, appended_at FROM log_records"
                " WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?",
                (stream, after_offset, limit),
            ).fetchall()
            return [LogRecord(stream, seq, payload, cmid, at) for seq, payload, cmid, at in rows]

        return await self._db.read(query)

    async def last_offset(self, stream: str) -> int:
        self._check_open()

        def query(conn: Connection) -> int:
            row = conn.execute("SELECT MAX(seq) FROM log_records WHERE stream = ?", (stream,)).fetchone()
            return -1 if row[0] is None else int(row[0])

        return await self._db.read(query)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await release_database(self._db, self._url)


if TYPE_CHECKING:
    from livechat.ports.comment_log import CommentLog

    def _check(b: SqliteCommentLog) -> CommentLog:
        return b
