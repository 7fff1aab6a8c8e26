"""One-room broadcast server on picows + uvloop: every message any client sends goes to every connection.

picows has no broadcast helper; its idiom is a listener per connection and ``transport.send`` per
peer, with the payload copied out of the read buffer once. Run: ``python -m bench.peers.picows_broadcast
--port 19001``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

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

# Same accept queue livechat gets by default (EdgeConfig.listen_backlog); asyncio's default of 100
# drops SYNs when thousands of viewers connect at once.
LISTEN_BACKLOG = 4096


class Room:
    """Every open connection of the server."""

    def __init__(self) -> None:
        self.members: set[WSTransport] = set()

    def broadcast(self, msg_type: WSMsgType, payload: bytes) -> None:
        for transport in self.members:
            transport.send(msg_type, payload)


class Member(WSListener):
    """One connection: joins the room on open, broadcasts every whole message it receives."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.fragments: list[bytes] = []
        self.fragmented_type = WSMsgType.BINARY

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.room.members.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.room.members.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif msg_type == WSMsgType.BINARY or msg_type == WSMsgType.TEXT:
            if frame.fin:
                self.room.broadcast(msg_type, frame.get_payload_as_bytes())
            else:
                self.fragmented_type = msg_type
                self.fragments = [frame.get_payload_as_bytes()]
        elif msg_type == WSMsgType.CONTINUATION and self.fragments:
            self.fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                payload = b"".join(self.fragments)
                self.fragments = []
                self.room.broadcast(self.fragmented_type, payload)


async def serve(host: str, port: int) -> None:
    room = Room()

    def member_factory(_request: WSUpgradeRequest) -> Member:
        return Member(room)

    server = await ws_create_server(member_factory, host, port, backlog=LISTEN_BACKLOG)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with server:
        await stop
        # Server.wait_closed() waits for open connections, so say goodbye to them first.
        for transport in list(room.members):
            transport.send_close(WSCloseCode.GOING_AWAY)
            transport.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
