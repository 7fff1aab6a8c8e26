"""The ``cassandra://`` URL and the history keyspace's schema (tables, and why each exists).

URL: ``cassandra://host:port[,host:port…]/keyspace`` with options in the query string (defaults on
``CassandraUrl``):

- ``consistency``: the level of every read and write (``LOCAL_QUORUM``: with reads and writes both at
  a quorum, a read sees every acknowledged write; ``ONE``/``LOCAL_ONE`` trade that for latency).
- ``replication``: used only when the keyspace is created. A number (``3``) is SimpleStrategy with
  that factor; ``dc1:3,dc2:3`` is NetworkTopologyStrategy with a factor per data centre.
- ``bucket_s``: width of a comment partition in seconds (by the time in the comment id). Fixed when
  the keyspace is created (kept in its ``settings`` table): a store opened with another width is a
  ConfigurationError, because every read computes partitions from it.
- ``gc_grace_s``: ``gc_grace_seconds`` of the tables, used only when they are created (see
  ``GC_GRACE_S``).
- ``local_dc``: the data centre whose replicas serve requests (default: the contact point's).
- ``timeout``: seconds one request may take before it fails with BackendUnavailable.
- ``concurrency``: requests one ``put_many`` / ``delete_user`` keeps in flight at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from livechat.ports.errors import ConfigurationError

DEFAULT_PORT = 9042
# One hour per partition: a busy stream (100 comments/s, ~200 B each) makes ~70 MB partitions,
# under the ~100 MB where Cassandra partitions get slow to compact and repair, and a quiet stream's
# newest page still comes from one or two partitions.
BUCKET_S = 3600
# Tombstones in the comments table may be purged by compaction this long after a delete (the
# Cassandra default is 10 days). gc_grace exists so that a replica that missed a delete gets it by
# repair before the other replicas forget it; otherwise that replica would resurrect the row. Here:
# - single data centre, and 3 h is the default max_hint_window: a replica down for less than that
#   receives the delete as a hint before the tombstone may go (with hints disabled, or a replica down
#   longer, run repair within gc_grace, or raise it with ``gc_grace_s``);
# - a purge of a spammer leaves thousands of tombstones at the head of a hot partition, which every
#   newest-page read scans (Cassandra warns at 1 000 and fails a read at 100 000): short-lived
#   tombstones keep those reads fast;
# - a delete is also kept in the ``deleted_ids`` table for ``tombstone_ttl_s`` (and in the Kafka
#   log), and a ``put`` of a comment older than gc_grace is checked against it, so a late writer
#   cannot bring a deleted comment back after its tombstone is purged. A row resurrected by a replica
#   that missed both the delete and its repair would be visible again: that is the trade made.
GC_GRACE_S = 3 * 3600

CONSISTENCY = "LOCAL_QUORUM"
REPLICATION = "1"
TIMEOUT_S = 10.0
# Requests one put_many / delete_user keeps in flight: enough to keep a small cluster's coordinator
# threads busy, few enough not to queue behind one another on the client's single I/O thread.
CONCURRENCY = 32

# Stored in the keyspace's settings: a store refuses a keyspace made for another layout (CREATE TABLE
# IF NOT EXISTS would silently keep an old table). Bump when a table's key changes.
SCHEMA_VERSION = "1"

_KEYSPACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
_DC_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True, slots=True)
class CassandraUrl:
    hosts: tuple[tuple[str, int], ...]
    keyspace: str
    consistency: str = CONSISTENCY
    replication: str = REPLICATION
    bucket_s: int = BUCKET_S
    gc_grace_s: int = GC_GRACE_S
    local_dc: str | None = None
    timeout_s: float = TIMEOUT_S
    concurrency: int = CONCURRENCY

    @classmethod
    def parse(cls, url: str) -> CassandraUrl:
        parts = urlsplit(url)
        if parts.scheme != "cassandra":
            raise ConfigurationError(f"not a cassandra:// URL: {url!r}")
        hosts = tuple(_host(h, url) for h in parts.netloc.split(",") if h)
        if not hosts:
            raise ConfigurationError(f"cassandra:// URL names no host: {url!r}")
        keyspace = parts.path.strip("/")
        if not _KEYSPACE_RE.match(keyspace):
            raise ConfigurationError(
                f"cassandra:// URL needs a keyspace (a letter, then up to 47 letters, digits, _): {url!r}"
            )
        options = dict(parse_qsl(parts.query, strict_parsing=False))
        known = {"consistency", "replication", "bucket_s", "gc_grace_s", "local_dc", "timeout", "concurrency"}
        unknown = set(options) - known
        if unknown:
            raise ConfigurationError(
                f"unknown cassandra:// options {sorted(unknown)}; known: {sorted(known)}"
            )
        parsed = cls(
            hosts,
            keyspace,
            consistency=options.get("consistency", CONSISTENCY).upper(),
            replication=options.get("replication", REPLICATION),
            bucket_s=_positive_int(options, "bucket_s", BUCKET_S),
            gc_grace_s=_positive_int(options, "gc_grace_s", GC_GRACE_S, minimum=0),
            local_dc=options.get("local_dc") or None,
            timeout_s=_positive_float(options, "timeout", TIMEOUT_S),
            concurrency=_positive_int(options, "concurrency", CONCURRENCY),
        )
        replication_map(parsed.replication)  # validate now, not at keyspace creation
        if parsed.local_dc is not None and not _DC_RE.match(parsed.local_dc):
            raise ConfigurationError(f"bad local_dc {parsed.local_dc!r}")
        return parsed


def _host(text: str, url: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, DEFAULT_PORT
    if not port.isdigit() or not host:
        raise ConfigurationError(f"bad host:port {text!r} in {url!r}")
    return host.strip("[]"), int(port)


def _positive_int(options: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"cassandra:// option {name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"cassandra:// option {name} must be >= {minimum}, got {value}")
    return value


def _positive_float(options: dict[str, str], name: str, default: float) -> float:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"cassandra:// option {name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ConfigurationError(f"cassandra:// option {name} must be > 0, got {raw!r}")
    return value


def replication_map(spec: str) -> str:
    """The CQL replication map for ``spec`` (``3`` or ``dc1:3,dc2:3``)."""
    if spec.isdigit() and int(spec) > 0:
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {int(spec)}}}"
    factors: list[str] = []
    for item in spec.split(","):
        dc, sep, factor = item.partition(":")
        if not sep or not _DC_RE.match(dc) or not factor.isdigit():
            raise ConfigurationError(f"replication must be N or dc:N[,dc:N…], got {spec!r}")
        factors.append(f"'{dc}': {int(factor)}")
    return "{'class': 'NetworkTopologyStrategy', " + ", ".join(factors) + "}"


def keyspace_ddl(keyspace: str, replication: str) -> str:
    return f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication_map(replication)}"


def table_ddl(keyspace: str, gc_grace_s: int, retention_s: int, tombstone_ttl_s: int) -> dict[str, str]:
    """CREATE TABLE statements by table name. The default TTLs are a backstop: every write of this
    store sets its own TTL (retention counts from the time in the comment id, not from the write)."""
    ks, gc = keyspace, gc_grace_s
    return {
        # The history itself: one partition per stream and time bucket, newest comment first.
        "comments": f"""CREATE TABLE IF NOT EXISTS {ks}.comments (
            stream_id text, bucket bigint, comment_id bigint, user_id text, payload blob,
            PRIMARY KEY ((stream_id, bucket), comment_id))
            WITH CLUSTERING ORDER BY (comment_id DESC)
            AND gc_grace_seconds = {gc} AND default_time_to_live = {retention_s}""",
        # delete_user: a user's comment ids per bucket. Same partition key as comments, so a put
        # writes a comment and its index row in one mutation (one single-partition batch).
        "comments_by_user": f"""CREATE TABLE IF NOT EXISTS {ks}.comments_by_user (
            stream_id text, bucket bigint, user_id text, comment_id bigint,
            PRIMARY KEY ((stream_id, bucket), user_id, comment_id))
            WITH gc_grace_seconds = {gc} AND default_time_to_live = {retention_s}""",
        # The buckets a stream has comments in, newest first: reads page across them without
        # probing every empty hour of a quiet stream.
        "stream_buckets": f"""CREATE TABLE IF NOT EXISTS {ks}.stream_buckets (
            stream_id text, bucket bigint, PRIMARY KEY (stream_id, bucket))
            WITH CLUSTERING ORDER BY (bucket DESC) AND gc_grace_seconds = {gc}""",
        # Deletes by time for tombstones_since (one partition per stream: deletes of one day).
        "tombstones": f"""CREATE TABLE IF NOT EXISTS {ks}.tombstones (
            stream_id text, deleted_at double, comment_id bigint,
            PRIMARY KEY (stream_id, deleted_at, comment_id))
            WITH gc_grace_seconds = {gc} AND default_time_to_live = {tombstone_ttl_s}""",
        # Deletes by id, partitioned like comments (one mutation with the row delete): "was this
        # comment deleted?" for delete and for late puts.
        "deleted_ids": f"""CREATE TABLE IF NOT EXISTS {ks}.deleted_ids (
            stream_id text, bucket bigint, comment_id bigint, deleted_at double,
            PRIMARY KEY ((stream_id, bucket), comment_id))
            WITH gc_grace_seconds = {gc} AND default_time_to_live = {tombstone_ttl_s}""",
        # Per stream: the comment-log offset up to which history holds the log (HistoryStore.watermark).
        # No TTL: one small row per stream, read by every edge that opens it.
        "watermarks": f"""CREATE TABLE IF NOT EXISTS {ks}.watermarks (
            stream_id text PRIMARY KEY, log_offset bigint) WITH gc_grace_seconds = {gc}""",
        # Fixed parameters of the keyspace (SCHEMA_VERSION, bucket_s).
        "settings": f"CREATE TABLE IF NOT EXISTS {ks}.settings (name text PRIMARY KEY, value text)",
    }
