"""One measured load-test run: start `livechat serve`, run locust against it, and report what the
server spent per delivered comment (CPU from /proc) next to locust's latencies.

    python loadtest/run.py --users 2000 --spawn-rate 50 --time 3m --port 18600 --out loadtest/results.md

The server and the load generator share the machine: both CPU figures are reported, so it is visible
when the generator (not the server) was the limit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (its /proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"livechat serve exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("livechat serve did not start")


def wait_for_group(pgid: int, timeout_s: float) -> None:
    """Wait until no process of the group is left; SIGKILL what remains after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--spawn-rate", type=float, required=True, help="the ramp: users started per second")
    parser.add_argument("--time", required=True, help="locust run time, e.g. 3m")
    parser.add_argument("--port", type=int, required=True, help="server port (locust's master: +1)")
    parser.add_argument("--processes", type=int, default=1, help="locust worker processes")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `livechat serve` argument")
    parser.add_argument("--out", type=Path, help="append the markdown report here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="livechat-loadtest-"))
    data = work / "data"
    serve_cmd = [sys.executable, "-m", "livechat.cli", "serve", "--port", str(args.port)]
    serve_cmd += ["--data-dir", str(data), "--admin-port", "0", *args.serve_arg]
    with open(work / "serve.log", "wb") as serve_log:
        server = subprocess.Popen(serve_cmd, stdout=serve_log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(args.port, server)
            summary = work / "summary.json"
            locust_cmd = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless"]
            locust_cmd += ["--only-summary", "--host", f"ws://127.0.0.1:{args.port}", "-u", str(args.users)]
            locust_cmd += ["-r", str(args.spawn_rate), "-t", args.time, "--stop-timeout", "10"]
            locust_cmd += ["--livechat-secret-file", str(data / "hmac-secret")]
            locust_cmd += ["--livechat-summary", str(summary), "--csv", str(work / "locust")]
            if args.processes > 1:
                # Its own master port (default 5557): workers of another run must not join this one.
                master = str(args.port + 1)
                locust_cmd += ["--processes", str(args.processes), "--master-bind-port", master]
                locust_cmd += ["--master-port", master]
            server_cpu0 = cpu_seconds(server.pid)
            started = time.monotonic()
            before = os.times()
            with open(work / "locust.log", "w") as locust_log:
                # Its own session: the worker processes (--processes) outlive the master by a few
                # seconds while they close their connections; the server stays up until they are gone.
                locust = subprocess.Popen(
                    locust_cmd, stdout=locust_log, stderr=subprocess.STDOUT, start_new_session=True
                )
                code = locust.wait()
                wait_for_group(locust.pid, 60)
            after = os.times()
            wall = time.monotonic() - started
            server_cpu = cpu_seconds(server.pid) - server_cpu0
            server_rss = rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(30)
    totals: dict[str, Any] = json.loads(summary.read_text()) if summary.exists() else {}
    # The locustfile reports its processes' CPU (workers included); the children's times cover a
    # single-process run in case the summary is missing.
    waited = after.children_user - before.children_user + after.children_system - before.children_system
    locust_cpu = max(float(totals.get("load_generator_cpu_s", 0.0)), waited)
    report = render(args, totals, code, wall, server_cpu, server_rss, locust_cpu, work)
    print(report)
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(report + "\n")
    return code


def render(
    args: argparse.Namespace,
    totals: dict[str, Any],
    code: int,
    wall: float,
    server_cpu: float,
    server_rss: float,
    locust_cpu: float,
    work: Path,
) -> str:
    delivered = totals.get("comments_delivered", 0)
    lines = [
        f"### {args.users} users, ramp {args.spawn_rate}/s, {args.time} ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"Command: `python loadtest/run.py --users {args.users} --spawn-rate {args.spawn_rate} "
        f"--time {args.time} --port {args.port}`"
        + (f" (`--processes {args.processes}`)" if args.processes > 1 else ""),
        f"Machine: {os.cpu_count()} cores, {platform.platform()}; load average at the end "
        f"{os.getloadavg()[0]:.2f}. Locust exit code {code}; logs in {work}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| users connected | {totals.get('users_connected', 0)} |",
        f"| comments delivered to clients | {delivered} |",
        f"| connections dropped / reconnects | {totals.get('connections_dropped', 0)} / "
        f"{totals.get('reconnects', 0)} |",
        f"| server CPU (user+sys) over {wall:.0f} s wall | {server_cpu:.1f} s "
        f"({100 * server_cpu / wall:.0f} % of one core) |",
        f"| server CPU per delivered comment | "
        f"{(1e6 * server_cpu / delivered) if delivered else float('nan'):.1f} µs |",
        f"| server RSS at the end | {server_rss:.0f} MiB |",
        f"| load generator (locust) CPU | {locust_cpu:.1f} s ({100 * locust_cpu / wall:.0f} % of one core) |",
        "",
        "| request | count | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("connect+join", "post (ack)", "react (ok)", "deliver (post->viewer)"):
        row = totals.get(name)
        if row:
            lines.append(
                f"| {name} | {row['requests']} | {row['failures']} | {row['rps']} | {row['p50_ms']} | "
                f"{row['p95_ms']} | {row['p99_ms']} | {row['max_ms']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
