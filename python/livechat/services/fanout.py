"""Where an event goes besides this edge: every other edge.

With a shared log (``kafka://``) a room event is appended to the log (comments are there
already), and every edge applies it in log order (``livechat.services.log_events``). Otherwise it
goes through the Broker, as described next.

Between edges an event travels as one tag byte plus the event's msgpack bytes, so the receiving
edge can hand the same bytes to its own tick without re-encoding:

- ``B`` a comment in the tick (the receiver publishes it and keeps it for snapshots);
- ``S`` a comment sampled out of the tick (the receiver counts it towards the stream's rate and
  delivers it directly to the author's and mentioned users' connections it holds);
- ``P`` a moderation or room event for the priority lane (the receiver applies it to its room
  state, then publishes it).
"""

from __future__ import annotations

import logging
from typing import Final

from livechat.ports.broker import Broker
from livechat.ports.comment_log import CommentLog, LogEntry
from livechat.ports.errors import BackendError
from livechat.services.background import Background
from livechat.services.outbox import Outbox

log = logging.getLogger(__name__)

TAG_BROADCAST: Final = 0x42  # "B"
TAG_SAMPLED: Final = 0x53  # "S"
TAG_PRIORITY: Final = 0x50  # "P"


class Fanout:
    __slots__ = ("_background", "_broker", "_log", "_origin", "_outbox", "_queued", "log_failures")

    def __init__(
        self,
        outbox: Outbox,
        broker: Broker | None,
        background: Background,
        log: CommentLog | None = None,
        origin: str | None = None,
    ) -> None:
        """``log``: the shared comment log room events are appended to (then ``broker`` is unused)."""
        self._outbox = outbox
        self._log = log
        self._broker = broker if log is None else None
        self._origin = origin
        self._background = background
        self._queued: list[tuple[str, bytes]] = []
        # Room events the shared log refused: applied and stored here, late on other edges.
        self.log_failures = 0

    def comment(self, stream: str, payload: bytes, broadcast: bool) -> None:
        """A comment delivered here (``livechat.services.delivery``): to the other edges, tagged
        with this edge's sampling decision."""
        if self._broker is not None:
            self._queued.append((stream, bytes((TAG_BROADCAST if broadcast else TAG_SAMPLED,)) + payload))

    def priority(self, stream: str, event: bytes) -> None:
        """A moderation/room event: priority lane here and on every other edge."""
        self._outbox.publish(stream, event, priority=True)
        if self._log is not None:
            entry = LogEntry(stream, event, None, self._origin)
            self._background.spawn(self._append(self._log, entry), "room event to the log")
        elif self._broker is not None:
            self._queued.append((stream, bytes((TAG_PRIORITY,)) + event))
            self.send_remote()

    async def _append(self, comment_log: CommentLog, entry: LogEntry) -> None:
        # The decision is stored (MetaStore/HistoryStore) before this runs; the log carries it to
        # the other edges in stream order. Spawned in call order, each appends before its first
        # wait returns, so per-stream order is kept.
        try:
            await comment_log.append_many([entry])
        except BackendError as exc:
            self.log_failures += 1
            log.warning("room event not appended to the log (%s); other edges see it on reload", exc)

    def send_remote(self) -> None:
        """Hand everything queued to the broker (in order) without waiting for it."""
        if not self._queued or self._broker is None:
            return
        queued, self._queued = self._queued, []
        self._background.spawn(self._publish(self._broker, queued), "broker publish")

    @staticmethod
    async def _publish(broker: Broker, queued: list[tuple[str, bytes]]) -> None:
        # One call per batch (one write and round trip for Redis), not a task per event: at 30 000
        # comments/s a task each cost ~8 µs per comment. Batches are spawned in call order and each
        # writes before its first wait, so publish order per stream is kept across batches.
        try:
            await broker.publish_many(queued)
        except BackendError as exc:
            log.warning(
                "broker refused a batch of %d events (%s); other edges resync on their gap", len(queued), exc
            )
