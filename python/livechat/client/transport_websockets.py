"""``Transport`` on the ``websockets`` library (asyncio implementation)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from livechat.client.transport import OnClose, OnMessage
from livechat.config import ClientConfig
from livechat.protocol.codes import CloseCode

log = logging.getLogger(__name__)


class WebsocketsTransport:
    __slots__ = ("_closer", "_reader", "_ws")

    def __init__(self, ws: ClientConnection, on_message: OnMessage, on_close: OnClose) -> None:
        self._ws = ws
        self._closer: asyncio.Task[None] | None = None
        self._reader = asyncio.create_task(self._read(on_message, on_close), name="livechat-client-read")

    async def _read(self, on_message: OnMessage, on_close: OnClose) -> None:
        try:
            async for message in self._ws:
                if isinstance(message, bytes):
                    on_message(message)
                else:
                    log.warning("dropping a text message of %d characters", len(message))
        except ConnectionClosed:
            pass
        except Exception:
            # on_message raised: a client bug must still end in exactly one on_close.
            log.exception("livechat client message handler failed; closing the connection")
            self._ws.transport.abort()
        finally:
            code = self._ws.close_code if self._ws.close_code is not None else CloseCode.ABNORMAL
            on_close(code, self._ws.close_reason or "")

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise ConnectionError(str(exc)) from None

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        if self._closer is None:
            self._closer = asyncio.create_task(self._close(code, reason), name="livechat-client-close")

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close(code, reason)

    def abort(self) -> None:
        self._ws.transport.abort()


async def connect_websockets(
    url: str, headers: Mapping[str, str], on_message: OnMessage, on_close: OnClose, config: ClientConfig
) -> WebsocketsTransport:
    ws = await connect(
        url,
        additional_headers=dict(headers),
        compression="deflate" if config.deflate else None,
        open_timeout=config.connect_timeout_s,
        ping_interval=config.ping_interval_s,
        ping_timeout=config.ping_timeout_s,
        close_timeout=config.connect_timeout_s,
        max_size=config.max_message_bytes,
        # Our own reader drains every message at once; no need to buffer many in websockets.
        max_queue=64,
    )
    return WebsocketsTransport(ws, on_message, on_close)
