"""CommentLog on SQLite: one table, offsets from an AUTOINCREMENT key (never reused, even after
retention deletes), so offsets increase per stream but are not dense, as in a Kafka partition
shared by many streams. Writes go through the group-commit worker of ``livechat.backends.sqlite``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
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
from livechat.ports.log_follower import FollowerStats, LogHandler

log = logging.getLogger("livechat.backends.sqlite")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS log_records (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT NOT NULL,
        payload BLOB NOT NULL,
        client_msg_id TEXT,
        appended_at REAL NOT NULL,
        origin TEXT)""",
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

_SCHEMA_VERSION = 2  # 2: log_records.origin (added in place to a version-1 table)

# The follower: rows per read, and how often it looks for appends made outside this process.
FOLLOW_BATCH = 1024
FOLLOW_POLL_S = 0.02
FOLLOW_RETRY_S = 0.2

# Expired dedupe keys and records past retention are deleted every this many appends.
MAINTENANCE_EVERY = 4096


def _create_schema(conn: Connection) -> None:
    ensure_schema(conn, "comment_log", _SCHEMA_VERSION, _SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(log_records)")}
    if "origin" not in columns:  # a version-1 database: its records keep origin NULL
        conn.execute("ALTER TABLE log_records ADD COLUMN origin TEXT")


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
        _create_schema(conn)
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

    async def append(
        self, stream: str, payload: bytes, client_msg_id: str | None = None, origin: str | None = None
    ) -> LogAppend:
        return (await self.append_many([LogEntry(stream, payload, client_msg_id, origin)]))[0]

    async def append_many(self, entries: Sequence[LogEntry]) -> list[LogAppend]:
        self._check_open()
        if not entries:
            return []
        for entry in entries:
            if not isinstance(entry.payload, bytes):
                raise TypeError(f"payload must be bytes, got {type(entry.payload).__name__}")
        batch = list(entries)
        results = await self._db.write(lambda conn: self._append(conn, batch))
        _notify_appended(self._db)
        return results

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
                "INSERT INTO log_records (stream, payload, client_msg_id, appended_at, origin) VALUES "
                + placeholders(len(chunk), 5),
                [value for e in chunk for value in (e.stream, e.payload, e.client_msg_id, now, e.origin)],
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

    async def streams_after(self, offset: int) -> list[str]:
        """Streams with records above ``offset`` (any stream's): where a replay has work."""
        self._check_open()

        def run(conn: Connection) -> list[str]:
            rows = conn.execute("SELECT DISTINCT stream FROM log_records WHERE seq > ?", (offset,))
            return [row[0] for row in rows]

        return await self._db.read(run)

    async def stream_heads(self) -> dict[str, int]:
        """Every stream in the log and the offset of its newest record (SQLite only: a replay
        compares them with history's watermarks and reads only the streams behind).

        One index seek per stream (a skip scan of ``log_records_by_stream``), not a walk of every
        record: 50 000 streams in a 1 M-record log take ~0.1 s.
        """
        self._check_open()
        return await self._db.read(_stream_heads)

    async def read(self, stream: str, after_offset: int, limit: int) -> list[LogRecord]:
        self._check_open()
        if limit <= 0:
            return []

        def query(conn: Connection) -> list[LogRecord]:
            rows = conn.execute(
                "SELECT seq, payload, client_msg_id, appended_at, origin FROM log_records"
                " WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?",
                (stream, after_offset, limit),
            ).fetchall()
            return [LogRecord(stream, *row) for row in rows]

        return await self._db.read(query)

    async def last_offset(self, stream: str) -> int:
        self._check_open()

        def query(conn: Connection) -> int:
            row = conn.execute("SELECT MAX(seq) FROM log_records WHERE stream = ?", (stream,)).fetchone()
            return -1 if row[0] is None else int(row[0])

        return await self._db.read(query)

    async def end_offset(self, stream: str) -> int:
        self._check_open()
        return await self._db.read(_newest_seq)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await release_database(self._db, self._url)


class SqliteLogFollower:
    """LogFollower on the embedded log: polls ``read_streams`` (one query for all followed streams),
    woken at once by appends made in this process on the same database and every
    ``FOLLOW_POLL_S`` for appends made elsewhere (another process on the same file).

    Offsets are the log's sequence numbers, so a stream's records come in offset order; a stream
    followed again (or from an older offset) is read from its own position, and a read is applied
    only if no follow change happened to that stream while it ran, so nothing repeats or is
    skipped. A failed read is retried after ``FOLLOW_RETRY_S``.
    """

    def __init__(self, db: SqliteDatabase, url: str, exclude_origin: str | None) -> None:
        self._db = db
        self._url = url
        self._exclude = exclude_origin
        self._handler: LogHandler | None = None
        # stream -> [position, generation]; the generation changes with every follow.
        self._follows: dict[str, list[int]] = {}
        self._generation = 0
        self._newest = -1
        self._delivered = 0
        self._retries = 0
        self._last_error: str | None = None
        self._paused = False
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        _watchers.setdefault(db, set()).add(self._wake)

    @classmethod
    async def open(cls, url: str, *, exclude_origin: str | None = None) -> SqliteLogFollower:
        db = acquire_database(url)
        try:
            await db.write(_create_schema)
        except BaseException:
            await release_database(db, url)
            raise
        follower = cls(db, url, exclude_origin)
        follower._task = follower._loop.create_task(follower._run())
        return follower

    def _wake(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wakeup.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def set_handler(self, handler: LogHandler) -> None:
        if self._handler is not None:
            raise RuntimeError("log follower handler already set")
        self._handler = handler

    async def follow(self, stream: str, after_offset: int) -> None:
        if self._closed:
            raise ClosedError("log follower is closed")
        if self._handler is None:
            raise RuntimeError("set a handler before following")
        if stream in self._follows:
            raise RuntimeError(f"stream {stream!r} is already followed")
        self._generation += 1
        self._follows[stream] = [max(after_offset, -1), self._generation]
        self._wakeup.set()

    async def unfollow(self, stream: str) -> None:
        self._follows.pop(stream, None)

    def position(self, stream: str) -> int | None:
        follow = self._follows.get(stream)
        return None if follow is None else follow[0]

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._wakeup.set()

    def stats(self) -> FollowerStats:
        oldest = min((f[0] for f in self._follows.values()), default=self._newest)
        return FollowerStats(
            streams=len(self._follows),
            behind=max(0, self._newest - oldest),
            delivered=self._delivered,
            retries=self._retries,
            truncated=0,
            paused=self._paused,
            last_error=self._last_error,
        )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        watchers = _watchers.get(self._db)
        if watchers is not None:
            watchers.discard(self._wake)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await release_database(self._db, self._url)

    async def _run(self) -> None:
        while True:
            if self._paused or not self._follows:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._wakeup.clear()
            snapshot = {stream: (f[0], f[1]) for stream, f in self._follows.items()}
            positions = {stream: position for stream, (position, _) in snapshot.items()}
            try:
                records, self._newest = await self._db.read(
                    functools.partial(_read_streams, positions=positions, limit=FOLLOW_BATCH)
                )
            except Exception as exc:  # e.g. the database is busy or gone: try again
                self._retries += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.warning("log follower read failed (retry in %.2f s): %s", FOLLOW_RETRY_S, exc)
                await asyncio.sleep(FOLLOW_RETRY_S)
                continue
            self._last_error = None
            self._deliver(records, snapshot)
            if len(records) < FOLLOW_BATCH:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FOLLOW_POLL_S):
                        await self._wakeup.wait()

    def _deliver(self, records: list[LogRecord], snapshot: dict[str, tuple[int, int]]) -> None:
        out: list[LogRecord] = []
        for record in records:
            follow = self._follows.get(record.stream)
            # Skip a stream unfollowed or followed again while the read ran.
            if follow is None or follow[1] != snapshot[record.stream][1] or record.offset <= follow[0]:
                continue
            follow[0] = record.offset
            if self._exclude is None or record.origin != self._exclude:
                out.append(record)
        if out and self._handler is not None:
            self._delivered += len(out)
            try:
                self._handler(out)
            except Exception:
                log.exception("log follower handler failed on %d records", len(out))


def _by_offset(record: LogRecord) -> int:
    return record.offset


_ONE_STREAM = (
    "SELECT * FROM (SELECT stream, seq, payload, client_msg_id, appended_at, origin FROM log_records"
    " WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?)"
)


def _read_streams(conn: Connection, positions: dict[str, int], limit: int) -> tuple[list[LogRecord], int]:
    """Up to ``limit`` records of the streams in ``positions``, each above its stream's position,
    in offset order; and the newest sequence number (for lag). Per stream an index seek bounded
    by ``limit`` (a stream far behind costs one page per poll, not its backlog), merged in offset
    order: one statement per ``ROWS_PER_STATEMENT`` streams."""
    found: list[LogRecord] = []
    streams = list(positions)
    for chunk in chunks(streams):
        rows = conn.execute(
            " UNION ALL ".join([_ONE_STREAM] * len(chunk)),
            [value for stream in chunk for value in (stream, positions[stream], limit)],
        ).fetchall()
        found.extend(LogRecord(*row) for row in rows)
    found.sort(key=_by_offset)
    return found[:limit], _newest_seq(conn)


_HEADS = """WITH RECURSIVE streams(name) AS (
        SELECT MIN(stream) FROM log_records
        UNION ALL
        SELECT (SELECT MIN(stream) FROM log_records WHERE stream > name) FROM streams WHERE name IS NOT NULL)
    SELECT name, (SELECT MAX(seq) FROM log_records WHERE stream = name) FROM streams WHERE name IS NOT NULL"""


def _stream_heads(conn: Connection) -> dict[str, int]:
    return {name: int(head) for name, head in conn.execute(_HEADS)}


def _newest_seq(conn: Connection) -> int:
    """The largest seq the table ever held (AUTOINCREMENT's counter), or -1: every later record's
    offset is larger."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'log_records'").fetchone()
    return -1 if row is None else int(row[0])


# Wake-ups for the followers of each database in this process (``SqliteLogFollower``).
_watchers: weakref.WeakKeyDictionary[SqliteDatabase, set[Callable[[], None]]] = weakref.WeakKeyDictionary()


def _notify_appended(db: SqliteDatabase) -> None:
    for wake in list(_watchers.get(db, ())):
        wake()


if TYPE_CHECKING:
    from livechat.ports.comment_log import CommentLog
    from livechat.ports.log_follower import LogFollower

    def _check(b: SqliteCommentLog) -> CommentLog:
        return b

    def _check_follower(b: SqliteLogFollower) -> LogFollower:
        return b
