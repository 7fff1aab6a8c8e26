"""Server CPU per accepted connection and per delivered message of `livechat fanout`, measured
from /proc with the cheapest possible viewers (bench/core_cost/sink.py) and one publisher.

    python -m bench.core_cost --conns 4000 --rates 2,20,100,200 --seconds 8 [--perf DIR]

Complements bench.fanout (which runs peers side by side with latency-measuring clients): here
the client does almost nothing, so what is left is the server and the kernel. ``--perf`` records
a cpu-clock profile of the server during each rate (perf must be installed).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

from livechat._edge import encode_frame

from tests.ports import free_port

HZ = os.sysconf("SC_CLK_TCK")
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def cpu_seconds(pid: int) -> tuple[float, float]:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) / HZ, int(fields[12]) / HZ


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def publish(port: int, rate: float, seconds: float) -> int:
    """Send 100-byte binary messages at ``rate``/s from one masked client; returns how many."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(UPGRADE)
    s.recv(4096)
    frame = encode_frame(b"x" * 100, True, mask=[1, 2, 3, 4])
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < seconds:
        s.sendall(frame)
        n += 1
        time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
    s.close()
    return n


def received_bytes(sinks: list[subprocess.Popen[str]]) -> int:
    total = 0
    for sink in sinks:
        assert sink.stdin is not None and sink.stdout is not None
        sink.stdin.write("\n")
        sink.stdin.flush()
        total += int(sink.stdout.readline().split()[1])
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conns", type=int, default=4000)
    p.add_argument("--rates", default="2,20,100,200")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--clients", type=int, default=4, help="sink processes")
    p.add_argument("--livechat-args", default="")
    p.add_argument("--perf", default=None, help="directory for perf.data per rate")
    args = p.parse_args()
    port = free_port()
    cmd = ["livechat", "fanout", "--port", str(port), *args.livechat_args.split()]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    sinks: list[subprocess.Popen[str]] = []
    try:
        time.sleep(1.0)
        rss0, (u0, s0) = rss_kib(server.pid), cpu_seconds(server.pid)
        per = args.conns // args.clients
        for _ in range(args.clients):
            sink = [sys.executable, "-m", "bench.core_cost.sink", str(per), str(port)]
            sinks.append(subprocess.Popen(sink, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for sink in sinks:
            assert sink.stdout is not None
            line = sink.stdout.readline().split()
            if line != ["upgraded", str(per)]:
                raise RuntimeError(f"a sink process did not upgrade all {per} connections: {line}")
        time.sleep(1.0)
        n = per * args.clients
        u1, s1 = cpu_seconds(server.pid)
        rss1 = rss_kib(server.pid)
        print(f"`{' '.join(cmd)}`, {n} sink viewers in {args.clients} processes\n")
        print("| measure | value |\n|---|---|")
        print(
            f"| server CPU per accepted connection | {((u1 - u0) + (s1 - s0)) / n * 1e6:.1f} µs "
            f"(user {(u1 - u0) / n * 1e6:.1f}, sys {(s1 - s0) / n * 1e6:.1f}) |"
        )
        print(f"| server RSS per idle connection | {(rss1 - rss0) * 1024 / n:.0f} B |\n")
        print("| msg/s | server CPU per delivered message | user | sys | server cores |")
        print("|---|---|---|---|---|")
        for rate in (float(r) for r in args.rates.split(",")):
            perf = None
            if args.perf:
                os.makedirs(args.perf, exist_ok=True)
                out = os.path.join(args.perf, f"perf-{rate:g}.data")
                perf = subprocess.Popen(
                    ["perf", "record", "-q", "-e", "cpu-clock", "-g", "-o", out, "-p", str(server.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            before = received_bytes(sinks)
            ua, sa = cpu_seconds(server.pid)
            sent = publish(port, rate, args.seconds)
            time.sleep(0.5)
            ub, sb = cpu_seconds(server.pid)
            # Every viewer gets every 100-byte message inside tick frames: at least this much.
            if received_bytes(sinks) - before < sent * n * 100:
                raise RuntimeError(f"viewers received less than was published at {rate:g} msg/s")
            if perf is not None:
                perf.send_signal(2)
                perf.wait()
            delivered = sent * n
            total = (ub - ua) + (sb - sa)
            print(
                f"| {rate:g} | {total / delivered * 1e6:.2f} µs | {(ub - ua) / delivered * 1e6:.2f} | "
                f"{(sb - sa) / delivered * 1e6:.2f} | {total / args.seconds:.2f} |"
            )
    finally:
        for sink in sinks:
            sink.kill()
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
