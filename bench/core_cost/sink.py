"""Viewers that upgrade and then read and discard everything: the cheapest client there is, so the
server's own cost per accept and per delivery shows with little client noise on 2 cores."""

from __future__ import annotations

import asyncio
import sys

import uvloop

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Sink(asyncio.Protocol):
    received = 0
    upgraded = 0

    def __init__(self) -> None:
        self.first = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(REQUEST)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if self.first:
            self.first = False
            Sink.upgraded += data.startswith(b"HTTP/1.1 101")
        Sink.received += len(data)


async def main(conns: int, port: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(conns):
        await loop.create_connection(Sink, "127.0.0.1", port)
    while Sink.upgraded < conns:
        await asyncio.sleep(0.05)
    print("upgraded", Sink.upgraded, flush=True)
    # Report bytes received on demand (a line on stdin), so the harness can check delivery.
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        print("received", Sink.received, flush=True)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
