"""The SQLite runner shared by the embedded CommentLog, HistoryStore and MetaStore.

How the event loop stays unblocked: each database file gets ONE worker thread owning ONE
``sqlite3`` connection. Coroutines hand it jobs (plain functions of the connection) through a queue
and await a future. The worker takes every job waiting (up to ``MAX_BATCH``) and runs them in one
``BEGIN IMMEDIATE … COMMIT``, each write inside its own SAVEPOINT so one failing job rolls back
alone: a group commit, so 500 concurrent appends cost one WAL commit (one fsync with
synchronous=FULL, none with NORMAL). Futures are resolved after the COMMIT, in one
``call_soon_threadsafe`` per batch and loop. Reads run in the same thread, so they see every write
submitted before them (read-your-writes), and the sqlite3 module releases the GIL while SQLite works.

Durability: WAL with ``synchronous=NORMAL`` (the default) survives a process crash; an OS crash or
power cut may lose the last commits. ``synchronous=full`` in the URL closes that gap at one fsync per
batch. One process per database file is the supported setup (others may read it); writers from
several processes would serialise on ``busy_timeout``.

URLs: ``sqlite:///abs/path.db``, ``sqlite://relative/path.db``, ``sqlite://:memory:`` (private to
this process); query ``?synchronous=normal|full``. Components opened on the same URL share one
database (and one worker); it closes when the last of them closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs

from livechat.ports.errors import BackendError, ClosedError, ConfigurationError

log = logging.getLogger("livechat.backends.sqlite")

T = TypeVar("T")
Connection = sqlite3.Connection

# Jobs per transaction: bounds how long one COMMIT holds results back.
MAX_BATCH = 512
# Rows per multi-row statement (``chunks``): 4 parameters a row stays far below SQLite's limit of
# 32 766, and one statement per chunk instead of one per row saves the worker a GIL hand-off a row.
ROWS_PER_STATEMENT = 256
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}


@dataclass(frozen=True, slots=True)
class SqliteUrl:
    """A parsed ``sqlite://`` URL. ``path`` is ``:memory:`` for an in-memory database."""

    path: str
    synchronous: str

    @classmethod
    def parse(cls, url: str) -> SqliteUrl:
        if not url.startswith("sqlite://"):
            raise ConfigurationError(f"not a sqlite:// URL: {url!r}")
        rest, _, query = url[len("sqlite://") :].partition("?")
        if rest in (":memory:", "/:memory:"):
            path = ":memory:"
        elif rest:
            path = os.path.abspath(rest)
        else:
            raise ConfigurationError(f"sqlite URL needs a path: {url!r}")
        options = parse_qs(query, strict_parsing=bool(query))
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise ConfigurationError(f"unknown sqlite URL option(s) {sorted(unknown)} in {url!r}")
        sync = options.get("synchronous", ["normal"])[-1].lower()
        if sync not in _SYNCHRONOUS:
            raise ConfigurationError(f"synchronous must be normal or full, got {sync!r}")
        return cls(path=path, synchronous=sync)


class _Job(Generic[T]):
    __slots__ = ("fn", "future", "loop", "write")

    def __init__(
        self,
        fn: Callable[[Connection], T],
        write: bool,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[T],
    ) -> None:
        self.fn = fn
        self.write = write
        self.loop = loop
        self.future = future


_STOP = object()


def _resolve(outcomes: Sequence[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in outcomes:
        if future.done():  # the caller was cancelled; the job ran (a cancelled write may commit)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class SqliteDatabase:
    """One SQLite file (or in-memory database) and the worker thread that owns its connection."""

    def __init__(self, url: SqliteUrl) -> None:
        self.url = url
        self._queue: queue.SimpleQueue[_Job[Any] | object] = queue.SimpleQueue()
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        self._closed = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"livechat-sqlite:{url.path}", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            raise BackendError(
                f"cannot open sqlite database {url.path}: {self._open_error}"
            ) from self._open_error

    # -- coroutine side -------------------------------------------------------------------------
    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in a write transaction; returns once it has committed."""
        return await self._submit(fn, True)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` after every job submitted before it."""
        return await self._submit(fn, False)

    async def _submit(self, fn: Callable[[Connection], T], write: bool) -> T:
        if self._closed:
            raise ClosedError("sqlite database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, write, loop, future))
        return await future

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._stopped.wait)

    # -- worker thread --------------------------------------------------------------------------
    def _connect(self) -> Connection:
        path = self.url.path
        if path != ":memory:":
            os.makedirs(os.path.dirname(path), exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=512)
        if path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise BackendError(f"sqlite refused WAL mode for {path} (got {mode})")
        conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self.url.synchronous]}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA temp_store=MEMORY")
        # 32 MiB page cache (negative = KiB).
        conn.execute("PRAGMA cache_size=-32768")
        return conn

    def _work(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._open_error = exc
            self._opened.set()
            self._stopped.set()
            return
        self._opened.set()
        try:
            stop = False
            while not stop:
                batch: list[_Job[Any]] = []
                item = self._queue.get()
                while True:
                    if item is _STOP:
                        stop = True
                        break
                    assert isinstance(item, _Job)
                    batch.append(item)
                    if len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._run_batch(conn, batch)
            if conn.in_transaction:
                conn.rollback()
            conn.close()
        finally:
            self._stopped.set()

    def _run_batch(self, conn: Connection, batch: list[_Job[Any]]) -> None:
        outcomes: list[tuple[_Job[Any], Any, BaseException | None]] = []
        writes = any(job.write for job in batch)
        try:
            if writes:
                conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if job.write:
                    conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                    if isinstance(result, sqlite3.Cursor):
                        # Freed on the loop thread, it would reset its statement while this
                        # worker uses the connection ("bad parameter or other API misuse").
                        raise TypeError("a sqlite job must not return a cursor; fetch its rows")
                except Exception as exc:
                    if job.write:
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                    outcomes.append((job, None, _wrap(exc)))
                    continue
                if job.write:
                    conn.execute("RELEASE job")
                outcomes.append((job, result, None))
            if writes:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("sqlite batch of %d jobs failed: %s", len(batch), exc)
            if conn.in_transaction:
                conn.rollback()
            failure = _wrap(exc)
            outcomes = [(job, None, failure) for job in batch]
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        ] = {}
        for job, result, error in outcomes:
            by_loop.setdefault(job.loop, []).append((job.future, result, error))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:
                log.warning("event loop closed before %d sqlite results could be delivered", len(items))


def _wrap(exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        wrapped = BackendError(f"sqlite: {exc}")
        wrapped.__cause__ = exc
        return wrapped
    return exc


# -- one database per URL per process ----------------------------------------------------------

_databases: dict[str, tuple[SqliteDatabase, int]] = {}
_databases_lock = threading.Lock()


def _key(url: SqliteUrl, raw: str) -> str:
    # Each sqlite://:memory: URL string is its own database; files are keyed by absolute path.
    return f"memory:{raw}" if url.path == ":memory:" else url.path


def acquire_database(raw_url: str) -> SqliteDatabase:
    """The shared database for ``raw_url``, opened on first use; pair with ``release_database``."""
    url = SqliteUrl.parse(raw_url)
    key = _key(url, raw_url)
    with _databases_lock:
        entry = _databases.get(key)
        if entry is not None:
            if entry[0].url.synchronous != url.synchronous:
                raise ConfigurationError(
                    f"{url.path} is already open with synchronous={entry[0].url.synchronous}"
                )
            _databases[key] = (entry[0], entry[1] + 1)
            return entry[0]
        db = SqliteDatabase(url)
        _databases[key] = (db, 1)
        return db


async def release_database(db: SqliteDatabase, raw_url: str) -> None:
    key = _key(db.url, raw_url)
    with _databases_lock:
        entry = _databases.get(key)
        if entry is None or entry[0] is not db:
            return
        if entry[1] > 1:
            _databases[key] = (db, entry[1] - 1)
            return
        del _databases[key]
    await db.close()


def chunks(items: Sequence[T]) -> list[Sequence[T]]:
    """``items`` cut into runs of at most ``ROWS_PER_STATEMENT``, in order."""
    return [items[i : i + ROWS_PER_STATEMENT] for i in range(0, len(items), ROWS_PER_STATEMENT)]


def placeholders(rows: int, columns: int) -> str:
    """``(?, ?), (?, ?)`` for ``rows`` rows of ``columns`` values: a multi-row VALUES list."""
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)


def ensure_schema(conn: Connection, component: str, version: int, statements: Sequence[str]) -> None:
    """Create a component's tables (idempotent) and refuse a database written by a newer version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS lc_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    row = conn.execute("SELECT version FROM lc_schema WHERE component = ?", (component,)).fetchone()
    if row is not None and row[0] > version:
        raise ConfigurationError(f"{component} schema version {row[0]} is newer than this code's {version}")
    for statement in statements:
        conn.execute(statement)
    conn.execute("INSERT OR REPLACE INTO lc_schema (component, version) VALUES (?, ?)", (component, version))
