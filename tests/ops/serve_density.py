"""Memory per connection of `livechat serve` (app mode: a chat session per connection), read from
the server's own /metrics. Not a test: the figures in docs/operations.md §3 come from

    python -m tests.ops.serve_density --conns 15000

Steps: start `livechat serve`, settle, read ``process_resident_memory_bytes`` (baseline); open
N anonymous WebSocket connections from this process (raw upgrade, no library state) and wait until
``livechat_sessions`` = N; read RSS and the machine's kernel slab (both ends of every connection are
on this host); send every connection a ``join`` and read its snapshot; read RSS again. Prints bytes
per connection for both states and the time one /metrics scrape takes at that size (median of 50).

The per-process open-file limit of the test machines (20 000) caps N at about 19 000.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import msgpack
from livechat._edge import encode_frame

from tests.ops.ops_helpers import ops_port

# Scrapes timed at the end; the median is what docs/results.md quotes.
SCRAPES = 50


def metric(admin_port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics").read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.split(" ")[0].split("{")[0] == name
    )


def scrape_ms(admin_port: int) -> float:
    """Wall time of one GET /metrics, body read whole (a fresh connection: the admin server closes)."""
    started = time.perf_counter()
    urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics").read()
    return (time.perf_counter() - started) * 1000


def kernel_slab_bytes() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Slab:"))


async def open_one(port: int, gate: asyncio.Semaphore) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /live HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        return reader, writer


async def wait_metric(admin_port: int, name: str, at_least: float) -> None:
    while metric(admin_port, name) < at_least:
        await asyncio.sleep(0.2)


async def measure(conns: int, settle_s: float) -> None:
    port, admin = ops_port(), ops_port()
    data = tempfile.mkdtemp(prefix="livechat-density-")
    cmd = [sys.executable, "-m", "livechat.cli", "serve", "--port", str(port), "--admin-port", str(admin)]
    proc = subprocess.Popen([*cmd, "--data-dir", data, "--log-level", "warning"])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz").status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        time.sleep(settle_s)
        base_rss, base_slab = metric(admin, "process_resident_memory_bytes"), kernel_slab_bytes()
        gate = asyncio.Semaphore(200)
        clients = await asyncio.gather(*(open_one(port, gate) for _ in range(conns)))
        await wait_metric(admin, "livechat_sessions", conns)
        time.sleep(settle_s)
        open_rss, open_slab = metric(admin, "process_resident_memory_bytes"), kernel_slab_bytes()
        join = encode_frame(msgpack.packb({"op": "join", "stream": "s1"}), True, (1, 2, 3, 4))
        for _, writer in clients:
            writer.write(join)
        await wait_metric(admin, "livechat_joins_total", conns)
        for reader, _ in clients:  # take the snapshots off the sockets: no queue holds memory
            await reader.read(65536)
        time.sleep(settle_s)
        joined_rss = metric(admin, "process_resident_memory_bytes")
        scrapes = sorted(scrape_ms(admin) for _ in range(SCRAPES))
        print(f"connections: {conns}; baseline RSS {base_rss / 2**20:.1f} MiB")
        print(f"session, no stream: {(open_rss - base_rss) / conns:.0f} B/connection of process RSS")
        print(f"joined one stream:  {(joined_rss - base_rss) / conns:.0f} B/connection of process RSS")
        print(f"kernel slab, both ends (machine-wide): {(open_slab - base_slab) / conns:.0f} B/connection")
        print(
            f"one /metrics scrape: median {statistics.median(scrapes):.2f} ms "
            f"(min {scrapes[0]:.2f}, max {scrapes[-1]:.2f} over {SCRAPES}; GET and read, no parsing)"
        )
        for _, writer in clients:
            writer.close()
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=15_000)
    parser.add_argument("--settle-s", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(measure(args.conns, args.settle_s))


if __name__ == "__main__":
    main()
