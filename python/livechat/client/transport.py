"""The WebSocket under a ``LiveChatClient``: two implementations behind one small interface.

- ``websockets`` (default): permessage-deflate, client pings; what tests and tools use.
- ``picows``: a Cython client with a much lower cost per message and no compression; what the load
  test uses so the load generator does not become the bottleneck.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, Protocol

from livechat.config import ClientConfig

#: Called once per whole binary message, in arrival order, on the event loop.
OnMessage = Callable[[bytes], None]
#: Called exactly once when the connection is gone: (close code, reason); 1006 when no close frame
#: arrived (a dropped TCP connection).
OnClose = Callable[[int, str], None]

TransportName = Literal["websockets", "picows"]

#: No close frame was received (RFC 6455 §7.1.5).
CLOSE_ABNORMAL = 1006


class Transport(Protocol):
    """One open WebSocket connection.

    Guarantees: ``on_message`` gets every binary message whole (fragments joined, deflate undone) in
    the order the server sent them; text messages are dropped (the protocol has none). ``on_close``
    is called exactly once, after the last ``on_message``, whether the close was clean, the peer
    vanished, or ``close``/``abort`` was called here.
    """

    async def send(self, data: bytes) -> None:
        """Send one binary message. Raises ConnectionError when the connection is already closed."""

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake; ``on_close`` follows when it completes (or times out)."""

    def abort(self) -> None:
        """Drop the TCP connection without a close handshake."""


class Connector(Protocol):
    """Opens a ``Transport``; raises OSError / TimeoutError / a handshake error when it cannot."""

    async def __call__(
        self,
        url: str,
        headers: Mapping[str, str],
        on_message: OnMessage,
        on_close: OnClose,
        config: ClientConfig,
    ) -> Transport: ...


def connector(name: TransportName) -> Connector:
    if name == "websockets":
        from livechat.client.transport_websockets import connect_websockets

        return connect_websockets
    if name == "picows":
        from livechat.client.transport_picows import connect_picows

        return connect_picows
    raise ValueError(f"unknown transport {name!r}: use 'websockets' or 'picows'")
