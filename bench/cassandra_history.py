"""History store read latency and write rate: Cassandra (shared server) against SQLite (embedded baseline).

    python -m bench.cassandra_history                         # 20 000 comments, 500 reads per kind
    python -m bench.cassandra_history --comments 20000 --reads 500 --hours 10 --out /tmp/h.json
    python -m bench.cassandra_history --cassandra cassandra://127.0.0.1:19042 --skip-sqlite

One stream holds ``--comments`` comments whose ids spread evenly over the last ``--hours`` hours, so
with Cassandra's one-hour buckets the stream spans ``--hours`` + 1 partitions. Per backend:

- ``put_many``: the comments written in calls of ``--batch`` (the persist worker's batch), one call at
  a time, then ``--writers`` calls at once (several persist partitions): rows/s each; then
  ``put_many_mixed``: as many comments again with ids of the last minute, each batch mixing
  ``--mixed-streams`` streams (a Kafka partition carries many streams), one call at a time: the
  persist worker's steady state; ``put_many_replay``: the same with ids 4-10 hours old (a replay
  of the log after the tables' 3 h gc_grace: each put is first checked against ``deleted_ids``);
- ``newest``: ``page(stream, None, 50)`` (a viewer's join / the snapshot);
- ``deep``: ``page(stream, before_id, 50)`` with ``before_id`` drawn at random from the whole stream;
- ``boundary``: ``page`` with a ``before_id`` 25 comments above a bucket boundary, so every page
  reads two partitions;
- ``after``: ``after(stream, after_id, 50)`` (reconnect recovery) from a random id.

Reads run one at a time (latency of one call; 20 warm-up calls first), ``--reads`` of each kind.
Cassandra runs on a keyspace of its own (``lc_bench_history``, created if missing, the stream name
unique per run); SQLite on a file in a temporary folder. Prints one JSON object (also to ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import uvloop
from livechat.backends import open_history
from livechat.ids import CommentIdGenerator, id_timestamp_ms
from livechat.ports import HistoryStore, StoredComment

DEFAULT_CASSANDRA = "cassandra://127.0.0.1:19042"
PAGE = 50
WARMUP = 20
BUCKET_MS = 3_600_000


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def summary_ms(latencies: list[float]) -> dict[str, float]:
    values = sorted(latencies)
    return {
        "p50_ms": round(percentile(values, 0.50) * 1e3, 3),
        "p99_ms": round(percentile(values, 0.99) * 1e3, 3),
        "max_ms": round(values[-1] * 1e3, 3),
    }


def make_comments(stream: str, n: int, hours: float, payload_bytes: int) -> list[StoredComment]:
    """``n`` comments, ids evenly spread over the last ``hours`` hours, 200 users, ascending ids."""
    start_ms = int(time.time() * 1000 - hours * 3_600_000)
    step_ms = hours * 3_600_000 / n
    clock = iter(start_ms + int(i * step_ms) for i in range(n))
    ids = CommentIdGenerator(node=7, clock_ms=lambda: next(clock))
    payload = os.urandom(payload_bytes)
    return [StoredComment(stream, ids.next_id(), f"user{i % 200}", payload) for i in range(n)]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def timed_reads(count: int, op: Callable[[int], Awaitable[list[StoredComment]]]) -> dict[str, Any]:
    for i in range(WARMUP):
        await op(i)
    latencies: list[float] = []
    sizes = 0
    cpu0 = cpu_s()
    for i in range(count):
        t0 = time.perf_counter()
        page = await op(i)
        latencies.append(time.perf_counter() - t0)
        sizes += len(page)
    return {
        **summary_ms(latencies),
        "reads": count,
        "mean_rows": round(sizes / count, 1),
        "client_cpu_ms_per_read": round((cpu_s() - cpu0) * 1e3 / count, 3),
    }


async def put_mixed(
    store: HistoryStore, prefix: str, n: int, hours: float, args: argparse.Namespace, skip_hours: float = 0
) -> dict[str, Any]:
    """``n`` comments over ``--mixed-streams`` streams, ids spread over ``hours`` hours (the newest
    ``skip_hours`` left out), written ``--batch`` at a time: rows/s."""
    span = make_comments(prefix, n, hours, args.payload)
    cut = int(n * (1 - skip_hours / hours))
    pool = span[:cut] or span
    rows = [
        StoredComment(f"{prefix}-{i % args.mixed_streams}", c.comment_id, c.user_id, c.payload)
        for i, c in enumerate(pool)
    ]
    cpu0, t0 = cpu_s(), time.perf_counter()
    for i in range(0, len(rows), args.batch):
        await store.put_many(rows[i : i + args.batch])
    elapsed, cpu = time.perf_counter() - t0, cpu_s() - cpu0
    return {
        "streams": args.mixed_streams,
        "rows": len(rows),
        "rows_per_s": round(len(rows) / elapsed),
        "client_cpu_us_per_row": round(cpu * 1e6 / len(rows), 1),
    }


async def bench_backend(url: str, args: argparse.Namespace) -> dict[str, Any]:
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    stored = make_comments(stream, args.comments, args.hours, args.payload)
    store: HistoryStore = await open_history(url)
    try:
        half = len(stored) // 2
        # put_many, one call at a time.
        cpu0, t0 = cpu_s(), time.perf_counter()
        for i in range(0, half, args.batch):
            await store.put_many(stored[i : i + args.batch])
        serial_s, serial_cpu = time.perf_counter() - t0, cpu_s() - cpu0
        # put_many, --writers calls at once.
        chunks = [stored[i : i + args.batch] for i in range(half, len(stored), args.batch)]
        queue = iter(chunks)

        async def writer() -> None:
            for chunk in queue:
                await store.put_many(chunk)

        cpu0, t0 = cpu_s(), time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(args.writers)))
        parallel_s, parallel_cpu = time.perf_counter() - t0, cpu_s() - cpu0
        rows_parallel = len(stored) - half

        # put_many with many streams per call (written after, never read: they do not change the reads).
        mixed = {
            "put_many_mixed": await put_mixed(store, stream + "-fresh", len(stored), 1 / 60, args),
            "put_many_replay": await put_mixed(
                store, stream + "-replay", len(stored), 10, args, skip_hours=4
            ),
        }

        assert [c.comment_id for c in await store.recent(stream, 3)] == [
            c.comment_id for c in stored[-3:][::-1]
        ], "newest page does not match what was written"

        rng = random.Random(1)
        ids = [c.comment_id for c in stored]
        hour = [id_timestamp_ms(cid) // BUCKET_MS for cid in ids]
        boundaries = [i for i in range(1, len(ids)) if hour[i] != hour[i - 1]]
        # before_id 25 comments above a boundary: 25 rows from that bucket, 25 from the one below.
        boundary_before = [ids[b + PAGE // 2] for b in boundaries if b + PAGE // 2 < len(ids) and b >= PAGE]
        deep = [ids[rng.randrange(PAGE, len(ids))] for _ in range(args.reads + WARMUP)]
        after_from = [ids[rng.randrange(0, len(ids) - PAGE)] for _ in range(args.reads + WARMUP)]
        reads = {
            "newest": await timed_reads(args.reads, lambda i: store.page(stream, None, PAGE)),
            "deep": await timed_reads(args.reads, lambda i: store.page(stream, deep[i], PAGE)),
            "boundary": await timed_reads(
                args.reads, lambda i: store.page(stream, boundary_before[i % len(boundary_before)], PAGE)
            ),
            "after": await timed_reads(args.reads, lambda i: store.after(stream, after_from[i], PAGE)),
        }
        return {
            "url": url,
            "comments": len(stored),
            "buckets_spanned": len(boundaries) + 1,
            "put_many_serial": {
                "rows": half,
                "rows_per_s": round(half / serial_s),
                "client_cpu_us_per_row": round(serial_cpu * 1e6 / half, 1),
            },
            "put_many_parallel": {
                "writers": args.writers,
                "rows": rows_parallel,
                "rows_per_s": round(rows_parallel / parallel_s),
                "client_cpu_us_per_row": round(parallel_cpu * 1e6 / rows_parallel, 1),
            },
            **mixed,
            "reads": reads,
        }
    finally:
        await store.aclose()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "command": " ".join(["python", "-m", "bench.cassandra_history", *sys.argv[1:]]),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "params": {k: v for k, v in vars(args).items() if k != "out"},
        "backends": {},
    }
    cassandra_url = args.cassandra.rstrip("/") + f"/lc_bench_history?consistency={args.consistency}"
    result["backends"]["cassandra"] = await bench_backend(cassandra_url, args)
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            result["backends"]["sqlite"] = await bench_backend(f"sqlite://{tmp}/history.db", args)
    result["loadavg_end"] = os.getloadavg()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cassandra", default=DEFAULT_CASSANDRA, help="cassandra://host:port (no keyspace)")
    parser.add_argument("--consistency", default="LOCAL_QUORUM")
    parser.add_argument("--comments", type=int, default=20_000)
    parser.add_argument("--hours", type=float, default=10.0, help="time span of the comment ids")
    parser.add_argument("--payload", type=int, default=200, help="payload bytes per comment")
    parser.add_argument("--batch", type=int, default=500, help="comments per put_many call")
    parser.add_argument("--writers", type=int, default=4, help="put_many calls at once (second phase)")
    parser.add_argument("--mixed-streams", type=int, default=100, help="streams per put_many_mixed call")
    parser.add_argument("--reads", type=int, default=500, help="reads of each kind")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    result = uvloop.run(main_async(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
