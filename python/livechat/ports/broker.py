"""Broker: fan-out of stream events between edges (docs/architecture.md §1, §3).

One edge = one process holding WebSocket connections. An edge that accepts a comment applies it
locally first (its own viewers see it in the next tick), then publishes it through the broker so every
other edge with viewers of that stream applies it too. The broker carries opaque bytes; it never
looks inside a payload.

Shaped after Redis 7 sharded pub/sub (SPUBLISH/SSUBSCRIBE): at-most-once, no history, ordering per
stream from one publisher, the stream id is the shard key. A durable log (``CommentLog``) plus
recovery covers what a broker may drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class BrokerHandler(Protocol):
    """Receives what the broker delivers to one edge. Registered once per broker with ``set_handler``.

    Every callback runs on the event loop that owns the broker, synchronously and one at a time; it
    must not block (schedule a task for slow work). An exception raised by a callback is logged and
    swallowed, so one bad payload cannot stop delivery of the next.
    """

    def on_message(self, stream: str, payload: bytes) -> None:
        """One event published by ANOTHER edge to ``stream``, which this edge is subscribed to.

        Per (publisher edge, stream) calls come in publish order. No ordering is promised between
        two publishers, nor between streams.
        """

    def on_control(self, payload: bytes) -> None:
        """One edge-wide control message (e.g. "disconnect user X") sent by another edge, either
        broadcast to every edge or addressed to this edge's id. Ordered per sender."""

    def on_gap(self, streams: Sequence[str]) -> None:
        """The broker lost the subscriptions of ``streams`` and has re-established them.

        Lost means: the connection carrying them failed, went silent (Redis: no PONG within ~1 s
        of a PING sent every second), or (Redis Cluster) their slot moved to another master.
        Events published to these streams meanwhile may be lost (at-most-once); the edge should
        resync them (recovery from ``CommentLog`` / ``HistoryStore``). Streams unsubscribed in the
        meantime are left out; a loss that covered no stream is not reported. Not called on the
        first connect. On a cluster one lost shard reports only the streams it carried.
        """


class Broker(Protocol):
    """Fan-out between edges. One broker instance per edge process.

    Guarantees every backend keeps:
    - **At-most-once**: an event reaches each subscribed edge once or not at all (never twice: no
      publish is ever retried). Loss only happens across a lost subscription, which is reported
      with ``on_gap`` once it is re-established.
    - **Ordering**: events one edge publishes to one stream arrive at every other edge in publish
      order. Nothing is promised across publishers or across streams.
    - **No echo**: an edge never receives its own publications (it applied them locally before
      publishing). Backends tag each payload with the publisher's ``edge_id`` and drop matches on
      receipt, so two broker instances must never share an ``edge_id``.
    - **One subscription per stream per edge**: ``subscribe``/``unsubscribe`` are reference counted
      per stream; only the first ``subscribe`` and the last ``unsubscribe`` reach the backing service.
    - **Subscribed means subscribed**: once ``subscribe`` returns, every event published afterwards
      (by another edge) is delivered, barring a reported gap.
    """

    @property
    def edge_id(self) -> str:
        """This edge's identity: tags its publications and addresses control messages to it."""
        ...

    def set_handler(self, handler: BrokerHandler) -> None:
        """Register the one handler for inbound events. Raises RuntimeError if called twice."""

    async def subscribe(self, stream: str) -> bool:
        """Take one reference on ``stream``. Returns True when this was the first reference (the
        subscription was created in the backing service), False when it already existed.

        Raises RuntimeError if no handler is set yet, BackendUnavailable if the service is down (the
        reference is then not taken).
        """
        ...

    async def unsubscribe(self, stream: str) -> bool:
        """Drop one reference on ``stream``. Returns True when this was the last one (the backing
        subscription was removed; no further events are delivered for it). Dropping a reference
        that is not held is a no-op returning False."""
        ...

    def subscription_count(self, stream: str) -> int:
        """Current reference count of ``stream`` on this edge (0 when not subscribed)."""
        ...

    async def publish(self, stream: str, payload: bytes) -> None:
        """Send ``payload`` to every other edge subscribed to ``stream``, at most once each.

        Returns once the backing service accepted the event (Redis: the SPUBLISH reply arrived;
        concurrent publishes share one pipeline round trip, and per stream one message). Raises
        BackendUnavailable when the service is unreachable or silent (Redis: within ~2 s); the
        event may then have reached some edges or none, never twice.
        """

    async def publish_many(self, events: Sequence[tuple[str, bytes]]) -> None:
        """``publish`` of each ``(stream, payload)``, in one go (Redis: one round trip, and the
        events of one stream travel as one message). Same delivery rules as that many
        ``publish`` calls: in order per stream, nothing promised across streams. Raises
        BackendUnavailable when the service is unreachable (Redis: no reply within ~1 s),
        BackendError when it refused one of them; the others may have been delivered
        (at-most-once, never twice)."""

    async def publish_control(self, payload: bytes, edge_id: str | None = None) -> None:
        """Send a control message to one edge (``edge_id``) or to every other edge (None).

        Same delivery rules as ``publish``: at-most-once, ordered per sender, never echoed back.
        """

    async def aclose(self) -> None:
        """Drop every subscription and release connections. Idempotent. Later calls raise ClosedError."""
