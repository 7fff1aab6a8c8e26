"""``LiveChatServer``: one edge process (``livechat serve``).

The edge's eventfd is registered with the event loop; each wake-up drains one batch of events
(opens, messages, closes; decoded and validated in Rust) and hands it to the ``ChatService`` in
arrival order. One consumer task does that, so batches never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from livechat import _edge
from livechat.backends import Backends, open_backends
from livechat.config import LiveChatConfig
from livechat.services import ChatService, RemoteEvents

log = logging.getLogger("livechat.server")

# Events taken per drain: bounds the time one batch holds the loop (~15 µs/comment -> ~60 ms).
DRAIN_BATCH = 4096


class LiveChatServer:
    """Start with ``await start()``; stop with ``await stop()`` (graceful: what was accepted is
    stored, what was published is flushed, then every client gets close 1001)."""

    def __init__(self, config: LiveChatConfig) -> None:
        self.config = config
        self.edge_id = config.edge_id or uuid.uuid4().hex[:12]
        self.edge = _edge.Edge(config.edge.to_core())
        self.backends: Backends | None = None
        self.chat: ChatService | None = None
        self._wake = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    @property
    def port(self) -> int:
        return self.edge.port

    async def start(self) -> int:
        """Open the backends, start the services, then the edge (so no event precedes them)."""
        self.backends = await open_backends(self.config.backends, self.edge_id)
        b = self.backends
        self.chat = ChatService(
            self.config.chat,
            self.edge,
            log=b.log,
            history=b.history,
            meta=b.meta,
            registry=b.registry,
            broker=b.broker,
        )
        b.broker.set_handler(RemoteEvents(self.chat))
        await self.chat.start()
        port = self.edge.start()
        loop = asyncio.get_running_loop()
        loop.add_reader(self.edge.fileno(), self._wake.set)
        self._consumer = asyncio.create_task(self._consume(), name="livechat-edge-events")
        log.info("livechat edge %s serving on ws://%s:%d/", self.edge_id, self.config.edge.host, port)
        return port

    async def _consume(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                batch = self.edge.drain(DRAIN_BATCH)
                if not batch:
                    break
                try:
                    await self._handle(batch)
                except Exception:
                    # One bad batch must not stop the edge: the services answer per message, so
                    # an exception here is a bug; it is logged with the batch size and we go on.
                    log.exception("edge batch of %d events failed", len(batch))

    async def _handle(self, batch: list[tuple[int, int, Any]]) -> None:
        assert self.chat is not None
        await self.chat.on_edge_events(batch, _edge.EVENT_OPEN, _edge.EVENT_MESSAGE, _edge.EVENT_CLOSE)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edge": self.edge.stats()}
        if self.chat is not None:
            out["chat"] = self.chat.stats()
        return out

    async def stop(self, drain_ms: int = 5000) -> None:
        """Graceful stop: handle what already arrived, store it, flush the ticks, close with 1001."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            loop.remove_reader(self.edge.fileno())
        if self.chat is not None:
            batch = self.edge.drain(1 << 30)
            if batch:
                await self._handle(batch)
            await self.chat.flush()
        await asyncio.to_thread(self.edge.stop, drain_ms)
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        if self.chat is not None:
            await self.chat.aclose()
        if self.backends is not None:
            await self.backends.aclose()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
