"""``Transport`` on picows: a Cython WebSocket client with a much lower cost per message than
``websockets`` and no permessage-deflate (the edge then sends this client uncompressed frames)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from livechat.client.transport import OnClose, OnMessage
from livechat.config import ClientConfig
from livechat.protocol.codes import CloseCode


def _code_int(code: Any) -> int:
    # picows reports codes it has no enum member for (livechat's 4xxx) as plain ints.
    return int(code.value) if isinstance(code, WSCloseCode) else int(code)


class _Listener(WSListener):
    """Joins fragments, answers the server's close, reports the end once."""

    def __init__(self, on_message: OnMessage, on_close: OnClose, linger_s: float) -> None:
        self._on_message = on_message
        self._on_close = on_close
        self._linger_s = linger_s
        self._fragments: list[bytes] | None = None
        self._fragmented_binary = False
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.BINARY or kind is WSMsgType.TEXT:
            if frame.fin:
                if kind is WSMsgType.BINARY:
                    self._on_message(frame.get_payload_as_bytes())
                return
            self._fragments = [frame.get_payload_as_bytes()]
            self._fragmented_binary = kind is WSMsgType.BINARY
        elif kind is WSMsgType.CONTINUATION:
            if self._fragments is None:
                return
            self._fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = None
                if self._fragmented_binary:
                    self._on_message(data)
        elif kind is WSMsgType.CLOSE:
            # Echo the server's code (RFC 6455 §5.5.1), then let it close the TCP connection; the
            # linger bounds how long a silent peer can keep it.
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code())
            asyncio.get_running_loop().call_later(self._linger_s, transport.disconnect)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        handshake = transport.close_handshake
        received = handshake.recv if handshake is not None else None
        if received is None:
            self._on_close(CloseCode.ABNORMAL, "")
        else:
            self._on_close(_code_int(received.code), received.reason or "")


class PicowsTransport:
    __slots__ = ("_linger_s", "_transport")

    def __init__(self, transport: WSTransport, linger_s: float) -> None:
        self._transport = transport
        self._linger_s = linger_s

    async def send(self, data: bytes) -> None:
        if self._transport.is_disconnected or self._transport.is_close_frame_sent:
            raise ConnectionError("the connection is closed")
        self._transport.send(WSMsgType.BINARY, data)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        transport = self._transport
        if transport.is_disconnected:
            return
        if not transport.is_close_frame_sent:
            with contextlib.suppress(ValueError):
                transport.send_close(_close_code(code), reason.encode())
        asyncio.get_running_loop().call_later(self._linger_s, transport.disconnect)

    def abort(self) -> None:
        self._transport.disconnect(graceful=False)


def _close_code(code: int) -> Any:
    try:
        return WSCloseCode(code)
    except ValueError:
        return code


async def connect_picows(
    url: str, headers: Mapping[str, str], on_message: OnMessage, on_close: OnClose, config: ClientConfig
) -> PicowsTransport:
    linger = config.connect_timeout_s

    def listener() -> _Listener:
        return _Listener(on_message, on_close, linger)

    transport, handler = await asyncio.wait_for(
        ws_connect(
            listener,
            url,
            websocket_handshake_timeout=config.connect_timeout_s,
            enable_auto_ping=True,
            auto_ping_idle_timeout=config.ping_interval_s,
            auto_ping_reply_timeout=config.ping_timeout_s,
            max_frame_size=config.max_message_bytes,
            extra_headers=dict(headers),
        ),
        config.connect_timeout_s,
    )
    if handler is None or transport.is_disconnected:
        # picows returns (transport, None) when the peer drops the connection mid-handshake.
        raise ConnectionError("the server closed the connection during the WebSocket handshake")
    return PicowsTransport(transport, linger)
