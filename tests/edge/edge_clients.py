"""Real WebSocket clients behind one small interface, and the app-mode event pump.

Clients: picows (no permessage-deflate support), websockets with compression on and off, and the
raw client of ``edge_wire`` (with and without a deflate offer). Each returns a text message as
``str`` and a binary one as ``bytes``, so a test compares what it sent with what came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

import msgpack
from edge_wire import TIMEOUT, Closed, RawClient, client_frame
from livechat._edge import EVENT_CLOSE, EVENT_MESSAGE, EVENT_OPEN, Edge
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

# ``start_edge(**EdgeConfig overrides)`` (conftest): a started edge on an ephemeral port.
StartEdge = Callable[..., Edge]

KINDS = ("picows", "websockets", "websockets-deflate", "raw", "raw-deflate")
# Offered by raw-deflate: the edge then keeps no inflater for this client (RFC 7692 §7.1.1.2).
RAW_DEFLATE_OFFER = "permessage-deflate; client_no_context_takeover; client_max_window_bits"


class Peer(Protocol):
    """One client connection. Messages come back in the order the server sent them."""

    kind: str

    async def send(self, data: bytes | str) -> None: ...

    async def send_fragments(self, parts: Sequence[bytes] | Sequence[str]) -> None:
        """One message in ``len(parts)`` frames (text parts are split on their UTF-8 bytes)."""

    async def recv(self, timeout: float = TIMEOUT) -> bytes | str: ...

    async def close(self) -> None: ...


class WebsocketsPeer:
    def __init__(self, kind: str, ws: ClientConnection) -> None:
        self.kind = kind
        self.ws = ws

    async def send(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def send_fragments(self, parts: Sequence[bytes] | Sequence[str]) -> None:
        await self.ws.send(list(parts))

    async def recv(self, timeout: float = TIMEOUT) -> bytes | str:
        try:
            return await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as e:
            if e.rcvd is None:
                raise
            raise Closed(e.rcvd.code, e.rcvd.reason) from e

    async def close(self) -> None:
        await self.ws.close()


class _PicowsListener(WSListener):
    def __init__(self) -> None:
        self.messages: asyncio.Queue[bytes | str | Closed] = asyncio.Queue()
        self.parts: list[bytes] = []
        self.text = False

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        t = frame.msg_type
        if t == WSMsgType.CLOSE:
            self.messages.put_nowait(
                Closed(int(frame.get_close_code().value), frame.get_close_reason() or "")
            )
            return
        if t in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.text = t == WSMsgType.TEXT
            self.parts = []
        elif t != WSMsgType.CONTINUATION:
            return
        self.parts.append(frame.get_payload_as_bytes())
        if frame.fin:
            data = b"".join(self.parts)
            self.messages.put_nowait(data.decode() if self.text else data)


class PicowsPeer:
    kind = "picows"

    def __init__(self, transport: WSTransport, listener: _PicowsListener) -> None:
        self.transport = transport
        self.listener = listener

    async def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            self.transport.send(WSMsgType.TEXT, data.encode())
        else:
            self.transport.send(WSMsgType.BINARY, data)

    async def send_fragments(self, parts: Sequence[bytes] | Sequence[str]) -> None:
        text = isinstance(parts[0], str)
        raw = [p.encode() if isinstance(p, str) else p for p in parts]
        for i, p in enumerate(raw):
            op = (WSMsgType.TEXT if text else WSMsgType.BINARY) if i == 0 else WSMsgType.CONTINUATION
            self.transport.send(op, p, fin=i == len(raw) - 1)

    async def recv(self, timeout: float = TIMEOUT) -> bytes | str:
        m = await asyncio.wait_for(self.listener.messages.get(), timeout)
        if isinstance(m, Closed):
            raise m
        return m

    async def close(self) -> None:
        self.transport.send_close(WSCloseCode.OK)
        await asyncio.wait_for(self.transport.wait_disconnected(), TIMEOUT)


class RawPeer:
    def __init__(self, kind: str, client: RawClient) -> None:
        self.kind = kind
        self.client = client

    async def send(self, data: bytes | str) -> None:
        self.client.send_message(data)

    async def send_fragments(self, parts: Sequence[bytes] | Sequence[str]) -> None:
        text = isinstance(parts[0], str)
        raw = [p.encode() if isinstance(p, str) else p for p in parts]
        for i, p in enumerate(raw):
            op = (0x1 if text else 0x2) if i == 0 else 0x0
            self.client.send(client_frame(op, p, fin=i == len(raw) - 1))

    async def recv(self, timeout: float = TIMEOUT) -> bytes | str:
        m = await self.client.recv_message(timeout)
        return m.data if m.binary else m.data.decode()

    async def close(self) -> None:
        await self.client.close()


async def open_peer(kind: str, port: int, path: str = "/") -> Peer:
    url = f"ws://127.0.0.1:{port}{path}"
    if kind.startswith("websockets"):
        compression = "deflate" if kind.endswith("deflate") else None
        ws = await connect(
            url, compression=compression, max_size=None, ping_interval=None, open_timeout=TIMEOUT
        )
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None
        assert (agreed is not None) == (compression is not None), agreed
        return WebsocketsPeer(kind, ws)
    if kind == "picows":
        transport, listener = await ws_connect(_PicowsListener, url, websocket_handshake_timeout=TIMEOUT)
        assert isinstance(listener, _PicowsListener)
        return PicowsPeer(transport, listener)
    if kind in ("raw", "raw-deflate"):
        offer = RAW_DEFLATE_OFFER if kind == "raw-deflate" else None
        client = await RawClient.connect(port, path, extensions=offer)
        assert client.deflate == (offer is not None)
        return RawPeer(kind, client)
    raise ValueError(kind)


def unpack(data: bytes | str) -> Any:
    assert isinstance(data, bytes), "tick frames are binary"
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class EchoProbe:
    """A healthy echo-mode client kept open beside an attack: it must keep getting its own
    messages back, whole and in order, before, during and after."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.roundtrips = 0

    async def roundtrip(self) -> None:
        payload = os.urandom(300)
        await self.peer.send(payload)
        got = await self.peer.recv()
        assert got == payload, "healthy client got something other than its echo"
        self.roundtrips += 1

    @contextlib.asynccontextmanager
    async def alongside(self) -> AsyncIterator[None]:
        """Round trips back to back while the body runs; any failure fails the test."""
        await self.roundtrip()
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                await self.roundtrip()
                await asyncio.sleep(0.002)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            stop.set()
            await task
        await self.roundtrip()
        assert self.roundtrips >= 3


class AppEvents:
    """Drains ``Edge`` events on the asyncio loop through its eventfd, as livechat's server does."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.fd = edge.fileno()
        self.queue: asyncio.Queue[tuple[int, int, Any]] = asyncio.Queue()
        self.wakeups = 0
        asyncio.get_running_loop().add_reader(self.fd, self._on_readable)

    def _on_readable(self) -> None:
        self.wakeups += 1
        for event in self.edge.drain():
            self.queue.put_nowait(event)

    async def next(self, timeout: float = TIMEOUT) -> tuple[int, int, Any]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def expect_open(self) -> tuple[int, tuple[str, str, str | None]]:
        kind, conn, data = await self.next()
        assert kind == EVENT_OPEN, (kind, data)
        return conn, data

    async def expect_message(self, conn: int) -> bytes | str:
        kind, got_conn, data = await self.next()
        assert (kind, got_conn) == (EVENT_MESSAGE, conn), (kind, got_conn, data)
        return data  # type: ignore[no-any-return]

    async def expect_close(self, conn: int) -> tuple[int, str]:
        kind, got_conn, data = await self.next()
        assert (kind, got_conn) == (EVENT_CLOSE, conn), (kind, got_conn, data)
        return data  # type: ignore[no-any-return]

    def assert_idle(self) -> None:
        assert self.queue.empty(), f"unexpected events: {self.queue}"

    def detach(self) -> None:
        """Stop pumping (before ``Edge.stop``: the eventfd closes with the core). Idempotent."""
        if self.fd >= 0:
            asyncio.get_running_loop().remove_reader(self.fd)
            self.fd = -1
