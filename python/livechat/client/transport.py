"""The WebSocket under a ``LiveChatClient``: the interface its two implementations share.

- ``websockets`` (default, ``transport_websockets``): permessage-deflate, client pings; what tests
  and tools use.
- ``picows`` (``transport_picows``): a Cython client with a much lower cost per message and no
  compression; what the load test uses so the load generator does not become the bottleneck.

``transport_factory.connector`` picks one by name; this module imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, Protocol

from livechat.config import ClientConfig
from livechat.protocol.codes import CloseCode

#: Called once per whole binary message, in arrival order, on the event loop.
OnMessage = Callable[[bytes], None]
#: Called exactly once when the connection is gone: (close code, reason); ``CloseCode.ABNORMAL``
#: (1006) when no close frame arrived (a dropped TCP connection).
OnClose = Callable[[int, str], None]

TransportName = Literal["websockets", "picows"]


class Transport(Protocol):
    """One open WebSocket connection.

    Guarantees: ``on_message`` gets every binary message whole (fragments joined, deflate undone) in
    the order the server sent them; text messages are dropped (the protocol has none). ``on_close``
    is called exactly once, after the last ``on_message``, whether the close was clean, the peer
    vanished, or ``close``/``abort`` was called here.
    """

    async def send(self, data: bytes) -> None:
        """Send one binary message. Raises ConnectionError when the connection is already closed."""

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
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
