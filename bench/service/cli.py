"""``python -m bench.service``: the two end-to-end service benchmarks of `livechat serve`.

    python -m bench.service                       # both, full size (about 3 minutes)
    python -m bench.service --only throughput     # (a) comments/s one edge accepts, embedded mode
    python -m bench.service --only latency        # (b) p99 publish -> delivery, two edges on Redis
    python -m bench.service --quick               # small and short: a smoke run (under a minute)
    python -m bench.service --only scale          # (c) one stream, 100 000 viewers, --workers 7 (~8 min)

Writes ``bench/results/service-<date>.json`` (everything) and ``.md`` (the tables); exit code 1
when a run failed or missed its target (``--no-fail`` to always exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.service import report
from bench.service.harness import REPO, wait_quiet
from bench.service.latency import LatencyPlan, run_latency
from bench.service.scale import ScalePlan, run_scale
from bench.service.throughput import ThroughputPlan, run_throughput

QUICK_THROUGHPUT = ThroughputPlan(poster_procs=1, conns_per_proc=4, window=32, warmup_s=1.0, seconds=3.0)
QUICK_LATENCY = LatencyPlan(viewers_b=1_500, viewers_a=500, warmup_s=2.0, seconds=5.0, drain_s=1.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__.split("\n")[0])
    p.add_argument(
        "--only",
        choices=("throughput", "latency", "scale"),
        help="run one benchmark only (scale: only this way)",
    )
    p.add_argument("--quick", action="store_true", help="small and short (a smoke run)")
    p.add_argument("--wait-quiet", type=float, default=60.0, help="wait up to S s for an idle machine first")
    p.add_argument("--out", type=Path, help="JSON path (default bench/results/service-<date>.json)")
    p.add_argument("--no-fail", action="store_true", help="exit 0 even when a target is missed")
    p.add_argument(
        "--edge-set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="passed to every `livechat serve` as --set PATH=VALUE (repeatable), e.g. edge.tick_max_ms=50",
    )
    t = ThroughputPlan()
    p.add_argument("--poster-procs", type=int, default=t.poster_procs)
    p.add_argument("--conns-per-proc", type=int, default=t.conns_per_proc)
    p.add_argument("--window", type=int, default=t.window, help="posts in flight per connection")
    p.add_argument("--streams", type=int, default=t.streams)
    p.add_argument("--throughput-seconds", type=float, default=t.seconds)
    lat = LatencyPlan()
    p.add_argument("--viewers-b", type=int, default=lat.viewers_b)
    p.add_argument("--viewers-a", type=int, default=lat.viewers_a)
    p.add_argument("--rate", type=float, default=lat.rate, help="comments/s posted on edge A")
    p.add_argument("--latency-seconds", type=float, default=lat.seconds)
    sc = ScalePlan()
    p.add_argument("--workers", type=int, default=sc.workers, help="scale: livechat serve --workers N")
    p.add_argument("--viewers", type=int, default=sc.viewers, help="scale: viewers of the one stream")
    p.add_argument("--probes", type=int, default=sc.probes, help="scale: timed viewers, connected last")
    p.add_argument("--scale-seconds", type=float, default=sc.seconds, help="scale: seconds per rate")
    p.add_argument("--no-storm", action="store_true", help="scale: skip the reconnect storm")
    return p


def plans(args: argparse.Namespace) -> tuple[ThroughputPlan, LatencyPlan]:
    edge_args = tuple(arg for assignment in args.edge_set for arg in ("--set", assignment))
    if args.quick:
        return (
            dataclasses.replace(QUICK_THROUGHPUT, edge_args=edge_args),
            dataclasses.replace(QUICK_LATENCY, edge_args=edge_args),
        )
    throughput = ThroughputPlan(
        poster_procs=args.poster_procs,
        conns_per_proc=args.conns_per_proc,
        window=args.window,
        streams=args.streams,
        seconds=args.throughput_seconds,
        edge_args=edge_args,
    )
    latency = LatencyPlan(
        viewers_b=args.viewers_b,
        viewers_a=args.viewers_a,
        rate=args.rate,
        seconds=args.latency_seconds,
        edge_args=edge_args,
    )
    return throughput, latency


async def run(args: argparse.Namespace) -> dict[str, Any]:
    throughput_plan, latency_plan = plans(args)
    result: dict[str, Any] = {
        "command": "python -m bench.service " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        work = Path(tmp)
        if args.only in (None, "throughput"):
            result["throughput_busy_before"] = wait_quiet(args.wait_quiet)
            try:
                result["throughput"] = await run_throughput(throughput_plan, work / "throughput")
            except Exception as exc:
                result["throughput"] = {"plan": dataclasses.asdict(throughput_plan), "error": repr(exc)}
        if args.only in (None, "latency"):
            result["latency_busy_before"] = wait_quiet(args.wait_quiet)
            try:
                result["latency"] = await run_latency(latency_plan, work / "latency")
            except Exception as exc:
                result["latency"] = {"plan": dataclasses.asdict(latency_plan), "error": repr(exc)}
        if args.only == "scale":
            scale_plan = ScalePlan(
                workers=args.workers,
                viewers=args.viewers,
                probes=args.probes,
                seconds=args.scale_seconds,
                storm=not args.no_storm,
                edge_args=tuple(arg for a in args.edge_set for arg in ("--set", a)),
            )
            result["scale_busy_before"] = wait_quiet(args.wait_quiet)
            try:
                result["scale"] = await run_scale(scale_plan, work / "scale")
            except Exception as exc:
                result["scale"] = {
                    "plan": dataclasses.asdict(scale_plan),
                    "error": repr(exc),
                    "traceback": traceback.format_exc(),
                }
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = asyncio.run(run(args))
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    out = args.out or REPO / "bench" / "results" / f"service-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    markdown = report.render(result)
    out.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    ok = report.passed(result)
    return 0 if ok or args.no_fail else 1
