"""redis-py (with hiredis) against the hand-written RESP client livechat used before it.

    python -m bench.redis_clients                      # a private Redis (scripts/redis.sh)
    python -m bench.redis_clients --url redis://127.0.0.1:19600
    python -m bench.redis_clients --cluster-url redis+cluster://127.0.0.1:19701   # + cluster rows

The hand-written client (``backends/resp.py``) and the backends built on it are loaded from git
history (``--baseline``, the last commit that had them), so this comparison still runs after they
were deleted. Both sides run in this process on uvloop, one after the other, against the same
server; every row is the median of ``--repeat`` runs. CPU is this process's (user + system), per
event or per call: the server's own CPU is not counted.

Rows:
- raw SPUBLISH: 10 000 commands, 100 per round trip (``RedisClient.send_many`` against a redis-py
  pipeline), no subscriber: the clients alone.
- broker publish: 10 000 events over 10 streams through ``publish_many``, 100 events per call (an
  edge's tick batch), no subscriber; then the same with a second edge subscribed to every stream,
  timed until it received the last event (wall = end-to-end throughput, CPU = both edges).
- registry allow(): the sliding-window Lua script, one caller in a loop (a round trip each), then
  500 concurrent callers (what an edge does under load).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import uvloop
from livechat.backends.redis import RedisBroker, RedisRegistry

REPO = Path(__file__).resolve().parents[1]
# The last commit with backends/resp.py and the RedisBroker/RedisRegistry built on it.
BASELINE = "00a1586fcf14461c4411dc0a0392cc25641534fd"
PRIVATE_PORTS = range(19180, 19190)

EVENTS = 10_000
BATCH = 100
STREAMS = 10
PAYLOAD = b"x" * 200
ALLOW_SEQUENTIAL = 2_000
ALLOW_CONCURRENT = 500
ALLOW_ROUNDS = 10

Timed = tuple[float, float]  # (wall seconds, CPU seconds)


def load_baseline(commit: str) -> types.ModuleType:
    """The old ``livechat.backends.redis`` (and its ``resp``), as modules named ``lc_baseline_*``."""

    def module(name: str, path: str, replace: tuple[str, str] | None = None) -> types.ModuleType:
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{commit}:{path}"], capture_output=True, text=True, check=True
        ).stdout
        if replace is not None:
            source = source.replace(*replace)
        spec = importlib.util.spec_from_loader(name, loader=None)
        assert spec is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses look their module up while the class is built
        exec(compile(source, f"{commit[:10]}:{path}", "exec"), mod.__dict__)
        return mod

    module("lc_baseline_resp", "python/livechat/backends/resp.py")
    return module(
        "lc_baseline_redis",
        "python/livechat/backends/redis.py",
        ("livechat.backends.resp", "lc_baseline_resp"),
    )


async def timed(work: Callable[[], Awaitable[Any]]) -> Timed:
    cpu, wall = time.process_time(), time.perf_counter()
    await work()
    return time.perf_counter() - wall, time.process_time() - cpu


def median(runs: Sequence[Timed]) -> Timed:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


class Counter:
    """A BrokerHandler counting events until ``target`` arrived."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.done = asyncio.get_running_loop().create_future()

    def on_message(self, stream: str, payload: bytes) -> None:
        self.count += 1
        if self.count == self.target and not self.done.done():
            self.done.set_result(None)

    def on_control(self, payload: bytes) -> None:
        pass

    def on_gap(self, streams: Sequence[str]) -> None:
        pass


def events() -> list[list[tuple[str, bytes]]]:
    flat = [(f"stream-{i % STREAMS}", PAYLOAD) for i in range(EVENTS)]
    return [flat[i : i + BATCH] for i in range(0, EVENTS, BATCH)]


async def raw_publish_old(old: types.ModuleType, url: str) -> Timed:
    resp = sys.modules["lc_baseline_resp"]
    client = resp.RedisClient(resp.RedisAddress.parse(url), reply_timeout=5.0)
    await client.call("PING")
    encode = resp.encode_command

    async def work() -> None:
        for batch in events():
            await client.send_many([encode("SPUBLISH", f"bench:s:{s}", p) for s, p in batch])

    try:
        return await timed(work)
    finally:
        await client.aclose()


async def raw_publish_redispy(url: str) -> Timed:
    from livechat.backends.redis_connect import RedisTarget, open_client

    client = await open_client(RedisTarget.parse(url), "bench")

    async def work() -> None:
        for batch in events():
            pipe = client.pipeline(transaction=False)
            for s, p in batch:
                pipe.execute_command("SPUBLISH", f"bench:s:{s}", p)
            await pipe.execute()

    try:
        return await timed(work)
    finally:
        await client.aclose()


async def broker_publish(broker_cls: Any, url: str, with_subscriber: bool) -> Timed:
    prefix = f"bench{time.monotonic_ns()}:"
    pub = await broker_cls.open(url, "bench-pub", prefix)
    sub = await broker_cls.open(url, "bench-sub", prefix)
    pub.set_handler(Counter(0))
    counter = Counter(EVENTS)
    sub.set_handler(counter)
    if with_subscriber:
        for i in range(STREAMS):
            await sub.subscribe(f"stream-{i}")
    batches = events()

    async def work() -> None:
        for batch in batches:
            await pub.publish_many(batch)
        if with_subscriber:
            await asyncio.wait_for(counter.done, 30)

    try:
        return await timed(work)
    finally:
        await pub.aclose()
        await sub.aclose()


async def allow_calls(registry_cls: Any, url: str, concurrent: bool) -> Timed:
    registry = await registry_cls.open(url, f"bench{time.monotonic_ns()}:")

    async def work() -> None:
        if concurrent:
            for r in range(ALLOW_ROUNDS):
                calls = [registry.allow(f"u{r}:{i}", 10, 60.0) for i in range(ALLOW_CONCURRENT)]
                await asyncio.gather(*calls)
        else:
            for i in range(ALLOW_SEQUENTIAL):
                await registry.allow(f"u{i % 50}", 10_000, 60.0)

    try:
        return await timed(work)
    finally:
        await registry.aclose()


async def run(url: str, cluster_url: str | None, baseline: str, repeat: int) -> list[dict[str, Any]]:
    old = load_baseline(baseline)
    rows: list[dict[str, Any]] = []

    async def row(name: str, ops: int, unit: str, old_run: Any, new_run: Any, cluster_run: Any) -> None:
        result: dict[str, Any] = {"row": name, "ops": ops, "unit": unit}
        for side, make in (("resp.py", old_run), ("redis-py", new_run), ("redis-py cluster", cluster_run)):
            if make is None:
                continue
            wall, cpu = median([await make() for _ in range(repeat)])
            result[side] = {"per_s": ops / wall, "wall_us": wall / ops * 1e6, "cpu_us": cpu / ops * 1e6}
        rows.append(result)
        print(format_row(result), flush=True)

    def cluster(make: Callable[[str], Awaitable[Timed]]) -> Callable[[], Awaitable[Timed]] | None:
        return None if cluster_url is None else (lambda: make(cluster_url))

    await row(
        "raw SPUBLISH, 100 per round trip",
        EVENTS,
        "command",
        lambda: raw_publish_old(old, url),
        lambda: raw_publish_redispy(url),
        cluster(raw_publish_redispy),
    )
    for sub in (False, True):
        await row(
            "broker publish_many, 100 per call" + (" + subscriber" if sub else ""),
            EVENTS,
            "event",
            lambda s=sub: broker_publish(old.RedisBroker, url, s),
            lambda s=sub: broker_publish(RedisBroker, url, s),
            cluster(functools.partial(broker_publish, RedisBroker, with_subscriber=sub)),
        )
    for concurrent, ops in ((False, ALLOW_SEQUENTIAL), (True, ALLOW_CONCURRENT * ALLOW_ROUNDS)):
        await row(
            f"registry allow(), {'500 concurrent' if concurrent else 'one caller'}",
            ops,
            "call",
            lambda c=concurrent: allow_calls(old.RedisRegistry, url, c),
            lambda c=concurrent: allow_calls(RedisRegistry, url, c),
            cluster(functools.partial(allow_calls, RedisRegistry, concurrent=concurrent)),
        )
    return rows


def format_row(row: dict[str, Any]) -> str:
    cells = [f"{row['row']:<44}"]
    for side in ("resp.py", "redis-py", "redis-py cluster"):
        if side in row:
            r = row[side]
            cells.append(f"{side}: {r['per_s']:>9,.0f}/s {r['cpu_us']:6.1f} µs CPU/{row['unit']}")
    if "resp.py" in row and "redis-py" in row:
        cells.append(f"CPU ratio {row['redis-py']['cpu_us'] / row['resp.py']['cpu_us']:.2f}x")
    return " | ".join(cells)


def free_port() -> int:
    for port in PRIVATE_PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PRIVATE_PORTS}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="redis://host:port (default: a private server via scripts/redis.sh)")
    parser.add_argument("--cluster-url", help="redis+cluster://host:port: add redis-py cluster rows")
    parser.add_argument("--baseline", default=BASELINE, help="commit holding backends/resp.py")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    private: tuple[int, str] | None = None
    url = args.url
    if url is None:
        port, data = free_port(), tempfile.mkdtemp(prefix="lc-bench-redis-")
        started = subprocess.run(
            [str(REPO / "scripts" / "redis.sh"), "start", str(port), data], capture_output=True, text=True
        )
        if started.returncode != 0:
            raise SystemExit(f"scripts/redis.sh start {port} failed: {started.stderr.strip()}")
        private, url = (port, data), started.stdout.strip()
    try:
        rows = uvloop.run(run(url, args.cluster_url, args.baseline, args.repeat))
    finally:
        if private is not None:
            stop = [str(REPO / "scripts" / "redis.sh"), "stop", str(private[0]), private[1]]
            subprocess.run(stop, check=False)
    if args.json is not None:
        meta = {"url": url, "cluster_url": args.cluster_url, "baseline": args.baseline, "repeat": args.repeat}
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
