"""One-room broadcast server on websockets (asyncio API) + uvloop, using ``websockets.broadcast``.

This is the pattern of the websockets broadcast guide: a set of connections, one handler task per
connection iterating its messages, and ``broadcast(CONNECTIONS, message)``, which writes to every
connection without awaiting and skips connections whose write buffer is full. Run:
``python -m bench.peers.websockets_broadcast --port 19002``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

# Same accept queue livechat gets by default (EdgeConfig.listen_backlog); asyncio's default of 100
# drops SYNs when thousands of viewers connect at once.
LISTEN_BACKLOG = 4096

CONNECTIONS: set[ServerConnection] = set()


async def member(websocket: ServerConnection) -> None:
    CONNECTIONS.add(websocket)
    try:
        async for message in websocket:
            broadcast(CONNECTIONS, message)
    finally:
        CONNECTIONS.remove(websocket)


async def run(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(member, host, port, backlog=LISTEN_BACKLOG):
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
