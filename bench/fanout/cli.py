"""``python -m bench.fanout``: run every target side by side, write JSON and markdown results."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.fanout import procstat, rust_loadgen
from bench.fanout.report import render
from bench.fanout.scenario import FULL, QUICK, Plan, run_target
from bench.fanout.targets import DEFAULT_TARGETS, parse_targets
from tests.ports import free_port

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
PORT_RANGE = range(19100, 20000)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.conns} viewers, short steps")
    parser.add_argument("--targets", default=DEFAULT_TARGETS)
    parser.add_argument("--conns", type=int, help="viewers per server (≤ 15 000)")
    parser.add_argument("--workers", type=int, help="load-generator processes for the viewers")
    parser.add_argument("--steady-seconds", type=float)
    parser.add_argument("--step-seconds", type=float)
    parser.add_argument("--ladder", help="comma-separated msg/s rates after the steady step")
    parser.add_argument(
        "--livechat-args",
        default="",
        help='extra flags for `livechat fanout`, e.g. "--tick-max-ms 250 --io-threads 2"',
    )
    parser.add_argument(
        "--loadgen",
        choices=rust_loadgen.CHOICES,
        help="viewer load generator: rust (bench/loadgen_rs, default when built) or python",
    )
    parser.add_argument("--out", type=Path, help="JSON path (markdown goes beside it as .md)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each target, wait up to this long for other processes to use < 0.3 cores",
    )
    return parser.parse_args(argv)


def build_plan(args: argparse.Namespace, loadgen: str = "python") -> Plan:
    plan = QUICK if args.quick else FULL
    changes: dict[str, Any] = {"loadgen": loadgen}
    if args.conns is not None:
        changes["conns"] = args.conns
    if args.workers is not None:
        changes["workers"] = args.workers
    if args.steady_seconds is not None:
        changes["steady_s"] = args.steady_seconds
    if args.step_seconds is not None:
        changes["step_s"] = args.step_seconds
    if args.ladder:
        changes["ladder"] = tuple(float(rate) for rate in args.ladder.split(","))
    return dataclasses.replace(plan, **changes)


def versions() -> dict[str, str]:
    found = {}
    for name in ("livechat", "picows", "websockets", "uvloop", "aiofastnet", "msgpack"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["python"] = sys.version.split()[0]
    found["node"] = _node_version()
    ws_package = Path.home() / ".cache/livechat-bench/node-ws/node_modules/ws/package.json"
    try:
        found["ws (node)"] = json.loads(ws_package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        found["ws (node)"] = "not installed"
    return found


def _node_version() -> str:
    try:
        done = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    return done.stdout.strip() or "not installed"


async def run(args: argparse.Namespace, loadgen: str, loadgen_note: str) -> dict[str, Any]:
    plan = build_plan(args, loadgen)
    targets = parse_targets(args.targets, tuple(shlex.split(args.livechat_args)))
    started = datetime.datetime.now().astimezone()
    run_info: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "bench.fanout", *sys.argv[1:]]),
        "plan": dataclasses.asdict(plan),
        "versions": versions(),
        "loadgen": {"viewers": loadgen, "publisher": "python", "note": loadgen_note},
        "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "kernel": os.uname().release},
        "results": [],
    }
    log_dir = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    run_info["log_dir"] = str(log_dir)
    used: set[int] = set()  # each target its own port: the previous one may linger in TIME_WAIT
    for index, target in enumerate(targets):
        port = free_port(PORT_RANGE, plan.host, exclude=used)
        used.add(port)
        busy = await wait_quiet(args.wait_quiet) if args.wait_quiet else await wait_quiet(0, window_s=1.0)
        print(
            f"[{target.name}] port {port}, {plan.conns} viewers; machine busy {busy:.2f} cores before start",
            file=sys.stderr,
            flush=True,
        )
        result = await run_target(target, plan, port, index, log_dir)
        result["machine_busy_before_cores"] = busy
        run_info["results"].append(result)
        print(f"[{target.name}] {headline(result)}", file=sys.stderr, flush=True)
    run_info["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    if not any("error" in result for result in run_info["results"]):
        shutil.rmtree(log_dir)  # logs are kept only when something went wrong
        run_info["log_dir"] = None
    return run_info


async def wait_quiet(limit_s: float, quiet_cores: float = 0.3, window_s: float = 3.0) -> float:
    """Wait until the machine's busy cores over ``window_s`` fall below ``quiet_cores``; returns the last."""
    deadline = time.monotonic() + limit_s
    while True:
        before = procstat.machine_busy_seconds()
        await asyncio.sleep(window_s)
        busy = (procstat.machine_busy_seconds() - before) / window_s
        if busy < quiet_cores or time.monotonic() > deadline:
            return busy


def headline(result: dict[str, Any]) -> str:
    if "error" in result and "steady" not in result:
        return f"error: {result['error']}"
    steady = result["steady"]
    text = (
        f"RSS/conn {result['rss_per_idle_conn_bytes'] / 1024:.2f} KB, CPU/accept "
        f"{result['cpu_per_accept_us']:.1f} µs, steady: delivered {steady['delivered_ratio'] * 100:.2f} %, "
        f"p99 {_ms(steady['p99_ms'])}, {_us(steady['server_cpu_per_delivered_us'])}/delivery; "
        f"max ok rate {result.get('max_ok_rate')} msg/s"
    )
    return text + (f"; error: {result['error']}" if "error" in result else "")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} µs"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        loadgen, loadgen_note = rust_loadgen.choose(args.loadgen)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[loadgen] {loadgen_note}", file=sys.stderr, flush=True)
    info = asyncio.run(run(args, loadgen, loadgen_note))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or RESULTS_DIR / f"fanout-{stamp}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=1) + "\n")
    out.with_suffix(".md").write_text(render(info))
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 1 if any("error" in r for r in info["results"]) else 0
