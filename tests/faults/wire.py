"""One WebSocket connection to an edge for the fault load: requests by ``rid``, ticks to a handler.

A reader task takes every frame as it comes (so ticks are never held up behind a request), hands
replies carrying a ``rid`` to whoever waits for them and everything else to ``on_message``. When
the connection drops, every waiting request fails with ``ConnectionError`` and ``closed`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import msgpack
import websockets

#: Opening a connection (TCP + upgrade) takes ms; an edge that does not answer within this is
#: treated as gone (stopped, or its port not yet open after a restart).
OPEN_TIMEOUT_S = 3.0

_rids = itertools.count(1)


class Wire:
    def __init__(self, ws: websockets.ClientConnection, on_message: Callable[[dict[str, Any]], None]) -> None:
        self.ws = ws
        self.on_message = on_message
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.closed = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, on_message: Callable[[dict[str, Any]], None]) -> Wire:
        ws = await asyncio.wait_for(
            websockets.connect(url, compression="deflate", open_timeout=OPEN_TIMEOUT_S, max_size=2**22),
            OPEN_TIMEOUT_S + 1,
        )
        return cls(ws, on_message)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if not isinstance(raw, bytes):
                    continue
                m: dict[str, Any] = msgpack.unpackb(raw, strict_map_key=False)
                rid = m.get("rid")
                waiter = self.waiting.pop(rid, None) if rid is not None and m.get("t") != "tick" else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(m)
                else:
                    self.on_message(m)
        except (websockets.ConnectionClosed, OSError):
            pass
        finally:
            self.closed.set()
            for waiter in self.waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("connection closed"))
            self.waiting.clear()

    async def call(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """Send ``op`` and wait for its reply; TimeoutError, or ConnectionError when it drops."""
        if self.closed.is_set():
            raise ConnectionError("connection closed")
        rid = next(_rids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        try:
            await self.ws.send(msgpack.packb({"op": op, "rid": rid, **fields}))
        except (websockets.ConnectionClosed, OSError) as exc:
            self.waiting.pop(rid, None)
            raise ConnectionError(str(exc)) from exc
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.waiting.pop(rid, None)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2)
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader
