"""Run the livechat core in fanout mode when the ``livechat fanout`` CLI is not installed.

``python -m bench.fanout.subject --port P``: one ``Edge`` with ``mode="fanout"`` and every other
setting at its ``EdgeConfig`` default; inbound events are drained (and dropped) as the CLI would, so
an undrained queue cannot inflate RSS. Stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvloop

DRAIN_BATCH = 4096


async def serve(host: str, port: int) -> None:
    from livechat._edge import Edge
    from livechat.config import EdgeConfig

    edge = Edge(EdgeConfig(host=host, port=port, mode="fanout").to_core())
    edge.start()
    loop = asyncio.get_running_loop()

    def drain() -> None:
        while len(edge.drain(DRAIN_BATCH)) == DRAIN_BATCH:
            pass

    loop.add_reader(edge.fileno(), drain)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    try:
        await stop
    finally:
        loop.remove_reader(edge.fileno())
        edge.stop(2000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
