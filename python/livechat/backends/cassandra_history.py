"""HistoryStore on Cassandra (cassandra-driver, asyncio-bridged in ``cassandra_session``).

Layout (``cassandra_schema``): ``comments`` partitioned by ``(stream_id, bucket)`` where the bucket is
the comment id's time rounded down to ``bucket_s``, clustered by ``comment_id DESC``; a per-stream list
of buckets so reads page across partitions; a per-user index (``comments_by_user``, same partition
key as ``comments``) for ``delete_user``; deletes by time (``tombstones``) and by id
(``deleted_ids``, same partition key again), both kept ``tombstone_ttl_s``.

Reads: ``page``/``recent``/``after`` list the stream's buckets and read them in order until the page
is full; the read of the likeliest bucket (of ``before_id``/``after_id``, or of now) is sent with the
listing, so a page that one bucket fills costs one round trip.

How each guarantee of the port is kept:
- **Idempotency, first version wins, without a read or a Paxos round**: a put is written with the
  write timestamp ``PUT_TIMESTAMP_BASE - now_µs``, which *decreases* with time. Cassandra keeps the
  cell with the highest timestamp, so the first put of a comment id beats every later one
  (``INSERT … IF NOT EXISTS`` would cost four round trips of Paxos per row). "First" is by the
  writer's clock; the copies the persist worker writes after a restart are the same Kafka record.
  The price: write timestamps are not time, so ``writetime()`` is meaningless and
  TimeWindowCompactionStrategy (which groups by write time) must not be used on these tables, and
  the 5.0 ``maximum_timestamp_*`` guardrails must stay off.
- **Deletes win**: a delete removes the row at ``DELETE_TIMESTAMP``, above every put's timestamp,
  so a put that arrives after it (a late writer, a retried batch) is shadowed while the row
  tombstone lives (``gc_grace_seconds``, see ``GC_GRACE_S``). A put of a comment older than that is
  checked against ``deleted_ids`` first, so deletes win for ``tombstone_ttl_s`` as in SQLite.
- **Retention**: every write carries ``TTL = retention_s - age of the comment id``; a comment already
  past retention is not written.
- **Watermarks** (``set_watermarks``): the offset is written as the cell's write timestamp too, so a
  lower offset never replaces a higher one, concurrent writers included, without a read.
- **Durability**: a write returns once ``consistency`` replicas have it in their commit log. With
  ``commitlog_sync: periodic`` (the default, and the test server's) that log is fsynced every
  ``commitlog_sync_period``: a restart of Cassandra keeps the write, a power loss of every replica
  within that period may not (``commitlog_sync: group`` or RF >= 3 closes that).

Where Cassandra gives less than SQLite (stated in the port's terms):
- ``put_many`` is not all-or-nothing across partitions: each comment goes with its index row in a
  single-partition unlogged batch (up to ``BATCH_ROWS`` comments: atomic and isolated inside the
  partition), batches run concurrently, and a failure raises after some of them may have been
  stored. A retry (every put is idempotent) completes it; the persist worker commits its Kafka
  offset only after ``put_many`` returns.
- ``delete_user`` is atomic per bucket partition (one batch each), not across buckets: a reader
  paging across a bucket boundary while a purge runs can see part of it. Tombstones are written
  before the rows go, so a purge interrupted half-way is finished by running it again. It reads
  the index of every bucket the stream has (``retention_s / bucket_s`` at most, ``concurrency`` at
  a time): a purge is rare, a put is not.
- Two concurrent ``delete`` calls of one comment can both return True (and both leave a tombstone);
  one at a time, the second returns False.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, cast

from livechat.backends.cassandra_schema import SCHEMA_VERSION, CassandraUrl, keyspace_ddl, table_ddl
from livechat.backends.cassandra_session import (
    CqlSession,
    Params,
    Row,
    Statement,
    consistency_level,
    discard,
)
from livechat.ids import first_id_at, id_timestamp_ms
from livechat.ports.errors import ClosedError, ConfigurationError
from livechat.ports.history import StoredComment, Tombstone

# Write timestamps (µs): deletes use the constant, puts count down from just below it (see above).
DELETE_TIMESTAMP = 1 << 62
PUT_TIMESTAMP_BASE = DELETE_TIMESTAMP - 1
# Cassandra refuses TTLs above 20 years.
MAX_TTL_S = 630_720_000
# Comments per single-partition batch (each with its index row): one mutation of ~25 KB at 200 B a
# comment; bigger batches only serialise work that concurrent batches spread over the node's threads.
BATCH_ROWS = 100
# Deletes per single-partition batch: a purge is atomic per bucket up to this many of the user's
# comments in one bucket (~300 B of mutation each: ~3 MB, under the 16 MB a mutation may have with
# 32 MB commit log segments).
DELETE_BATCH_ROWS = 10_000
# Values per ``IN (…)`` read.
IN_CHUNK = 100
# Bucket-list rows read per round trip while paging back or forward.
BUCKETS_PER_READ = 16
# A put of a comment younger than gc_grace minus this skips the deleted_ids check: any delete of it
# is younger still, so its row tombstone cannot have been purged. The margin covers clock skew
# between the edge that issued the id and the Cassandra nodes.
LATE_PUT_MARGIN_S = 300
# (stream, bucket) pairs this process knows are in stream_buckets, so puts do not rewrite them.
KNOWN_BUCKETS_MAX = 65_536
# Above every comment id (ids are non-negative 63-bit), below bigint's maximum.
MAX_ID = (1 << 63) - 1
MAX_BUCKET = (1 << 63) - 1


def _ttl(expires_at: float, now: float) -> int:
    return min(MAX_TTL_S, math.ceil(expires_at - now))


class _Queries:
    """Every statement of the store, prepared once at open."""

    def __init__(self, ks: str) -> None:
        cols = "comment_id, user_id, payload"
        self.text: dict[str, str] = {
            "insert": f"INSERT INTO {ks}.comments (stream_id, bucket, comment_id, user_id, payload)"
            " VALUES (?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?",
            "insert_by_user": f"INSERT INTO {ks}.comments_by_user (stream_id, bucket, user_id, comment_id)"
            " VALUES (?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?",
            "insert_bucket": f"INSERT INTO {ks}.stream_buckets (stream_id, bucket) VALUES (?, ?) USING TTL ?",
            "get": f"SELECT {cols} FROM {ks}.comments WHERE stream_id = ? AND bucket = ? AND comment_id = ?",
            "users_of": f"SELECT comment_id, user_id FROM {ks}.comments"
            " WHERE stream_id = ? AND bucket = ? AND comment_id IN ?",
            "before": f"SELECT {cols} FROM {ks}.comments"
            " WHERE stream_id = ? AND bucket = ? AND comment_id < ? LIMIT ?",
            "after": f"SELECT {cols} FROM {ks}.comments"
            " WHERE stream_id = ? AND bucket = ? AND comment_id > ? ORDER BY comment_id ASC LIMIT ?",
            "buckets_down": f"SELECT bucket FROM {ks}.stream_buckets"
            " WHERE stream_id = ? AND bucket <= ? LIMIT ?",
            "buckets_up": f"SELECT bucket FROM {ks}.stream_buckets"
            " WHERE stream_id = ? AND bucket >= ? ORDER BY bucket ASC LIMIT ?",
            "user_ids": f"SELECT comment_id FROM {ks}.comments_by_user"
            " WHERE stream_id = ? AND bucket = ? AND user_id = ?",
            "all_buckets": f"SELECT bucket FROM {ks}.stream_buckets WHERE stream_id = ?",
            "deleted_in": f"SELECT comment_id FROM {ks}.deleted_ids"
            " WHERE stream_id = ? AND bucket = ? AND comment_id IN ?",
            "is_deleted": f"SELECT deleted_at FROM {ks}.deleted_ids"
            " WHERE stream_id = ? AND bucket = ? AND comment_id = ?",
            "insert_tombstone": f"INSERT INTO {ks}.tombstones (stream_id, deleted_at, comment_id)"
            " VALUES (?, ?, ?) USING TTL ?",
            "insert_deleted": f"INSERT INTO {ks}.deleted_ids (stream_id, bucket, comment_id, deleted_at)"
            " VALUES (?, ?, ?, ?) USING TTL ?",
            "delete": f"DELETE FROM {ks}.comments USING TIMESTAMP ?"
            " WHERE stream_id = ? AND bucket = ? AND comment_id = ?",
            "delete_by_user": f"DELETE FROM {ks}.comments_by_user USING TIMESTAMP ?"
            " WHERE stream_id = ? AND bucket = ? AND user_id = ? AND comment_id = ?",
            "tombstones_since": f"SELECT comment_id, deleted_at FROM {ks}.tombstones"
            " WHERE stream_id = ? AND deleted_at >= ? LIMIT ?",
            "watermark": f"SELECT log_offset FROM {ks}.watermarks WHERE stream_id = ?",
            # The offset is also the write timestamp: the highest offset wins whatever the order the
            # writes arrive in, with no read before the write.
            "set_watermark": f"INSERT INTO {ks}.watermarks (stream_id, log_offset)"
            " VALUES (?, ?) USING TIMESTAMP ?",
            "claim_setting": f"INSERT INTO {ks}.settings (name, value) VALUES (?, ?) IF NOT EXISTS",
        }
        self._prepared: dict[str, Statement] = {}

    async def prepare(self, session: CqlSession) -> None:
        names = list(self.text)
        prepared = await session.prepare_all([self.text[n] for n in names])
        self._prepared = dict(zip(names, prepared, strict=True))

    def __getitem__(self, name: str) -> Statement:
        return self._prepared[name]


class CassandraHistoryStore:
    """Comment history in Cassandra (see the module docstring and ``HistoryStore``)."""

    def __init__(
        self,
        session: CqlSession,
        url: CassandraUrl,
        queries: _Queries,
        tombstone_ttl_s: float,
        retention_s: float,
        gc_grace_s: int,
    ) -> None:
        self._cql = session
        self._url = url
        self._q = queries
        self._ttl = tombstone_ttl_s
        self._retention = retention_s
        self._gc_grace_s = gc_grace_s
        self._bucket_ms = url.bucket_s * 1000
        self._known_buckets: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._limit = asyncio.Semaphore(url.concurrency)
        self._closed = False
        self._calls = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    async def open(
        cls, url: str, tombstone_ttl_s: float = 86400.0, retention_s: float = 30 * 86400.0
    ) -> CassandraHistoryStore:
        if tombstone_ttl_s <= 0 or retention_s <= 0:
            raise ValueError("tombstone_ttl_s and retention_s must be positive")
        parsed = CassandraUrl.parse(url)
        session = await CqlSession.connect(
            parsed.hosts,
            consistency=consistency_level(parsed.consistency),
            local_dc=parsed.local_dc,
            timeout_s=parsed.timeout_s,
        )
        try:
            await _ensure_schema(session, parsed, retention_s, tombstone_ttl_s)
            queries = _Queries(parsed.keyspace)
            await queries.prepare(session)
            await _check_settings(session, queries, parsed)
            gc_grace = session.table_option(parsed.keyspace, "comments", "gc_grace_seconds")
            gc_grace_s = int(cast(int, gc_grace)) if gc_grace is not None else parsed.gc_grace_s
        except BaseException:
            await session.close()
            raise
        return cls(session, parsed, queries, tombstone_ttl_s, retention_s, gc_grace_s)

    @property
    def retention_s(self) -> float:
        return self._retention

    @property
    def tombstone_ttl_s(self) -> float:
        return self._ttl

    # -- plumbing ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        """Refuse calls after aclose; count running ones so aclose can let them finish."""
        if self._closed:
            raise ClosedError("history store is closed")
        self._calls += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._calls -= 1
            if self._calls == 0:
                self._idle.set()

    async def _all(self, jobs: Sequence[Callable[[], Awaitable[object]]]) -> None:
        """Run ``jobs`` with at most ``concurrency`` in flight (across every call of this store);
        raise the first failure after all end. A job must not call ``_all`` itself: jobs holding
        every slot would wait for one another."""

        async def one(job: Callable[[], Awaitable[object]]) -> None:
            async with self._limit:
                await job()

        results = await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _bucket(self, comment_id: int) -> int:
        """Start (unix seconds) of the bucket the comment id's time falls in."""
        return id_timestamp_ms(comment_id) // self._bucket_ms * self._url.bucket_s

    async def _batches(
        self, partitions: dict[object, list[list[tuple[Statement, Params]]]], per_batch: int = BATCH_ROWS
    ) -> None:
        """Write each partition's groups of statements (a comment and its index row, say) as
        single-partition unlogged batches of up to ``per_batch`` groups, partitions concurrently.

        Statements on tables that share a partition key (comments, comments_by_user, deleted_ids)
        form one mutation: atomic, and isolated per table. Never one batch across partitions: an
        unlogged multi-partition batch buys no atomicity, makes one coordinator hold the whole batch
        and forward each partition's rows to replicas it is not one of (token-aware routing is
        lost), and fails or retries as a whole; concurrent single-partition batches go straight to
        each partition's replicas.
        """
        jobs: list[Callable[[], Awaitable[object]]] = []
        for groups in partitions.values():
            for start in range(0, len(groups), per_batch):
                items = [item for group in groups[start : start + per_batch] for item in group]
                if len(items) == 1:
                    jobs.append(partial(self._cql.execute, *items[0]))
                else:
                    jobs.append(partial(self._cql.batch, items))
        await self._all(jobs)

    # -- writes ------------------------------------------------------------------------------

    async def put(self, comment: StoredComment) -> None:
        await self.put_many((comment,))

    async def put_many(self, comments: Sequence[StoredComment]) -> None:
        for c in comments:
            if not isinstance(c.payload, bytes):
                raise TypeError(f"payload must be bytes, got {type(c.payload).__name__}")
        async with self._call():
            if not comments:
                return
            now = time.time()
            # Comments already past retention are not written (their TTL would be <= 0).
            live = [c for c in comments if id_timestamp_ms(c.comment_id) / 1000 + self._retention > now]
            live = await self._drop_deleted(live, now)
            if not live:
                return
            timestamp = PUT_TIMESTAMP_BASE - time.time_ns() // 1000
            insert, insert_by_user, insert_bucket = (
                self._q["insert"],
                self._q["insert_by_user"],
                self._q["insert_bucket"],
            )
            rows: dict[object, list[list[tuple[Statement, Params]]]] = defaultdict(list)
            new_buckets: dict[object, list[list[tuple[Statement, Params]]]] = defaultdict(list)
            for c in live:
                bucket = self._bucket(c.comment_id)
                ttl = _ttl(id_timestamp_ms(c.comment_id) / 1000 + self._retention, now)
                rows[c.stream, bucket].append(
                    [
                        (insert, (c.stream, bucket, c.comment_id, c.user_id, c.payload, ttl, timestamp)),
                        (insert_by_user, (c.stream, bucket, c.user_id, c.comment_id, ttl, timestamp)),
                    ]
                )
                if (c.stream, bucket) not in self._known_buckets and len(rows[c.stream, bucket]) == 1:
                    # Outlives every comment of the bucket.
                    ttl_bucket = _ttl(bucket + self._url.bucket_s + self._retention, now)
                    new_buckets[c.stream].append([(insert_bucket, (c.stream, bucket, ttl_bucket))])
            # Both at once: a failure raises, and the caller's retry (idempotent) completes it.
            await _all_of(self._batches(rows), self._batches(new_buckets))
            for key in rows:
                self._remember_bucket(*cast(tuple[str, int], key))

    def _remember_bucket(self, stream: str, bucket: int) -> None:
        self._known_buckets[stream, bucket] = None
        if len(self._known_buckets) > KNOWN_BUCKETS_MAX:
            self._known_buckets.popitem(last=False)

    async def _drop_deleted(self, comments: list[StoredComment], now: float) -> list[StoredComment]:
        """``comments`` minus those in deleted_ids, checking only comments old enough that the row
        tombstone of a delete could already be purged (younger ones are shadowed by it)."""
        cutoff_ms = (now - self._gc_grace_s + LATE_PUT_MARGIN_S) * 1000
        old: dict[tuple[str, int], list[int]] = defaultdict(list)
        for c in comments:
            if id_timestamp_ms(c.comment_id) < cutoff_ms:
                old[c.stream, self._bucket(c.comment_id)].append(c.comment_id)
        if not old:
            return comments
        deleted: set[tuple[str, int]] = set()

        async def check(stream: str, bucket: int, ids: list[int]) -> None:
            found = await self._cql.rows(self._q["deleted_in"], (stream, bucket, ids))
            deleted.update((stream, cast(int, row[0])) for row in found)

        await self._all(
            [
                partial(check, stream, bucket, ids[i : i + IN_CHUNK])
                for (stream, bucket), ids in old.items()
                for i in range(0, len(ids), IN_CHUNK)
            ]
        )
        return [c for c in comments if (c.stream, c.comment_id) not in deleted]

    async def delete(self, stream: str, comment_id: int) -> bool:
        async with self._call():
            bucket = self._bucket(comment_id)
            row_read = self._cql.start(self._q["get"], (stream, bucket, comment_id))
            tomb_read = self._cql.start(self._q["is_deleted"], (stream, bucket, comment_id))
            try:
                await asyncio.wait((row_read, tomb_read))
                row, tomb = row_read.result(), tomb_read.result()
            finally:
                for read in (row_read, tomb_read):
                    discard(read)  # the failure not raised is read too, a cancelled wait cancels
            if tomb and not row:
                return False  # deleted before
            user = cast(str, row[0][1]) if row else None
            await self._delete(stream, {comment_id: user})
            return bool(row)

    async def delete_user(self, stream: str, user_id: str) -> list[int]:
        async with self._call():
            buckets = [cast(int, r[0]) for r in await self._cql.rows(self._q["all_buckets"], (stream,))]
            mine: list[int] = []

            async def collect(bucket: int) -> None:
                found = await self._cql.rows(self._q["user_ids"], (stream, bucket, user_id))
                candidates = [cast(int, r[0]) for r in found]
                # The index may name comments that are gone (deleted, expired) or stored under
                # another user (a re-put with another author loses, its index row stays): keep
                # only those still stored under this user.
                for i in range(0, len(candidates), IN_CHUNK):
                    ids = candidates[i : i + IN_CHUNK]
                    rows = await self._cql.rows(self._q["users_of"], (stream, bucket, ids))
                    mine.extend(cast(int, r[0]) for r in rows if r[1] == user_id)

            await self._all([partial(collect, b) for b in buckets])
            mine.sort()
            await self._delete(stream, dict.fromkeys(mine, user_id))
            return mine

    async def _delete(self, stream: str, comments: dict[int, str | None]) -> None:
        """Delete ``comments`` (comment id -> author, None when the row is not there).

        First the tombstones recovery reads (one partition per stream), then per bucket one
        single-partition batch: the deleted_ids record, the row delete (written even for an absent
        row: it shadows a put still to come) and the index row delete. A crash in between leaves a
        comment both tombstoned and present, which the next delete finishes; never a comment gone
        without the tombstone that tells clients to drop it.
        """
        now = time.time()
        ttl = _ttl(now + self._ttl, now)
        tombstones = self._q["insert_tombstone"]
        await self._batches({stream: [[(tombstones, (stream, now, cid, ttl))] for cid in comments]})
        insert_deleted, delete, delete_by_user = (
            self._q["insert_deleted"],
            self._q["delete"],
            self._q["delete_by_user"],
        )
        per_bucket: dict[object, list[list[tuple[Statement, Params]]]] = defaultdict(list)
        for cid, user in comments.items():
            bucket = self._bucket(cid)
            group: list[tuple[Statement, Params]] = [
                (insert_deleted, (stream, bucket, cid, now, ttl)),
                (delete, (DELETE_TIMESTAMP, stream, bucket, cid)),
            ]
            if user is not None:
                group.append((delete_by_user, (DELETE_TIMESTAMP, stream, bucket, user, cid)))
            per_bucket[bucket].append(group)
        # A whole bucket in one batch (up to DELETE_BATCH_ROWS): readers see all of it or none.
        await self._batches(per_bucket, DELETE_BATCH_ROWS)

    async def set_watermarks(self, marks: Mapping[str, int]) -> None:
        async with self._call():
            statement = self._q["set_watermark"]
            # A negative mark (-1: nothing applied) sets nothing: it could never beat a stored one.
            await self._batches(
                {
                    stream: [[(statement, (stream, offset, offset))]]
                    for stream, offset in marks.items()
                    if offset >= 0
                }
            )

    async def watermark(self, stream: str) -> int:
        async with self._call():
            rows = await self._cql.rows(self._q["watermark"], (stream,))
            return cast(int, rows[0][0]) if rows else -1

    # -- reads -------------------------------------------------------------------------------

    async def get(self, stream: str, comment_id: int) -> StoredComment | None:
        async with self._call():
            rows = await self._cql.rows(self._q["get"], (stream, self._bucket(comment_id), comment_id))
            return _comment(stream, rows[0]) if rows else None

    async def page(self, stream: str, before_id: int | None, limit: int) -> list[StoredComment]:
        async with self._call():
            if limit <= 0:
                return []
            if before_id is None:
                # The newest page is most likely all in the bucket of now.
                guess = self._bucket(first_id_at(int(time.time() * 1000)))
                return await self._walk(stream, "buckets_down", MAX_BUCKET, "before", MAX_ID, limit, guess)
            top = self._bucket(before_id)
            return await self._walk(stream, "buckets_down", top, "before", before_id, limit, top)

    async def recent(self, stream: str, limit: int) -> list[StoredComment]:
        return await self.page(stream, None, limit)

    async def after(self, stream: str, after_id: int, limit: int) -> list[StoredComment]:
        async with self._call():
            if limit <= 0:
                return []
            start = self._bucket(max(after_id, 0))
            return await self._walk(stream, "buckets_up", start, "after", after_id, limit, start)

    async def _walk(
        self,
        stream: str,
        list_query: str,
        bucket_from: int,
        page_query: str,
        bound: int,
        limit: int,
        guess: int,
    ) -> list[StoredComment]:
        """Read bucket after bucket, as stream_buckets lists them from ``bucket_from`` on (down for
        ``buckets_down``, up for ``buckets_up``, ``BUCKETS_PER_READ`` per listing), until ``limit``
        comments are found or the buckets run out.

        The read of bucket ``guess`` goes out together with the first listing, so a page that one
        bucket fills (most of them) costs one round trip, not two. A bucket not listed is not read
        even when the guess found rows there (only a failed put_many leaves such rows, and its
        retry lists them).
        """
        step = -1 if list_query == "buckets_down" else 1
        guessed: asyncio.Future[list[Row]] | None = self._cql.start(
            self._q[page_query], (stream, guess, bound, limit)
        )
        out: list[StoredComment] = []
        try:
            while True:
                listed = await self._cql.rows(self._q[list_query], (stream, bucket_from, BUCKETS_PER_READ))
                for row in listed:
                    bucket = cast(int, row[0])
                    need = limit - len(out)
                    if guessed is not None and bucket == guess:
                        rows = (await guessed)[:need]
                        guessed = None
                    else:
                        rows = await self._cql.rows(self._q[page_query], (stream, bucket, bound, need))
                    out.extend(_comment(stream, r) for r in rows)
                    if len(out) >= limit:
                        return out
                if len(listed) < BUCKETS_PER_READ:
                    return out
                bucket_from = cast(int, listed[-1][0]) + step
        finally:
            if guessed is not None:
                discard(guessed)

    async def tombstones_since(self, stream: str, since: float, limit: int) -> list[Tombstone]:
        async with self._call():
            if limit <= 0:
                return []
            rows = await self._cql.rows(self._q["tombstones_since"], (stream, since, limit))
            return [Tombstone(stream, cast(int, r[0]), cast(float, r[1])) for r in rows]

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._idle.wait()  # calls already running finish (their writes included)
        await self._cql.close()


async def _all_of(*steps: Awaitable[None]) -> None:
    """Await every step, then raise the first failure (none is left running behind the caller)."""
    for result in await asyncio.gather(*steps, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def _comment(stream: str, row: Row) -> StoredComment:
    return StoredComment(stream, cast(int, row[0]), cast(str, row[1]), cast(bytes, row[2]))


async def _ensure_schema(
    session: CqlSession, url: CassandraUrl, retention_s: float, tombstone_ttl_s: float
) -> None:
    """Create the keyspace and whichever tables are missing (a no-op on a complete keyspace)."""
    tables = table_ddl(
        url.keyspace,
        url.gc_grace_s,
        min(MAX_TTL_S, math.ceil(retention_s)),
        min(MAX_TTL_S, math.ceil(tombstone_ttl_s)),
    )
    missing = [name for name in tables if not session.has_table(url.keyspace, name)]
    if not missing:
        return
    await session.ddl(keyspace_ddl(url.keyspace, url.replication))
    for name in missing:
        # One at a time: concurrent schema changes are what Cassandra's schema agreement handles worst.
        await session.ddl(tables[name])


async def _check_settings(session: CqlSession, queries: _Queries, url: CassandraUrl) -> None:
    """Record the schema version and bucket_s in a new keyspace, or refuse a keyspace made with others."""
    for name, value in (("schema", SCHEMA_VERSION), ("bucket_s", str(url.bucket_s))):
        [row] = await session.rows(queries["claim_setting"], (name, value))
        if not row[0] and row[-1] != value:
            raise ConfigurationError(
                f"keyspace {url.keyspace} was created with {name}={row[-1]}; this store needs {name}={value}"
            )


if TYPE_CHECKING:
    from livechat.ports.history import HistoryStore

    def _check(b: CassandraHistoryStore) -> HistoryStore:
        return b
