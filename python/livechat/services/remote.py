"""Events from other edges: ``RemoteEvents`` is the Broker handler of one edge.

Between edges an event travels as a tag byte plus its msgpack bytes (``livechat.services.fanout``).
A comment (``B`` broadcast, ``S`` sampled out) is counted and delivered at once. A moderation or
room event (``P``) is first written to this edge's stores, then applied like this edge's own
decisions (``RoomEvents.apply``); these run one after the other, in broker order.

Why the stores first: stores may be per edge (``livechat serve --broker redis://…`` keeps SQLite
under each edge's data dir). Without the write a deleted comment would come back from this edge's
history, and a ban, room mode, pin or highlight decided elsewhere would be forgotten when this edge
restarts and reloads the room. With shared stores the writes repeat what the deciding edge wrote:
deletes, bans, unbans, modes, pins and highlights are idempotent (a repeated highlight stays the
newest, kept once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from livechat.ports.errors import BackendError
from livechat.ports.meta import Ban
from livechat.protocol import EventKind, encode_direct, packb, unpackb
from livechat.services.context import ChatContext
from livechat.services.fanout import TAG_BROADCAST, TAG_PRIORITY, TAG_SAMPLED
from livechat.services.room import EVENT_ACTOR, Room, ban_expiry, modes_from, pin_from
from livechat.services.room_events import RoomEvents

log = logging.getLogger(__name__)


async def store_remote(ctx: ChatContext, stream: str, event: dict[str, Any]) -> None:
    """Write one priority event from another edge to this edge's stores (BackendError on failure)."""
    kind = event.get("k")
    meta = ctx.meta
    if kind == EventKind.DELETE:
        await ctx.history.delete(stream, int(event["id"]))
    elif kind == EventKind.PURGE:
        await ctx.history.delete_user(stream, str(event["u"]))
    elif kind == EventKind.BAN:
        await meta.ban(Ban(stream, str(event["u"]), EVENT_ACTOR, "", ctx.clock.time(), ban_expiry(event)))
    elif kind == EventKind.UNBAN:
        await meta.unban(stream, str(event["u"]))
    elif kind == EventKind.MODES:
        room = ctx.rooms.get(stream)
        current = room.modes if room is not None else await meta.get_modes(stream)
        await meta.set_modes(stream, modes_from(current, event))
    elif kind == EventKind.HIGHLIGHT:
        await meta.add_highlight(stream, int(event["id"]))
    elif kind == EventKind.PIN:
        comment = event.get("c")
        if comment is None:
            await meta.clear_pin(stream)
        else:
            await meta.set_pin(pin_from(stream, comment, ctx.clock.time()))


class RemoteEvents:
    """The Broker handler: other edges' comments and room events, applied on this edge."""

    __slots__ = ("_ctx", "_events", "_ranked", "_recent_buffer", "_tail")

    def __init__(self, ctx: ChatContext, events: RoomEvents) -> None:
        self._ctx = ctx
        self._events = events
        self._recent_buffer = ctx.config.rooms.recent_buffer
        self._ranked = ctx.config.sampling.ranked
        # The last priority event being applied (they run in arrival order).
        self._tail: asyncio.Task[None] | None = None

    def on_message(self, stream: str, payload: bytes) -> None:
        """Apply one event another edge published."""
        if len(payload) < 2:
            return
        ctx = self._ctx
        tag = payload[0]
        event_bytes = payload[1:]
        event = unpackb(event_bytes)
        if tag == TAG_PRIORITY:
            previous = self._tail
            self._tail = ctx.background.spawn(
                self._priority(previous, stream, event, event_bytes), "remote priority event"
            )
            return
        if tag not in (TAG_BROADCAST, TAG_SAMPLED) or event.get("k") != EventKind.COMMENT:
            log.warning("dropping a remote event with tag %r on %s", tag, stream)
            return
        ctx.sampler.observe(stream, ctx.clock.monotonic())
        ctx.engagement.comment_posted(stream, int(event["id"]), count=not ctx.engagement.shared)
        if tag == TAG_BROADCAST:
            ctx.outbox.publish(stream, event_bytes)
            room = ctx.rooms.get(stream)
            if room is not None:
                room.apply(event, event_bytes, ctx.clock.time())
            return
        targets = ctx.sessions.conns_in(str(event["u"]), stream)
        mentions = event.get("m")
        if isinstance(mentions, list):
            targets.extend(ctx.sessions.mentioned_conns([str(m) for m in mentions], stream))
        parent_id = event.get("r")
        if isinstance(parent_id, int) and self._ranked:
            # Ranked tiers tell the replied-to viewer directly, on every edge (as on the posting one).
            room = ctx.rooms.get(stream)
            parent = room.recent.get(parent_id) if room is not None else None
            if parent is not None:
                targets.extend(ctx.sessions.conns_in(str(unpackb(parent).get("u", "")), stream))
        if targets:
            ctx.outbox.send_many(sorted(set(targets)), encode_direct(stream, [event_bytes]))

    async def _priority(
        self, previous: asyncio.Task[Any] | None, stream: str, event: dict[str, Any], event_bytes: bytes
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        try:
            await store_remote(self._ctx, stream, event)
        except BackendError as exc:
            log.warning("remote %s on %s not stored on this edge: %s", event.get("k"), stream, exc)
        self._events.apply(stream, event_bytes, local=False)

    def on_control(self, payload: bytes) -> None:
        log.debug("ignoring a control message of %d bytes", len(payload))

    def on_gap(self, streams: Sequence[str]) -> None:
        """The broker may have lost events of these streams: refill memory from history and tell
        clients to resync (a priority ``gap`` event: rejoin with the last id seen)."""
        ctx = self._ctx
        for stream in streams:
            room = ctx.rooms.get(stream)
            if room is None:
                continue
            ctx.outbox.publish(stream, packb({"k": EventKind.GAP.value}), priority=True)
            ctx.background.spawn(self._refill(room), "refill after broker gap")

    async def _refill(self, room: Room) -> None:
        stored = await self._ctx.history.recent(room.stream, self._recent_buffer)
        room.recent.load(
            [(c.comment_id, c.user_id, c.payload) for c in stored],
            complete=len(stored) < self._recent_buffer,
        )
