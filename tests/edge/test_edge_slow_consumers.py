"""1 000 connections that never read while a stream publishes at 200 msg/s for 30 s.

The edge runs in its own process (``edge_process.py``, app mode, every connection subscribed to
one stream), so its RSS is measured alone. Caps for this test (``CONFIG``): soft 16 KiB, hard
64 KiB, write timeout 5 s. Events are 500 random bytes (incompressible), one priority event a
second; at the 10 ms tick that is ~100 tick frames/s of ~1 KB.

What must hold:
- every reading client gets every tick: ``q`` contiguous, every event and priority event once,
  in publish order;
- the non-readers are degraded (stale ticks skipped: ``ticks_skipped`` > 0) and then closed,
  each with 4009 (no write progress for 5 s) or 4008 (queue over 64 KiB), and well before the
  publishing ends; when one finally reads, it finds whole tick frames and then the end of the
  connection;
- the server's peak RSS (VmHWM) stays under its RSS before any connection + 1 000 x 64 KiB.

Non-readers advertise a 4 KiB receive buffer and an Ethernet MSS (see ``edge_wire.ETHERNET_MSS``),
so each pins ~130 KiB of kernel buffer (~130 MB for all), not loopback's 4 MiB.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
from edge_wire import ETHERNET_MSS, RawClient, open_socket, upgrade_request

NON_READERS = 1_000
READERS = 16
RATE = 200
SECONDS = 30
EVENT_BYTES = 500
PRIORITY_EVERY = RATE  # one priority event a second
SOFT, HARD = 16 * 1024, 64 * 1024
WRITE_TIMEOUT_MS = 5_000
CONFIG = {
    "send_queue_soft_bytes": SOFT,
    "send_queue_hard_bytes": HARD,
    "write_timeout_ms": WRITE_TIMEOUT_MS,
    "close_linger_ms": 1_000,
    "tick_min_ms": 10,
    # No pings during the run: the 30 s ping interval default would make every reader answer one.
    "ping_interval_ms": 120_000,
    "idle_timeout_ms": 300_000,
}


class EdgeProcess:
    """The edge subprocess and its JSON-line command channel."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        # The "publish finished" line comes whenever publishing ends, between other replies.
        self.published: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.reader_task = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: dict[str, Any]) -> EdgeProcess:
        script = Path(__file__).with_name("edge_process.py")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            json.dumps(config),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, "edge process exited before listening"
        return cls(proc, json.loads(line)["port"])

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            reply = json.loads(line)
            if "published" in reply:
                self.published.set_result(reply)
            else:
                self.replies.put_nowait(reply)

    async def call(self, cmd: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self.replies.get(), timeout)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.call({"cmd": "stop"}, timeout=10)
                await asyncio.wait_for(self.proc.wait(), 10)
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                self.proc.kill()
                await self.proc.wait()
        self.reader_task.cancel()


async def open_non_reader(port: int) -> socket.socket:
    """Upgrade, read the 101 (and nothing after it), never read again."""
    sock = await open_socket(port, rcvbuf=4096, maxseg=ETHERNET_MSS)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, upgrade_request())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def read_ticks(client: RawClient, events: int, priority: int) -> tuple[list[int], list[Any], list[Any]]:
    """Tick seqs, normal events and priority events until all arrived."""
    seqs: list[int] = []
    normal: list[Any] = []
    urgent: list[Any] = []
    while len(normal) < events or len(urgent) < priority:
        try:
            message = await client.recv_message(timeout=15)
        except TimeoutError:
            gaps = [(a, b) for a, b in itertools.pairwise(seqs) if b != a + 1]
            raise AssertionError(
                f"reader stalled: {len(normal)}/{events} events, {len(urgent)}/{priority} priority, "
                f"last q {seqs[-1:]}, gaps in q {gaps[:5]}"
            ) from None
        tick = msgpack.unpackb(message.data)
        seqs.append(tick["q"])
        (urgent if tick.get("p") else normal).extend(tick["e"])
    return seqs, normal, urgent


async def drain_to_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while True:
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 10)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def whole_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the complete server frames at the start of ``data`` (a frame cut off
    by the close is dropped)."""
    frames, pos = [], 0
    while len(data) - pos >= 2:
        n, head = data[pos + 1] & 0x7F, 2
        if n == 126:
            if len(data) - pos < 4:
                break
            n, head = struct.unpack_from("!H", data, pos + 2)[0], 4
        elif n == 127:
            if len(data) - pos < 10:
                break
            n, head = struct.unpack_from("!Q", data, pos + 2)[0], 10
        if len(data) - pos < head + n:
            break
        frames.append((data[pos] & 0x0F, data[pos + head : pos + head + n]))
        pos += head + n
    return frames


@pytest.mark.slow
async def test_non_readers_are_degraded_then_closed_while_readers_get_every_tick() -> None:
    edge = await EdgeProcess.start(CONFIG)
    non_readers: list[socket.socket] = []
    readers: list[RawClient] = []
    try:
        baseline = await edge.call({"cmd": "stats"})
        for _ in range(NON_READERS // 100):
            non_readers += await asyncio.gather(*[open_non_reader(edge.port) for _ in range(100)])
        offer = "permessage-deflate"
        readers = [
            await RawClient.connect(edge.port, extensions=offer if i % 2 else None) for i in range(READERS)
        ]
        for _ in range(100):
            if (await edge.call({"cmd": "stats"}))["opens"] == NON_READERS + READERS:
                break
            await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        priority_total = RATE * SECONDS // PRIORITY_EVERY
        reading = [asyncio.create_task(read_ticks(r, RATE * SECONDS, priority_total)) for r in readers]
        publish = {"stream": "slow", "rate": RATE, "seconds": SECONDS, "size": EVENT_BYTES}
        assert await edge.call({"cmd": "publish", **publish, "priority_every": PRIORITY_EVERY})

        samples: list[dict[str, Any]] = []
        while not edge.published.done():
            await asyncio.wait([edge.published], timeout=1.0)
            samples.append({**await edge.call({"cmd": "stats"}), "t": loop.time() - started})
        done = edge.published.result()
        results = await asyncio.gather(*reading)
        final = await edge.call({"cmd": "stats"})
    finally:
        await edge.stop()
    reader_ports = {r.sock.getsockname()[1] for r in readers}
    closes = {int(peer.rsplit(":", 1)[1]): code for peer, code in final["closes"].items()}

    # Readers: every tick, every event, in order; never closed.
    expected = list(range(RATE * SECONDS))
    for seqs, normal, urgent in results:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "q contiguous: no tick skipped"
        assert [e[0] for e in normal] == expected
        assert all(len(e[1]) == EVENT_BYTES for e in normal)
        assert urgent == [["p", i] for i in range(0, RATE * SECONDS, PRIORITY_EVERY)]
    assert not reader_ports & set(closes), "a reading client was closed"

    # Non-readers: degraded, then each closed with a slow-consumer code before publishing ended.
    assert final["ticks_skipped"] > 0
    assert final["slow_closes"] + final["write_timeouts"] == NON_READERS
    non_reader_codes = [closes.get(s.getsockname()[1]) for s in non_readers]
    assert all(c in (4008, 4009) for c in non_reader_codes), {
        c: non_reader_codes.count(c) for c in non_reader_codes
    }
    closed_at = next(s["t"] for s in samples if s["slow_closes"] + s["write_timeouts"] == NON_READERS)
    assert closed_at < SECONDS, closed_at
    # Reading at last: tick frames (their seqs rising), maybe the close frame, then the end.
    for sock in non_readers[:50]:
        frames = whole_frames(await drain_to_eof(sock))
        seqs = [msgpack.unpackb(p)["q"] for op, p in frames if op == 0x2]
        assert seqs and seqs == sorted(set(seqs))
        closing = [struct.unpack("!H", p[:2])[0] for op, p in frames if op == 0x8]
        assert set(closing) <= {4008, 4009} and {op for op, _ in frames} <= {0x2, 0x8}
    for sock in non_readers:
        sock.close()

    # Memory: the peak stays under the cap arithmetic.
    peak = max(final["hwm"], *(s["rss"] for s in samples))
    budget = baseline["rss"] + NON_READERS * HARD
    print(
        f"\nslow consumers: baseline RSS {baseline['rss'] / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB "
        f"(budget {budget / 2**20:.1f} MiB); ticks_skipped {final['ticks_skipped']}, "
        f"write_timeouts {final['write_timeouts']}, slow_closes {final['slow_closes']}, "
        f"all closed by t={closed_at:.1f}s; publisher max lag {done['max_lag_ms']} ms"
    )
    assert peak <= budget
