"""The shared comment log, applied on this edge: the LogFollower's handler.

With a shared log (``kafka://``) each stream's partition is its sequencer. Every edge follows the
streams it has open and applies their records in log order, its own included:

- a comment is delivered (``livechat.services.delivery``) when its record arrives, on the posting
  edge too (the author already has the ack), so every edge shows one stream in one order and a
  reconnecting viewer can recover "what arrived after the last id I saw" on any edge;
- a room event (delete, purge, ban, pin, modes…) is applied with ``RoomEvents.apply``. The deciding
  edge applied it already when it was decided (its moderator sees it at once); applying it again
  in log order is what keeps a comment that reached this edge late from outliving its delete. Room
  state changes are idempotent; the users it concerns are not told twice.

A comment already in the room's recent buffer is skipped: the room loaded it from history, and
the follow started at history's watermark, so replayed records may overlap what was loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from livechat import tracing
from livechat.ports.comment_log import LogRecord
from livechat.protocol import EventKind, unpackb
from livechat.services.context import ChatContext
from livechat.services.delivery import Delivery, StoredPost
from livechat.services.room_events import RoomEvents

log = logging.getLogger(__name__)


class LogEvents:
    __slots__ = ("_ctx", "_delivery", "_events", "malformed")

    def __init__(self, ctx: ChatContext, delivery: Delivery, events: RoomEvents) -> None:
        self._ctx = ctx
        self._delivery = delivery
        self._events = events
        # Records whose payload was not an event this edge understands (skipped, logged).
        self.malformed = 0

    def on_records(self, records: Sequence[LogRecord]) -> None:
        """Apply records in the order given (per stream: log order)."""
        ctx = self._ctx
        own = ctx.edge_id
        shared_counts = ctx.engagement.shared
        posts: list[StoredPost] = []
        started = tracing.now_ns()
        for record in records:
            room = ctx.rooms.get(record.stream)
            if room is None:
                continue  # closed while the records were on their way
            try:
                event: dict[str, Any] = unpackb(record.payload)
                kind = event.get("k")
                if kind == EventKind.COMMENT:
                    comment_id = int(event["id"])
                    if comment_id in room.recent:
                        continue
                    mentions = event.get("m")
                    posts.append(
                        StoredPost(
                            record.stream,
                            comment_id,
                            str(event["u"]),
                            record.payload,
                            [str(m) for m in mentions] if isinstance(mentions, list) else (),
                            count=record.origin == own or not shared_counts,
                        )
                    )
                    continue
                if posts:
                    self._delivery.deliver_many(posts)
                    posts = []
                self._events.apply(record.stream, record.payload, local=False, notify=record.origin != own)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                self.malformed += 1
                log.warning("skipping a log record of %s at %d: %s", record.stream, record.offset, exc)
        if posts:
            self._delivery.deliver_many(posts)
        if started:
            tracing.record_spans("comment.deliver", [r.trace for r in records], started)
