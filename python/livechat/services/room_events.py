"""What one room event does on this edge, wherever it came from.

A moderation or room event (delete, purge, ban, unban, kick, pin, highlight, modes) reaches an edge from
its own moderator (``livechat.services.actions``, after the decision is stored) or from another
edge (``livechat.services.remote``). Both hand it to ``RoomEvents.apply``, which changes the room
(``Room.apply``), settles engagement counts, puts the event on the viewers' priority lane (which
slow consumers never skip) and tells the users it concerns (ban, unban and kick notices, the
disconnect of a ban or a kick). Comments take the posting path (``livechat.services.comments``), not this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from livechat.protocol import CloseCode, EventKind, encode_notice, unpackb
from livechat.protocol.audience import KICKED_NOTICE
from livechat.services.context import ChatContext
from livechat.services.room import ban_expiry


class RoomEvents:
    __slots__ = ("_ctx",)

    def __init__(self, ctx: ChatContext) -> None:
        self._ctx = ctx

    def apply(
        self,
        stream: str,
        event_bytes: bytes,
        *,
        local: bool,
        removed: Iterable[int] = (),
        reason: str | None = None,
        notify: bool = True,
    ) -> set[int]:
        """Apply one encoded event; returns the comment ids it removed (here or in ``removed``).

        ``local``: this edge decided it, so it also goes to the other edges (``Fanout.priority``)
        and this edge's engagement counts are the cluster's to lower. ``removed``: comment ids the
        decision removed from stores beyond this edge's memory (a purge's history rows).
        ``reason``: shown in a ban's notice (events between edges carry none). ``notify``: tell
        the users it concerns (False for this edge's own event coming back from the shared log:
        they were told when it was decided).
        """
        ctx = self._ctx
        event: dict[str, Any] = unpackb(event_bytes)
        room = ctx.rooms.get(stream)
        gone = set(removed)
        if room is not None:
            gone.update(room.apply(event, event_bytes, ctx.clock.time()))
        if gone:
            # With a shared Registry the deciding edge already lowered the cluster's comment count.
            ctx.engagement.forget(stream, gone, count=local or not ctx.engagement.shared)
        if local:
            ctx.fanout.priority(stream, event_bytes)
        else:
            ctx.outbox.publish(stream, event_bytes, priority=True)
        kind = event.get("k")
        if not notify:
            return gone
        if kind == EventKind.BAN:
            self._enforce_ban(stream, str(event["u"]), event.get("until"), reason)
        elif kind == EventKind.UNBAN:
            self._notify(stream, str(event["u"]), encode_notice(stream, "unbanned", "you may comment again"))
        elif kind == EventKind.KICK:
            self._kick(stream, str(event["u"]))
        return gone

    def _notify(self, stream: str, user_id: str, data: bytes) -> list[int]:
        conns = self._ctx.sessions.conns_in(user_id, stream)
        if conns:
            self._ctx.outbox.send_many(conns, data)
        return conns

    def _kick(self, stream: str, user_id: str) -> None:
        """Close this edge's connections of ``user_id`` that joined ``stream`` (4010 after a
        ``kicked`` notice); nothing is stored, so the user may reconnect and rejoin."""
        notice = encode_notice(stream, KICKED_NOTICE, "a moderator removed you from the stream")
        for conn in self._notify(stream, user_id, notice):
            self._ctx.outbox.close(conn, CloseCode.KICKED, f"kicked from {stream}")

    def _enforce_ban(self, stream: str, user_id: str, until_ms: Any, reason: str | None) -> None:
        """Tell this edge's connections of ``user_id`` in ``stream`` about a ban or timeout. A
        permanent ban also disconnects them (close 1008 after the notice); a timed-out user stays
        and reads on."""
        if ban_expiry({"until": until_ms}) is not None:
            notice = encode_notice(stream, "timed_out", "you were timed out", until=until_ms, reason=reason)
            self._notify(stream, user_id, notice)
            return
        notice = encode_notice(stream, "banned", "you were banned", reason=reason)
        for conn in self._notify(stream, user_id, notice):
            self._ctx.outbox.close(conn, CloseCode.POLICY, f"banned from {stream}")
