"""The admin HTTP server of ``livechat serve``: ``/metrics``, ``/healthz``, ``/readyz``.

A minimal HTTP/1.1 server on asyncio streams, on its own port (``ops.admin_host``,
``ops.admin_port``), in the serving event loop: a scrape takes ~1 ms of that loop, and a loop
that cannot answer is exactly what ``/healthz`` should report. One request per connection
(``Connection: close``); the request head must arrive within ``REQUEST_TIMEOUT_S`` and
``MAX_REQUEST_BYTES``. GET and HEAD only.

- ``/healthz`` (liveness): 200 while the process can do its job: the edge is running and the
  task handing its events to the chat services is alive. 503 with the reasons otherwise; restart.
- ``/readyz`` (readiness): 200 once the backends are open and the edge accepts connections, until
  SIGTERM starts the drain; 503 with the reasons otherwise. A broker that does not answer is
  reported in ``/metrics`` (``livechat_broker_up``), not here: every edge shares the broker, and
  failing readiness on all of them at once would take the whole tier out of the load balancer.
- ``/metrics``: ``livechat.server.metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import json
import logging
from dataclasses import dataclass, field
from typing import Final, Protocol

from prometheus_client.exposition import generate_latest

from livechat.config import LiveChatConfig
from livechat.server.broker_timing import MeasuredBroker
from livechat.server.metrics import CONTENT_TYPE, MetricsInput, metrics_registry
from livechat.server.stats import BrokerTimes, StatsSource, edge_stats
from livechat.services.stats import ChatStats

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 8 * 1024
REQUEST_TIMEOUT_S: Final = 5.0
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("livechat")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class Health:
    """``live``/``ready`` and, when false, why (one short sentence each)."""

    live: bool
    ready: bool
    draining: bool
    problems: list[str] = field(default_factory=list)


class ChatStatsSource(Protocol):
    """``livechat.services.ChatService`` as the admin server sees it."""

    def stats(self) -> ChatStats: ...


class Observed(Protocol):
    """What the admin server reads from the process it reports on (``LiveChatServer``): health and
    readiness, and the sources of ``/metrics``. Read-only, and nothing else of the process."""

    @property
    def config(self) -> LiveChatConfig: ...

    @property
    def edge_id(self) -> str: ...

    @property
    def edge(self) -> StatsSource: ...

    # None before the services have started.
    @property
    def chat(self) -> ChatStatsSource | None: ...

    @property
    def measured_broker(self) -> MeasuredBroker | None: ...

    def health(self) -> Health: ...


def gather(target: Observed) -> MetricsInput:
    """One scrape's worth of numbers from a running server."""
    broker = target.measured_broker
    times = None
    if broker is not None:
        times = BrokerTimes(
            broker.publish_latency.snapshot(),
            broker.published_events,
            broker.publish_errors,
            broker.probe_latency.snapshot(),
            broker.probe_errors,
            broker.up,
        )
    health = target.health()
    return MetricsInput(
        edge_id=target.edge_id,
        version=_version(),
        ready=health.ready,
        draining=health.draining,
        edge=edge_stats(target.edge),
        chat=target.chat.stats() if target.chat is not None else None,
        broker=times,
        stream_series=target.config.ops.metrics_stream_series,
    )


class AdminServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` from what ``target`` reports; it only reads."""

    def __init__(self, target: Observed, host: str, port: int) -> None:
        self._target = target
        self._registry = metrics_registry(lambda: gather(target))
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self.requests = 0

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> int:
        """Bind and serve; OSError when the address is taken."""
        self._server = await asyncio.start_server(
            self._client, self._host, self._port, limit=MAX_REQUEST_BYTES
        )
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                await self._send(writer, 400, "text/plain", b"bad or incomplete request head\n", False)
                return
            self.requests += 1
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                await self._send(writer, 400, "text/plain", b"malformed request line\n", False)
                return
            method, target, _ = parts
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                await self._send(writer, 405, "text/plain", b"GET or HEAD only\n", False, allow=True)
                return
            status, content_type, body = self._route(path)
            await self._send(writer, status, content_type, body, method == "HEAD")
        except (ConnectionError, OSError):
            return
        except Exception:
            log.exception("admin request failed")
            with contextlib.suppress(Exception):
                await self._send(writer, 503, "text/plain", b"internal error\n", False)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _route(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE, generate_latest(self._registry)
        if path in ("/healthz", "/readyz"):
            health = self._target.health()
            ok = health.live if path == "/healthz" else health.ready
            body = {
                "status": ("ok" if path == "/healthz" else "ready") if ok else "unavailable",
                "draining": health.draining,
                "problems": health.problems,
            }
            return (200 if ok else 503), "application/json", (json.dumps(body) + "\n").encode()
        if path == "/":
            return 200, "text/plain", b"livechat admin: /metrics /healthz /readyz\n"
        return 404, "text/plain", b"not found: /metrics /healthz /readyz\n"

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter,
        status: int,
        content_type: str,
        body: bytes,
        head_only: bool,
        allow: bool = False,
    ) -> None:
        headers = [
            f"HTTP/1.1 {status} {_REASONS[status]}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            "Cache-Control: no-store",
            "Connection: close",
        ]
        if allow:
            headers.append("Allow: GET, HEAD")
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else body))
        await writer.drain()
