"""``LiveChatServer``: one edge process (``livechat serve``).

The edge's eventfd is registered with the event loop; each wake-up drains one batch of events
(opens, messages, closes; decoded and validated in Rust) and hands it to the ``ChatService`` in
arrival order. One consumer task does that, so batches never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import uuid
from collections.abc import Sequence
from typing import Any

from livechat import _edge, tracing
from livechat.backends import Backends, open_backends, open_log_follower
from livechat.backends.sqlite_log import SqliteCommentLog
from livechat.config import ChatConfig, LiveChatConfig
from livechat.ports.log_follower import LogFollower
from livechat.server.admin import AdminServer, Health
from livechat.server.broker_timing import MeasuredBroker
from livechat.server.log_replay import replay_into_history
from livechat.server.node_lease import NodeLease
from livechat.services import ChatService, RemoteEvents

log = logging.getLogger("livechat.server")


class _UntilDrained:
    """The broker handler (set once, as the port requires): other edges' events go to the chat
    services until this edge drains, then are dropped (its clients reconnect elsewhere and
    recover them from history)."""

    def __init__(self, target: RemoteEvents) -> None:
        self.target: RemoteEvents | None = target

    def on_message(self, stream: str, payload: bytes) -> None:
        if self.target is not None:
            self.target.on_message(stream, payload)

    def on_control(self, payload: bytes) -> None:
        if self.target is not None:
            self.target.on_control(payload)

    def on_gap(self, streams: Sequence[str]) -> None:
        if self.target is not None:
            self.target.on_gap(streams)


# Events taken per drain: bounds the time one batch holds the loop (~15 µs/comment -> ~60 ms).
DRAIN_BATCH = 4096
# Descriptors kept back from connections: backends, the admin server, logs, SQLite, the broker.
FD_RESERVE = 500


def within_open_file_limit(config: LiveChatConfig) -> LiveChatConfig:
    """``edge.max_connections`` capped below the process's open-file limit (less FD_RESERVE).

    Past the limit accept() fails with EMFILE: the connection is reset instead of answered, and
    the admin server and backends can no longer open sockets either. Capped, the edge answers 503
    at its limit (clients retry; with ``serve --workers`` the next try may land on another worker)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return config
    cap = max(soft - FD_RESERVE, 1)
    if config.edge.max_connections <= cap:
        return config
    log.info(
        "edge.max_connections %d capped at %d (open-file limit %d)",
        config.edge.max_connections,
        cap,
        soft,
        extra={"event": "max_connections_capped", "max_connections": cap, "nofile": soft},
    )
    return dataclasses.replace(config, edge=dataclasses.replace(config.edge, max_connections=cap))


class LiveChatServer:
    """Start with ``await start()``; stop with ``await stop()`` (graceful: /readyz turns 503 for
    ``ops.drain_grace_s``, then what was accepted is stored, what was published is flushed, and
    every client gets close 1001)."""

    def __init__(self, config: LiveChatConfig) -> None:
        config = within_open_file_limit(config)
        self.config = config
        self.edge_id = config.edge_id or uuid.uuid4().hex[:12]
        self.edge = _edge.Edge(config.edge.to_core())
        self.backends: Backends | None = None
        self.chat: ChatService | None = None
        self._wake = asyncio.Event()
        self._consumer: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        # Set once stop() has finished (backends closed): wait_stopped() returns then.
        self._done = asyncio.Event()
        # Held while a batch is handed to the services, so stop()'s final batch never interleaves.
        self._handling = asyncio.Lock()
        self.measured_broker: MeasuredBroker | None = None
        self._remote: _UntilDrained | None = None
        self.admin: AdminServer | None = None
        self.node_lease: NodeLease | None = None
        self.follower: LogFollower | None = None

    async def _with_node_id(self, chat: ChatConfig, b: Backends) -> ChatConfig:
        """Resolve ``node_id = -1``: comment ids embed it, so two edges sharing it could mint the
        same id in the same millisecond. With a shared registry it is leased (``NodeLease``)."""
        if chat.node_id >= 0:
            return chat
        node = 0
        if not self.config.backends.registry.startswith("memory://"):
            self.node_lease = NodeLease(b.registry, self.edge_id)
            node = await self.node_lease.acquire()
        log.info("comment ids use node %d", node, extra={"event": "node_id"})
        return dataclasses.replace(chat, node_id=node)

    @property
    def port(self) -> int:
        return self.edge.port

    async def start(self) -> int:
        """Open the backends, start the services, then the edge (so no event precedes them)."""
        if self.config.ops.tracing != "off":
            tracing.configure(self.config.ops.tracing, f"livechat-edge-{self.edge_id}")
        self.backends = await open_backends(self.config.backends, self.edge_id)
        b = self.backends
        if isinstance(b.log, SqliteCommentLog):
            # Before any connection: history holds every comment the log acked (a crash between
            # an ack and its history write is repaired here).
            await replay_into_history(b.log, b.history)
        broker = self.measured_broker = MeasuredBroker(b.broker)
        log_url = self.config.backends.log or ""
        if log_url.startswith("kafka://"):
            # The shared log sequences every stream; the edge follows the streams it has open.
            self.follower = await open_log_follower(log_url, retention_s=self.config.backends.log_retention_s)
        self.chat = ChatService(
            await self._with_node_id(self.config.chat, b),
            self.edge,
            log=b.log,
            history=b.history,
            meta=b.meta,
            registry=b.registry,
            broker=broker,
            follower=self.follower,
            edge_id=self.edge_id,
            cluster_limits=not self.config.backends.registry.startswith("memory://"),
        )
        if self.node_lease is not None:
            self.node_lease.keep(self.chat.context.ids)
        self._remote = _UntilDrained(self.chat.remote)
        broker.set_handler(self._remote)
        ops = self.config.ops
        try:
            await self.chat.start()
            if ops.admin_enabled:
                self.admin = AdminServer(self, ops.admin_host, ops.admin_port)
                await self.admin.start()
            port = self.edge.start()
            from livechat.server import webpage  # the page at / (static files, see webpage.py)

            webpage.install(self.edge, self.config.chat.limits)
        except BaseException:
            await self._close_services()
            raise
        loop = asyncio.get_running_loop()
        loop.add_reader(self.edge.fileno(), self._wake.set)
        self._consumer = asyncio.create_task(self._consume(), name="livechat-edge-events")
        broker.start_probe(ops.broker_probe_interval_s)
        log.info(
            "livechat edge %s serving on ws://%s:%d/",
            self.edge_id,
            self.config.edge.host,
            port,
            extra={
                "event": "serving",
                "edge_id": self.edge_id,
                "port": port,
                "admin_port": self.admin.port if self.admin is not None else None,
            },
        )
        return port

    def health(self) -> Health:
        """Liveness and readiness (``/healthz``, ``/readyz``; see ``livechat.server.admin``)."""
        problems = []
        live = ready = True
        if self._consumer is None:
            ready = False
            problems.append("starting: the edge does not accept connections yet")
        elif self._consumer.done() and not self._stopped.is_set():
            live = ready = False
            problems.append("the task handing edge events to the chat services has stopped")
        if self._stopped.is_set():
            ready = False
            problems.append("draining: shutting down after SIGTERM")
        elif (
            self._consumer is not None
            and self.edge.stats()["connections"] >= self.config.edge.max_connections
        ):
            ready = False
            problems.append(f"full: {self.config.edge.max_connections} connections (edge.max_connections)")
        return Health(live, ready, self._stopped.is_set(), problems)

    async def _consume(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            async with self._handling:
                while True:
                    batch = self.edge.drain(DRAIN_BATCH)
                    if not batch:
                        break
                    try:
                        await self._handle(batch)
                    except Exception:
                        # One bad batch must not stop the edge: the services answer per message,
                        # so an exception here is a bug; it is logged with the batch size and we go on.
                        log.exception("edge batch of %d events failed", len(batch))

    async def _handle(self, batch: list[tuple[int, int, Any]]) -> None:
        assert self.chat is not None
        await self.chat.on_edge_events(batch, _edge.EVENT_OPEN, _edge.EVENT_MESSAGE, _edge.EVENT_CLOSE)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edge": self.edge.stats()}
        if self.chat is not None:
            out["chat"] = self.chat.stats()
        return out

    async def stop(self, drain_ms: int | None = None) -> None:
        """Graceful stop: /readyz 503 for ``ops.drain_grace_s`` (everything still served), then
        handle what already arrived, store it, flush the ticks, close with 1001 (the edge gets
        ``drain_ms``, default ``ops.drain_timeout_ms``, to flush)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        try:
            await self._drain_and_stop(drain_ms)
        except Exception:
            # A failing step must not leave the process hanging half-stopped: stop the edge
            # (a no-op if it already stopped) and let wait_stopped() return.
            log.exception("graceful stop failed; stopping the edge", extra={"event": "stop_failed"})
            await asyncio.to_thread(self.edge.stop, 0)
        finally:
            self._done.set()

    async def _drain_and_stop(self, drain_ms: int | None) -> None:
        ops = self.config.ops
        log.info(
            "draining: /readyz is 503; the edge stops accepting in %.1f s",
            ops.drain_grace_s,
            extra={"event": "draining", "connections": self.edge.stats()["connections"]},
        )
        if ops.drain_grace_s > 0:
            await asyncio.sleep(ops.drain_grace_s)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            loop.remove_reader(self.edge.fileno())
        async with self._handling:  # a batch the consumer holds is finished first
            if self._consumer is not None:
                self._consumer.cancel()
                await asyncio.gather(self._consumer, return_exceptions=True)
            if self.chat is not None:
                batch = self.edge.drain(1 << 30)
                if batch:
                    await self._handle(batch)
                # Everything that writes to clients runs while the edge is still up: comments
                # stored and acked, housekeeping and review workers stopped, background work done.
                await self.chat.aclose()
            if self._remote is not None:
                # Other edges keep publishing: from here on their events have nowhere to go.
                self._remote.target = None
        await asyncio.to_thread(self.edge.stop, ops.drain_timeout_ms if drain_ms is None else drain_ms)
        await self._close_services(chat=False)
        stats = self.chat.stats() if self.chat is not None else None
        log.info(
            "stopped",
            extra={
                "event": "stopped",
                "comments": stats["comments"] if stats is not None else None,
                "joins": stats["joins"] if stats is not None else None,
            },
        )

    async def _close_services(self, chat: bool = True) -> None:
        if self.measured_broker is not None:
            await self.measured_broker.stop_probe()
        if chat and self.chat is not None:
            await self.chat.aclose()
        if self.follower is not None:
            await self.follower.aclose()
        if self.node_lease is not None:
            await self.node_lease.release()
        if self.backends is not None:
            await self.backends.aclose()
        if self.admin is not None:
            await self.admin.stop()

    async def wait_stopped(self) -> None:
        """Return once ``stop()`` has finished: every client closed, the backends closed."""
        await self._done.wait()
