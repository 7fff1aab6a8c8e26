"""One stream's room state on this edge, and the one rule that changes it: ``Room.apply(event)``.

A room holds what a joiner's snapshot and the write checks need without a store round trip: modes,
the hold-for-review setting, pin, highlights, bans, the recent comments. Every room event (a
comment, a delete, a purge, a ban, an unban, a pin, a highlight, a mode change) changes it through
``apply``, the same way whether this edge's moderator made it, another edge did, or it is read back
from the comment log: there is no second coding of the rule. ``apply`` is pure state (no I/O); what
the event means for connections and stores is the caller's (``livechat.services.room_events``).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any, Final

from livechat.ports.meta import Ban, Pin, RoomModes
from livechat.protocol import EventKind, packb
from livechat.services.moderation.hold import HoldPolicy, policy_from_event
from livechat.services.recent import RecentBuffer

HIGHLIGHTS_KEPT: Final = 5
#: ``banned_by`` / ``pinned_by`` of a decision known only from its event (events name no actor).
EVENT_ACTOR: Final = "remote-edge"


def modes_from(current: RoomModes, event: dict[str, Any]) -> RoomModes:
    """``current`` with the fields a ``modes`` event carries (hold for review only when it does)."""
    modes = dataclasses.replace(
        current,
        slow_seconds=int(event["slow"]),
        followers_only_min_age_s=event["fo"],
        comments_off=bool(event["off"]),
    )
    hold = event.get("hold")
    if isinstance(hold, str):
        modes = dataclasses.replace(modes, hold=hold, hold_ms=int(event.get("hold_ms") or 0))
    return modes


def pin_from(stream: str, comment: dict[str, Any], now: float) -> Pin:
    """The Pin a ``pin`` event describes (the pinned comment travels inside the event)."""
    return Pin(stream, int(comment["id"]), EVENT_ACTOR, packb(comment), now)


def ban_expiry(event: dict[str, Any]) -> float | None:
    """Wall-clock expiry of a ``ban`` event (``until`` is in ms; nil = permanent)."""
    until = event.get("until")
    return until / 1000.0 if isinstance(until, int) else None


def ban_in_force(bans: dict[str, float | None], user_id: str, now: float) -> tuple[bool, float | None]:
    """(banned, expiry) for one ban table; expired entries are dropped on sight."""
    if user_id not in bans:
        return False, None
    expires = bans[user_id]
    if expires is not None and expires <= now:
        del bans[user_id]
        return False, None
    return True, expires


class Room:
    __slots__ = (
        "bans",
        "highlights",
        "hold",
        "idle_since",
        "modes",
        "owner_id",
        "pin",
        "recent",
        "stream",
        "viewers",
    )

    def __init__(self, stream: str, owner_id: str, capacity: int, floor: int) -> None:
        self.stream = stream
        # The channel followers follow (the stream's owner; the stream id when unregistered).
        self.owner_id = owner_id
        self.modes = RoomModes()
        # Hold for review (``livechat.services.moderation.hold``); None: the edge's default
        # (``chat.moderation.hold``) until a ``modes`` event sets one.
        self.hold: HoldPolicy | None = None
        self.pin: Pin | None = None
        self.highlights: deque[int] = deque(maxlen=HIGHLIGHTS_KEPT)
        # user id -> wall-clock expiry (None = permanent)
        self.bans: dict[str, float | None] = {}
        self.recent = RecentBuffer(capacity, floor)
        self.viewers = 0
        self.idle_since: float | None = None

    def apply_ban(self, ban: Ban) -> None:
        """A stored ban (room load)."""
        self.bans[ban.user_id] = ban.expires_at

    def apply(self, event: dict[str, Any], event_bytes: bytes, now: float) -> list[int]:
        """Change the room as ``event`` says; returns the comment ids it removed (delete, purge).

        ``event_bytes`` is the event as encoded (a comment is kept as is for snapshots); ``now`` is
        wall-clock seconds (a pin's time). Unknown kinds change nothing.
        """
        kind = event.get("k")
        if kind == EventKind.COMMENT:
            self.recent.append(int(event["id"]), str(event["u"]), event_bytes)
        elif kind == EventKind.DELETE:
            comment_id = int(event["id"])
            return [comment_id] if self.recent.remove(comment_id) else []
        elif kind == EventKind.PURGE:
            return self.recent.remove_user(str(event["u"]))
        elif kind == EventKind.BAN:
            self.bans[str(event["u"])] = ban_expiry(event)
        elif kind == EventKind.UNBAN:
            self.bans.pop(str(event["u"]), None)
        elif kind == EventKind.PIN:
            comment = event.get("c")
            self.pin = None if comment is None else pin_from(self.stream, comment, now)
        elif kind == EventKind.HIGHLIGHT:
            self.highlights.append(int(event["id"]))
        elif kind == EventKind.MODES:
            self.modes = modes_from(self.modes, event)
            self.hold = policy_from_event(event, self.hold)
        return []
