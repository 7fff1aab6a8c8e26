"""A broadcast server for testing the harness itself: optional tick-frame batching and deliberate loss.

``--tick-ms N`` batches every message received within N ms into one livechat-shaped tick frame
(``{"t": "tick", "s": "fanout", "q": seq, "e": [message, ...]}``), so the harness's tick path is
tested without the compiled core. ``--drop-every K`` silently skips every K-th message for every
connection, so a test can prove the harness sees loss.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import msgpack  # type: ignore[import-untyped]
import uvloop
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)


class Room:
    def __init__(self, tick_ms: int, drop_every: int) -> None:
        self.members: set[WSTransport] = set()
        self.tick_ms = tick_ms
        self.drop_every = drop_every
        self.received = 0
        self.pending: list[bytes] = []
        self.tick_seq = 0

    def on_message(self, payload: bytes) -> None:
        self.received += 1
        if self.drop_every and self.received % self.drop_every == 0:
            return
        if self.tick_ms:
            self.pending.append(payload)
        else:
            for transport in self.members:
                transport.send(WSMsgType.BINARY, payload)

    async def tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_ms / 1000)
            if not self.pending:
                continue
            self.tick_seq += 1
            frame = msgpack.packb({"t": "tick", "s": "fanout", "q": self.tick_seq, "e": self.pending})
            self.pending = []
            for transport in self.members:
                transport.send(WSMsgType.BINARY, frame)


class Member(WSListener):
    def __init__(self, room: Room) -> None:
        self.room = room

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.room.members.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.room.members.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type == WSMsgType.BINARY:
            self.room.on_message(frame.get_payload_as_bytes())


async def serve(host: str, port: int, tick_ms: int, drop_every: int) -> None:
    room = Room(tick_ms, drop_every)

    def member_factory(_request: WSUpgradeRequest) -> Member:
        return Member(room)

    server = await ws_create_server(member_factory, host, port, backlog=4096)
    ticker = asyncio.create_task(room.tick_forever()) if tick_ms else None
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with server:
        await stop
        if ticker is not None:
            ticker.cancel()
        for transport in list(room.members):
            transport.send_close(WSCloseCode.GOING_AWAY)
            transport.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tick-ms", type=int, default=0)
    parser.add_argument("--drop-every", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.tick_ms, args.drop_every))


if __name__ == "__main__":
    main()
