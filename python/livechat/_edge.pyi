"""Typing stub for the compiled core (edge_core/src/bridge). Checked against the build by stubtest."""

from collections.abc import Mapping, Sequence
from typing import Any, Final

EVENT_OPEN: Final[int]
EVENT_MESSAGE: Final[int]
EVENT_CLOSE: Final[int]

CLOSE_NORMAL: Final[int]
CLOSE_GOING_AWAY: Final[int]
CLOSE_PROTOCOL_ERROR: Final[int]
CLOSE_UNSUPPORTED: Final[int]
CLOSE_INVALID_PAYLOAD: Final[int]
CLOSE_POLICY: Final[int]
CLOSE_TOO_BIG: Final[int]
CLOSE_INTERNAL: Final[int]
CLOSE_SLOW_CONSUMER: Final[int]
CLOSE_WRITE_TIMEOUT: Final[int]

class Edge:
    """One WebSocket edge: N I/O threads, their connections and the per-stream tick hub.

    Connection ids are opaque 64-bit ints; an id is not reused while its slot's 34-bit serial has
    not wrapped (17 billion connections per I/O thread). Every method taking a connection id
    returns False (and does nothing) when that connection is already closed. All methods are
    thread-safe; the ones doing real work release the GIL.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        """Validate ``config`` (every ``EdgeConfig`` field; a missing or extra key is ValueError)."""

    def start(self) -> int:
        """Bind every I/O thread's listener and start serving. Returns the bound port.

        Raises OSError when the address cannot be bound.
        """

    def fileno(self) -> int:
        """An eventfd that becomes readable when events wait in ``drain``."""

    def drain(self, max_events: int = 4096) -> list[tuple[int, int, Any]]:
        """Take up to ``max_events`` inbound events, oldest first, and clear the eventfd.

        Each is ``(kind, conn_id, data)``:
        - EVENT_OPEN: data = (path_and_query: str, peer: str, authorization: str | None)
        - EVENT_MESSAGE: data = bytes (binary message) or str (text message), whole and validated
        - EVENT_CLOSE: data = (code: int, reason: str); the id is dead after this event
        Per connection, events come in the order they happened: one OPEN, messages, one CLOSE.
        """

    def subscribe(self, conn_id: int, stream: str) -> bool:
        """Add the connection to ``stream``: it receives every tick frame built after this call."""

    def unsubscribe(self, conn_id: int, stream: str) -> bool:
        """Stop delivering ``stream`` to the connection (frames already queued still go)."""
    def publish(self, stream: str, event: bytes, priority: bool = False) -> None:
        """Append one msgpack-encoded event to the stream's pending tick.

        Events of one stream reach every subscriber in publish order, inside tick frames
        ``{"t": "tick", "s": stream, "q": seq, "e": [event, ...], "st": {key: value}}``.
        Priority events travel in their own frame (``"p": True``) that slow consumers never skip.
        """

    def set_state(self, stream: str, key: str, value: bytes) -> None:
        """Set a latest-value slot (msgpack bytes) carried in the next tick's ``"st"`` map.

        Values set several times within one tick are conflated: only the last is sent.
        """

    def send(self, conn_id: int, data: bytes, binary: bool = True) -> bool:
        """Queue one message to one connection on the priority lane; it is written at once."""

    def send_many(self, conn_ids: Sequence[int], data: bytes, binary: bool = True) -> int:
        """``send`` to each id with one shared frame; returns how many were still open."""

    def send_batch(self, items: Sequence[tuple[int, bytes]], binary: bool = True) -> int:
        """``send`` for many (connection, message) pairs in one call (e.g. a batch of acks): one
        command per I/O thread. Per connection, order is kept. Returns how many were open."""

    def close(self, conn_id: int, code: int = 1000, reason: str = "") -> bool:
        """Start the close handshake after what is already queued has been written."""

    def set_static(self, path: str, content_type: str, body: bytes) -> None:
        """Answer plain (non-upgrade) GETs of ``path`` (query ignored) with 200 and ``body``.

        Any other plain GET gets 426 naming the WebSocket upgrade it expects.
        """

    def stream_subscribers(self, stream: str) -> int:
        """Connections on this edge currently subscribed to ``stream``."""

    def stats(self) -> dict[str, Any]:
        """Counters: connections, accepted, rejected, messages_in, deliveries (events written),
        frames_out, ticks, frames_built, tick_build_ns (time encoding + compressing ticks),
        queue_bytes, ticks_skipped, slow_closes, write_timeouts, and ``threads``: one dict of the
        same per-thread counters per I/O thread."""

    def stop(self, drain_timeout_ms: int = 5000) -> None:
        """Stop accepting, flush queues, close every connection with 1001, join the threads."""

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""

def encode_frame(
    payload: bytes, binary: bool = True, mask: tuple[int, int, int, int] | list[int] | None = None
) -> bytes:
    """A whole frame: unmasked as the server sends it, or masked with ``mask`` as a client does."""

def decode_client_frames(
    data: bytes, max_message: int = 1048576, deflate: bool = False
) -> tuple[list[bytes], int]:
    """Decode masked client frames as the edge does: (data messages, bytes consumed); ValueError
    names the close code the edge would send."""

def deflate(data: bytes, level: int = 3) -> bytes:
    """permessage-deflate compression of one message (no context takeover, tail stripped)."""

def inflate(data: bytes, max_size: int = 1048576) -> bytes:
    """Inflate one permessage-deflate message; ValueError past ``max_size`` (a deflate bomb)."""

def msgpack_valid(data: bytes) -> bool:
    """Whether ``data`` is exactly one msgpack value nested at most 32 deep."""

def encode_tick(stream: str, seq: int, events: list[bytes]) -> bytes:
    """The msgpack payload of a tick frame carrying ``events`` (each one msgpack value)."""
