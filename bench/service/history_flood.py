"""Authors' post -> ack latency while anonymous clients flood the edge with history pages (issue 13).

    python -m bench.service.history_flood                  # budgets off, then the defaults
    python -m bench.service.history_flood --seconds 5      # shorter phases (a smoke run)

For each configuration an embedded `livechat serve` is started on a fresh data dir and seeded with
``seed`` comments (so every history page is a full one of ``page`` comments). Then, on one stream:

1. idle: ``authors`` signed-in broadcasters post at ``rate`` comments/s in all for ``seconds``;
2. flood: the same authors, plus ``flooders`` anonymous clients in another process, each keeping
   ``window`` history requests in flight and paging back through the stream as fast as the edge
   answers. A flooder closed by the edge (``4005`` after too many error replies) reconnects at once
   (an attacker does not obey ``retry_ms``; ``--no-reconnect``: it stops, as the issue's clients).

Reported per phase: ack latency p50/p90/p99 (author's clock, send -> ack), authors' posts refused
(by error code; ``no_reply``: none within 10 s), pages served, refusals and reconnects. The
issue's bar: flood p50 within 3x of idle p50. Configurations: ``off`` (every history budget 0 =
unlimited: the code before issue 13) and ``default`` (the shipped budgets). docs/results.md has
the measured table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgpack
import websockets

from bench.fanout.processes import child_env
from bench.service.harness import REPO, CpuMeter, Edge, new_secret

STREAM = "flood-1"
CONFIGS: dict[str, list[str]] = {
    "off": [
        "--set",
        "chat.limits.history_pages_per_minute=0",
        "--set",
        "chat.limits.history_pages_per_minute_per_user=0",
    ],
    "default": [],
}


@dataclass(frozen=True, slots=True)
class FloodPlan:
    authors: int = 4
    # Comments per second, all authors together.
    rate: float = 100.0
    flooders: int = 4
    window: int = 4
    page: int = 100
    seed: int = 2_000
    seconds: float = 12.0
    reconnect: bool = True


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _connect(url: str) -> Any:
    return await websockets.connect(url, compression=None, max_size=None)


async def _join(ws: Any) -> None:
    await ws.send(msgpack.packb({"op": "join", "stream": STREAM, "rid": 1}))
    while True:
        reply = msgpack.unpackb(await ws.recv(), strict_map_key=False)
        if reply.get("rid") == 1:
            return


async def seed(edge: Edge, count: int) -> None:
    ws = await _connect(f"{edge.url}?token={edge.token('seeder', streams={STREAM: 'broadcaster'})}")
    await _join(ws)
    for start in range(0, count, 500):
        for i in range(start, min(start + 500, count)):
            text = f"seed comment {i} " + "x" * 60
            await ws.send(msgpack.packb({"op": "post", "stream": STREAM, "text": text, "cmid": f"s{i}"}))
        acked = 0
        while acked < min(500, count - start):
            if msgpack.unpackb(await ws.recv(), strict_map_key=False).get("t") == "ack":
                acked += 1
    await ws.close()


async def author(
    url: str, name: str, interval: float, stop_at: float, out: list[float], errors: dict[str, int]
) -> None:
    """Post every ``interval`` s until ``stop_at``; append each post's send -> ack in ms to ``out``
    and count refused posts in ``errors`` by code."""
    ws = await _connect(url)
    await _join(ws)
    sent: dict[int, float] = {}
    done = asyncio.Event()

    async def read() -> None:
        async for raw in ws:
            reply = msgpack.unpackb(raw, strict_map_key=False)
            if reply.get("t") == "ack" and reply.get("rid") in sent:
                out.append((time.perf_counter() - sent.pop(reply["rid"])) * 1000.0)
            elif reply.get("t") == "err" and reply.get("rid") in sent:
                del sent[reply["rid"]]
                errors[reply.get("code", "?")] = errors.get(reply.get("code", "?"), 0) + 1
            if done.is_set() and not sent:
                return

    reader = asyncio.create_task(read())
    rid = 0
    next_at = time.perf_counter()
    while next_at < stop_at:
        rid += 1
        sent[rid] = time.perf_counter()
        await ws.send(
            msgpack.packb(
                {"op": "post", "stream": STREAM, "text": f"{name} {rid}", "cmid": f"{name}-{rid}", "rid": rid}
            )
        )
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    done.set()
    try:
        await asyncio.wait_for(reader, 10.0)
    except TimeoutError:
        errors["no_reply"] = errors.get("no_reply", 0) + len(sent)
        reader.cancel()
    await ws.close()


async def measure_authors(edge: Edge, plan: FloodPlan, tag: str) -> tuple[list[float], dict[str, int]]:
    """Every author's ack latencies (ms) and refused posts by error code."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    stop_at = time.perf_counter() + plan.seconds
    interval = plan.authors / plan.rate
    await asyncio.gather(
        *(
            author(
                f"{edge.url}?token={edge.token(f'{tag}-{i}', streams={STREAM: 'broadcaster'})}",
                f"{tag}-{i}",
                interval,
                stop_at,
                latencies,
                errors,
            )
            for i in range(plan.authors)
        )
    )
    return latencies, errors


# -- the flooders (run in their own process: ``--flood``) ------------------------------------------


async def flooder(
    url: str, window: int, page: int, reconnect: bool, stop: asyncio.Event, stats: dict[str, float]
) -> None:
    before: int | None = None
    while not stop.is_set() and (reconnect or not stats["connections"]):
        try:
            ws = await _connect(url)
            await _join(ws)
            for _ in range(window):
                await ws.send(msgpack.packb({"op": "history", "stream": STREAM, "limit": page}))
            async for raw in ws:
                reply = msgpack.unpackb(raw, strict_map_key=False)
                kind = reply.get("t")
                if kind == "history":
                    stats["pages"] += 1
                    items = reply["items"]
                    before = items[-1]["id"] if items and reply["more"] else None
                elif kind == "err":
                    stats["refused"] += 1
                else:
                    continue
                if stop.is_set():
                    break
                request: dict[str, Any] = {"op": "history", "stream": STREAM, "limit": page}
                if before is not None:
                    request["before"] = before
                await ws.send(msgpack.packb(request))
            await ws.close()
        except (websockets.ConnectionClosed, OSError):
            pass
        stats["connections"] += 1
    await stop.wait()


async def run_flooders(url: str, clients: int, window: int, page: int, reconnect: bool) -> dict[str, float]:
    """Flood until stdin closes (the benchmark closes it when the authors are done)."""
    stats: dict[str, float] = {"pages": 0, "refused": 0, "connections": 0}
    stop = asyncio.Event()
    started = time.monotonic()

    async def wait_for_eof() -> None:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        stop.set()

    waiter = asyncio.create_task(wait_for_eof())
    await asyncio.gather(*(flooder(url, window, page, reconnect, stop, stats) for _ in range(clients)))
    await waiter
    stats["seconds"] = round(time.monotonic() - started, 2)
    return stats


# -- one configuration ----------------------------------------------------------------------------


def summary(latencies: list[float], errors: dict[str, int]) -> dict[str, Any]:
    return {
        "acks": len(latencies),
        "errors": errors,
        "p50_ms": round(percentile(latencies, 0.50), 3),
        "p90_ms": round(percentile(latencies, 0.90), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
    }


async def run_config(name: str, plan: FloodPlan, work_dir: Path) -> dict[str, Any]:
    edge = Edge(f"edge-{name}", work_dir / f"edge-{name}", new_secret(), CONFIGS[name])
    await edge.start()
    try:
        await seed(edge, plan.seed)
        idle, idle_errors = await measure_authors(edge, plan, "idle")
        flood = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.service.history_flood",
            "--flood",
            edge.url,
            "--flooders",
            str(plan.flooders),
            "--window",
            str(plan.window),
            "--page",
            str(plan.page),
            *(() if plan.reconnect else ("--no-reconnect",)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=child_env(),
            cwd=REPO,
        )
        await asyncio.sleep(1.0)  # the flood is under way before the authors start
        cpu = CpuMeter({"edge": [edge.pid], "flooders": [flood.pid]})
        cpu.start()
        flooded, flood_errors = await measure_authors(edge, plan, "flood")
        cores = cpu.stop()
        out, _ = await flood.communicate(b"")
        flood_stats = json.loads(out)
    finally:
        await edge.process.stop()
    result = {
        "config": name,
        "edge_args": CONFIGS[name],
        "idle": summary(idle, idle_errors),
        "flood": summary(flooded, flood_errors),
        "flooders": {**flood_stats, "pages_per_s": round(flood_stats["pages"] / flood_stats["seconds"], 1)},
        "cores": {k: round(v, 3) for k, v in cores.items()},
    }
    result["p50_ratio"] = round(result["flood"]["p50_ms"] / result["idle"]["p50_ms"], 2)
    return result


async def main_async(plan: FloodPlan, configs: list[str]) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="history-flood-") as tmp:
        for name in configs:
            result = await run_config(name, plan, Path(tmp))
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.service.history_flood", description=__doc__.split("\n")[0]
    )
    defaults = FloodPlan()
    p.add_argument("--configs", default="off,default", help="comma-separated: off, default")
    p.add_argument("--authors", type=int, default=defaults.authors)
    p.add_argument("--rate", type=float, default=defaults.rate)
    p.add_argument("--flooders", type=int, default=defaults.flooders)
    p.add_argument("--window", type=int, default=defaults.window)
    p.add_argument("--page", type=int, default=defaults.page)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--seconds", type=float, default=defaults.seconds)
    p.add_argument("--no-reconnect", action="store_true", help="a flooder the edge closes stops")
    p.add_argument("--flood", metavar="URL", help=argparse.SUPPRESS)  # the flooders' process
    args = p.parse_args(argv)
    if args.flood:
        stats = asyncio.run(
            run_flooders(args.flood, args.flooders, args.window, args.page, not args.no_reconnect)
        )
        print(json.dumps(stats))
        return 0
    plan = FloodPlan(
        args.authors,
        args.rate,
        args.flooders,
        args.window,
        args.page,
        args.seed,
        args.seconds,
        not args.no_reconnect,
    )
    results = asyncio.run(main_async(plan, args.configs.split(",")))
    print(f"plan: {json.dumps(asdict(plan))}")
    print(
        "| config | idle p50 / p99 ms | flood p50 / p99 ms | p50 ratio | acks (refused posts) | pages/s "
        "| refused requests | connections | edge cores |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        f = r["flooders"]
        refused_posts = sum(r["idle"]["errors"].values()) + sum(r["flood"]["errors"].values())
        print(
            f"| {r['config']} | {r['idle']['p50_ms']} / {r['idle']['p99_ms']} | {r['flood']['p50_ms']} / "
            f"{r['flood']['p99_ms']} | {r['p50_ratio']} | {r['idle']['acks'] + r['flood']['acks']} "
            f"({refused_posts}) | {f['pages_per_s']} | {f['refused']} | {f['connections']} | "
            f"{r['cores']['edge']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
