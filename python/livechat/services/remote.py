"""Another edge's moderation and room decisions, written to this edge's stores.

The deciding edge stores a decision (``livechat.services.actions``) and publishes it on the
priority lane. An edge receiving it writes it to its own HistoryStore and MetaStore before telling
its viewers, because stores may be per edge (``livechat serve --broker redis://…`` keeps SQLite
under each edge's data dir): without this a deleted comment would come back from this edge's
history, and a ban, room mode or pin decided elsewhere would be forgotten when this edge restarts
and reloads the room. With a shared store (one MetaStore and HistoryStore for the cluster) the
writes repeat what the deciding edge wrote: deletes, bans, unbans, modes and pins are idempotent.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from livechat.ports.meta import Ban, Pin, RoomModes
from livechat.protocol import EventKind, packb
from livechat.services.context import ChatContext

#: ``banned_by`` / ``pinned_by`` of a decision copied from another edge (its event names no actor).
REMOTE_ACTOR: Final = "remote-edge"


def modes_from(current: RoomModes, event: dict[str, Any]) -> RoomModes:
    """``current`` with the fields a ``modes`` event carries."""
    return dataclasses.replace(
        current,
        slow_seconds=int(event["slow"]),
        followers_only_min_age_s=event["fo"],
        comments_off=bool(event["off"]),
    )


def pin_from(stream: str, comment: dict[str, Any], now: float) -> Pin:
    return Pin(stream, int(comment["id"]), REMOTE_ACTOR, packb(comment), now)


async def store_remote(ctx: ChatContext, stream: str, event: dict[str, Any]) -> None:
    """Write one priority event from another edge to this edge's stores (BackendError on failure)."""
    kind = event.get("k")
    meta = ctx.meta
    if kind == EventKind.DELETE:
        await ctx.history.delete(stream, int(event["id"]))
    elif kind == EventKind.PURGE:
        await ctx.history.delete_user(stream, str(event["u"]))
    elif kind == EventKind.BAN:
        until = event.get("until")
        expires = until / 1000.0 if isinstance(until, int) else None
        await meta.ban(Ban(stream, str(event["u"]), REMOTE_ACTOR, "", ctx.clock.time(), expires))
    elif kind == EventKind.UNBAN:
        await meta.unban(stream, str(event["u"]))
    elif kind == EventKind.MODES:
        room = ctx.rooms.get(stream)
        current = room.modes if room is not None else await meta.get_modes(stream)
        await meta.set_modes(stream, modes_from(current, event))
    elif kind == EventKind.PIN:
        comment = event.get("c")
        if comment is None:
            await meta.clear_pin(stream)
        else:
            await meta.set_pin(pin_from(stream, comment, ctx.clock.time()))
