"""Sink viewers: real WebSocket connections that join a stream and read everything the server
sends, but parse none of it. ``python -m bench.service.sinks`` (steered like ``loadgen``).

Why: with 15 000 viewers x 20 comments/s, parsing every frame in Python costs the load generator
about a core of the machine's two, and the latency then measured is mostly the load generator's
own queueing. The server cannot tell a sink from a parsing viewer: it writes the same frames to
the same sockets. A sink reads its socket in bulk every ``read_interval_s`` (the kernel holds the
frames meanwhile: ~120 bytes x 20/s x the interval, far below the socket buffer, so the server
never sees backpressure), counts the bytes, and sends a ping every ``PING_EVERY_S`` so the
server's idle timeout never closes it. Latency is measured on the parsing viewers of ``loadgen``
that share the edge with the sinks.

Ops: ``connect`` (host, port, count, stream, source_ip, concurrency), ``status`` (bytes read, open
sockets, disconnects), and ``exit``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import struct
import time
from collections import Counter
from typing import Any

import msgpack  # type: ignore[import-untyped]
import uvloop

from bench.service.loadgen import serve_requests

# A client frame must be masked (RFC 6455 §5.3); 20 s is well inside the server's idle timeout.
PING_EVERY_S = 20.0
READ_BYTES = 1 << 16


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked frame (payloads under 126 bytes are all a sink sends)."""
    if len(payload) >= 126:
        raise ValueError("sink frames are small")
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


class SinkGenerator:
    def __init__(self, read_interval_s: float) -> None:
        self.read_interval_s = read_interval_s
        self.socks: list[socket.socket] = []
        self.bytes_read = 0
        self.disconnects = 0
        self.errors: Counter[str] = Counter()
        self._reader: asyncio.Task[None] | None = None

    async def _open(self, host: str, port: int, stream: str, source_ip: str) -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((source_ip, 0))
        try:
            await loop.sock_connect(sock, (host, port))
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET /live HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            await loop.sock_sendall(sock, request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk:
                    raise ConnectionError("closed during the upgrade")
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            self.bytes_read += len(head) - head.index(b"\r\n\r\n") - 4
            join = msgpack.packb({"op": "join", "stream": stream})
            await loop.sock_sendall(sock, client_frame(0x2, join))
        except BaseException:
            sock.close()
            raise
        return sock

    async def connect(
        self, host: str, port: int, count: int, stream: str, source_ip: str, concurrency: int
    ) -> dict[str, Any]:
        gate = asyncio.Semaphore(concurrency)
        started = time.monotonic()
        failed: Counter[str] = Counter()
        # Read from the first connection on: a socket left unread while 15 000 others connect
        # fills up with ticks (the viewer count changes every 250 ms while they join), and the edge
        # rightly closes it as a slow consumer.
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever())

        async def one() -> None:
            async with gate:
                try:
                    sock = await self._open(host, port, stream, source_ip)
                    # Not `self.socks.append(await ...)`: that binds the list before the await,
                    # and the reader replaces the list meanwhile (the socket was lost, then
                    # closed by the garbage collector: ~3 % of 100 000 viewers).
                    self.socks.append(sock)
                except Exception as exc:
                    failed[f"{type(exc).__name__}: {exc}"[:120]] += 1

        await asyncio.gather(*(one() for _ in range(count)))
        return {
            "connected": count - sum(failed.values()),
            "failed": sum(failed.values()),
            "errors": dict(failed.most_common(5)),
            "seconds": time.monotonic() - started,
        }

    def _read_all(self) -> None:
        alive = []
        for sock in self.socks:
            try:
                while True:
                    data = sock.recv(READ_BYTES)
                    if not data:
                        raise ConnectionResetError("closed by the server")
                    self.bytes_read += len(data)
                    if len(data) < READ_BYTES:
                        break
            except BlockingIOError:
                pass
            except OSError:
                self.disconnects += 1
                sock.close()
                continue
            alive.append(sock)
        self.socks = alive

    async def _read_forever(self) -> None:
        last_ping = time.monotonic()
        ping = client_frame(0x9, b"")
        while True:
            await asyncio.sleep(self.read_interval_s)
            self._read_all()
            if time.monotonic() - last_ping >= PING_EVERY_S:
                last_ping = time.monotonic()
                for sock in self.socks:
                    try:
                        sock.send(ping)
                    except OSError:
                        pass  # counted by the next read

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.pop("op")
        if op == "connect":
            return await self.connect(**request)
        if op == "status":
            self._read_all()
            return {"open": len(self.socks), "bytes_read": self.bytes_read, "disconnects": self.disconnects}
        raise ValueError(f"unknown op {op!r}")

    def shutdown(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for sock in self.socks:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="bench.service sink viewers")
    parser.add_argument("--read-interval", type=float, default=0.25, help="seconds between bulk reads")
    args = parser.parse_args()
    uvloop.run(serve_requests(SinkGenerator(args.read_interval)))


if __name__ == "__main__":
    main()
