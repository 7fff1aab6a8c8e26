"""Meta store latency and write rate: ``get_ban`` p50/p99 and ``record_action`` rows/s, per backend.

    python -m bench.meta_store                                   # PostgreSQL (shared server) + SQLite
    python -m bench.meta_store --postgres URL --lookups 20000 --actions 20000 --concurrency 10

PostgreSQL runs on a database of its own (``lc_bench_meta``, created and migrated for the run,
dropped after it) with ``pool_max=--concurrency``; SQLite, the embedded baseline, on a file in
a temporary folder. Per backend:

- ``get_ban`` one at a time (latency of one lookup: a round trip plus the index probe), against
  ``--bans`` bans spread over 100 streams plus global ones, half the lookups hitting a ban;
- ``get_ban`` with ``--concurrency`` callers at once (lookups/s over the pool, and their latency);
- ``record_action`` with ``--concurrency`` callers at once (committed rows/s).

Prints one JSON object (also written to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import uvloop
from livechat.backends import open_meta
from livechat.ports import GLOBAL_STREAM, Ban, MetaStore, ModAction, ModActionKind

NOW = 1_750_000_000.0
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:19432/postgres"


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def summary_ms(latencies: list[float]) -> dict[str, float]:
    values = sorted(latencies)
    return {
        "p50_ms": round(percentile(values, 0.50) * 1e3, 3),
        "p99_ms": round(percentile(values, 0.99) * 1e3, 3),
        "max_ms": round(values[-1] * 1e3, 3),
    }


async def run_concurrently(
    count: int, concurrency: int, op: Callable[[int], Awaitable[object]]
) -> tuple[float, list[float]]:
    """Run ``op(i)`` for i in range(count) with ``concurrency`` callers; (wall seconds, latencies)."""
    latencies: list[float] = []
    next_index = iter(range(count))

    async def caller() -> None:
        for i in next_index:
            t0 = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


async def measure(store: MetaStore, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(7)
    users = [f"user-{i}" for i in range(args.bans * 2)]
    for i, user in enumerate(users[: args.bans]):
        stream = GLOBAL_STREAM if i % 10 == 0 else f"stream-{i % 100}"
        expires = None if i % 3 == 0 else NOW + 3600
        await store.ban(Ban(stream, user, "mod", "bench", NOW, expires))
    queries = [(f"stream-{rng.randrange(100)}", rng.choice(users)) for _ in range(args.lookups)]

    for stream, user in queries[:500]:  # warm the pool, the statement caches and the page cache
        await store.get_ban(stream, user, now=NOW)
    sequential = []
    for stream, user in queries:
        t0 = time.perf_counter()
        await store.get_ban(stream, user, now=NOW)
        sequential.append(time.perf_counter() - t0)

    wall, concurrent = await run_concurrently(
        args.lookups, args.concurrency, lambda i: store.get_ban(*queries[i], now=NOW)
    )
    lookups = {
        "one_at_a_time": summary_ms(sequential),
        "concurrent": {**summary_ms(concurrent), "per_s": round(args.lookups / wall)},
    }

    def action(i: int) -> Awaitable[int]:
        return store.record_action(
            ModAction(f"stream-{i % 100}", "mod", ModActionKind.DELETE_COMMENT, NOW, None, i, "bench")
        )

    wall, latencies = await run_concurrently(args.actions, args.concurrency, action)
    actions = {**summary_ms(latencies), "rows_per_s": round(args.actions / wall)}
    return {"get_ban": lookups, "record_action": actions}


async def fresh_postgres_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


async def drop_postgres_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if args.postgres != "none":
        db_url = await fresh_postgres_database(args.postgres, "lc_bench_meta")
        url = f"{db_url}?migrate=auto&pool_min={args.concurrency}&pool_max={args.concurrency}"
        store = await open_meta(url)
        try:
            results["postgresql"] = {"url": url, **await measure(store, args)}
        finally:
            await store.aclose()
            await drop_postgres_database(args.postgres, "lc_bench_meta")
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite://{folder}/meta.db"
            store = await open_meta(url)
            try:
                results["sqlite"] = {"url": "sqlite://<tmp>/meta.db", **await measure(store, args)}
            finally:
                await store.aclose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL of the server, or none")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite baseline")
    parser.add_argument("--bans", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--actions", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    started = time.time()
    load = os.getloadavg()
    results = uvloop.run(bench(args))
    report = {
        "command": " ".join(["python -m bench.meta_store", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "loadavg_at_start": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "asyncpg": asyncpg.__version__,
        "plan": {k: getattr(args, k) for k in ("bans", "lookups", "actions", "concurrency")},
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
