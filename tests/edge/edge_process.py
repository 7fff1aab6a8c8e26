"""An app-mode edge in its own process, so its RSS is the server's alone (the slow-consumer test).

    python tests/edge/edge_process.py '{"send_queue_hard_bytes": 65536, ...}'

Prints one JSON line ``{"port": P, "pid": N}`` once listening, then serves JSON-line commands on
stdin, one JSON reply line each:

- ``{"cmd": "stats"}``: ``Edge.stats()`` plus ``rss`` / ``hwm`` (VmRSS / VmHWM bytes), ``opens``
  and ``closes`` (peer "ip:port" -> close code of each connection that ended).
- ``{"cmd": "publish", "stream": S, "rate": R, "seconds": T, "size": B, "priority_every": K}``:
  starts publishing R events/s for T s to S (event i = msgpack ``[i, B random bytes]``; every
  K-th one also as a priority event ``["p", i]``); replies at once, then
  ``{"published": n, "priority": m, "max_lag_ms": x}`` when done.
- ``{"cmd": "stop"}``: ``Edge.stop()`` and exit.

Every connection that opens is subscribed to the stream named by ``--stream`` (default "slow").
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from typing import Any

import msgpack
import uvloop
from livechat._edge import EVENT_CLOSE, EVENT_OPEN, Edge
from livechat.config import EdgeConfig

STREAM = "slow"


def proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


class Server:
    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.peers: dict[int, str] = {}
        self.closes: dict[str, int] = {}
        self.out = sys.stdout

    def reply(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def on_events(self) -> None:
        for kind, conn, data in self.edge.drain():
            if kind == EVENT_OPEN:
                self.peers[conn] = data[1]
                self.edge.subscribe(conn, STREAM)
            elif kind == EVENT_CLOSE:
                self.closes[self.peers.pop(conn, "?")] = data[0]

    def stats(self) -> dict[str, Any]:
        s = dict(self.edge.stats())
        s.pop("threads")
        s["rss"] = proc_status_bytes("VmRSS")
        s["hwm"] = proc_status_bytes("VmHWM")
        s["opens"] = len(self.peers) + len(self.closes)
        s["closes"] = self.closes
        return s

    async def publish(self, stream: str, rate: float, seconds: float, size: int, priority_every: int) -> None:
        loop = asyncio.get_running_loop()
        n = int(rate * seconds)
        first = loop.time()
        max_lag = 0.0
        priority = 0
        for i in range(n):
            due = first + i / rate
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                max_lag = max(max_lag, now - due)
            self.edge.publish(stream, msgpack.packb([i, os.urandom(size)]))
            if priority_every and i % priority_every == 0:
                self.edge.publish(stream, msgpack.packb(["p", i]), priority=True)
                priority += 1
        self.reply({"published": n, "priority": priority, "max_lag_ms": round(max_lag * 1000, 1)})

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.edge.fileno(), self.on_events)
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        tasks: set[asyncio.Task[None]] = set()
        while line := await reader.readline():
            cmd = json.loads(line)
            if cmd["cmd"] == "stats":
                self.reply(self.stats())
            elif cmd["cmd"] == "publish":
                args = {k: cmd[k] for k in ("stream", "rate", "seconds", "size", "priority_every")}
                task = asyncio.create_task(self.publish(**args))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.reply({"started": True})
            elif cmd["cmd"] == "stop":
                break
        loop.remove_reader(self.edge.fileno())
        self.edge.stop(1000)
        self.reply({"stopped": True})


def main() -> None:
    overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    config = dataclasses.replace(EdgeConfig(), host="127.0.0.1", port=0, mode="app", **overrides)
    edge = Edge(config.to_core())
    port = edge.start()
    server = Server(edge)
    server.reply({"port": port, "pid": os.getpid()})
    uvloop.run(server.serve())


if __name__ == "__main__":
    main()
