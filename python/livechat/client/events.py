"""What a ``LiveChatClient`` hands its user: typed events built from the server's messages.

Field names follow docs/protocol.md spelled out (``text`` for ``x``, ``ts_ms`` for ``ts``...). The
server is trusted to follow the protocol, but a field it leaves out decodes to a neutral value
rather than raising, so a newer server with extra or missing optional fields never breaks a client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from livechat.protocol.codes import EventKind, StateKey

#: Where a comment came from: a broadcast tick, a message to this connection only (its own sampled-out
#: or shadowed comment, a mention), or the ``missed`` list of a reconnect snapshot.
CommentSource = Literal["tick", "direct", "missed"]


def _int_or_none(value: Any) -> int | None:
    return value if type(value) is int else None


@dataclass(frozen=True, slots=True)
class Comment:
    stream: str
    id: int
    user: str
    name: str
    text: str
    ts_ms: int
    reply_to: int | None = None
    mentions: tuple[str, ...] = ()
    # "mod" or "bc" (broadcaster), None for viewers.
    badge: str | None = None
    source: CommentSource = "tick"

    @classmethod
    def from_wire(cls, stream: str, raw: Mapping[str, Any], source: CommentSource) -> Comment:
        mentions = raw.get("m")
        return cls(
            stream=stream,
            id=int(raw["id"]),
            user=str(raw.get("u", "")),
            name=str(raw.get("n", raw.get("u", ""))),
            text=str(raw.get("x", "")),
            ts_ms=int(raw.get("ts", 0)),
            reply_to=_int_or_none(raw.get("r")),
            mentions=tuple(str(m) for m in mentions) if isinstance(mentions, list) else (),
            badge=raw.get("b") if isinstance(raw.get("b"), str) else None,
            source=source,
        )


@dataclass(frozen=True, slots=True)
class Modes:
    slow_s: int = 0
    # Followers-only minimum follow age in seconds; None = off (0 = any follower).
    followers_min_age_s: int | None = None
    comments_off: bool = False

    @classmethod
    def from_wire(cls, raw: Any) -> Modes:
        if not isinstance(raw, Mapping):
            return cls()
        return cls(int(raw.get("slow") or 0), _int_or_none(raw.get("fo")), bool(raw.get("off")))


@dataclass(frozen=True, slots=True)
class Counts:
    comments: int
    viewers: int

    @classmethod
    def from_wire(cls, raw: Any) -> Counts | None:
        if not isinstance(raw, Mapping):
            return None
        return cls(int(raw.get("c") or 0), int(raw.get("v") or 0))


@dataclass(frozen=True, slots=True)
class Tier:
    """Adaptive sampling: ``level`` > 0 means "chat is moving fast" (show the banner)."""

    level: int
    percent_broadcast: float
    rate: float

    @property
    def moving_fast(self) -> bool:
        return self.level > 0

    @classmethod
    def from_wire(cls, raw: Any) -> Tier | None:
        if not isinstance(raw, Mapping):
            return None
        return cls(int(raw.get("lvl") or 0), float(raw.get("pct") or 0.0), float(raw.get("rate") or 0.0))


def _reactions(raw: Any) -> dict[str, int] | None:
    if not isinstance(raw, Mapping):
        return None
    return {str(k): int(v) for k, v in raw.items()}


def _likes(raw: Any) -> dict[int, int] | None:
    if not isinstance(raw, Mapping):
        return None
    return {int(k): int(v) for k, v in raw.items()}


def _comment_or_none(stream: str, raw: Any, source: CommentSource) -> Comment | None:
    return Comment.from_wire(stream, raw, source) if isinstance(raw, Mapping) else None


@dataclass(frozen=True, slots=True)
class Deleted:
    stream: str
    id: int
    # A shadow-ban tombstone: the user named here (the author) keeps seeing the comment.
    keep: str | None = None

    def hides_for(self, user_id: str | None) -> bool:
        """Whether a client signed in as ``user_id`` removes the comment."""
        return self.keep is None or self.keep != user_id


@dataclass(frozen=True, slots=True)
class Purged:
    stream: str
    user: str


@dataclass(frozen=True, slots=True)
class Banned:
    stream: str
    user: str
    # None = permanent ban; else the end of a timeout, Unix ms.
    until_ms: int | None


@dataclass(frozen=True, slots=True)
class Unbanned:
    stream: str
    user: str


@dataclass(frozen=True, slots=True)
class Pinned:
    stream: str
    # None = unpinned.
    comment: Comment | None


@dataclass(frozen=True, slots=True)
class Highlighted:
    stream: str
    id: int


@dataclass(frozen=True, slots=True)
class ModesChanged:
    stream: str
    modes: Modes


@dataclass(frozen=True, slots=True)
class StateChanged:
    """State slots of one tick; a slot that did not change is None."""

    stream: str
    counts: Counts | None = None
    reactions: dict[str, int] | None = None
    likes: dict[int, int] | None = None
    tier: Tier | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """The server may have missed events of this stream; the client re-joins with its last id by
    itself and a ``Snapshot`` follows."""

    stream: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A join's reply: the room as of now. After a reconnect (``recovered``) it also says what was
    missed: ``gap`` False = ``missed`` and ``deleted`` are complete (the client also emits them as
    ``Comment(source="missed")`` and ``Deleted`` events); ``gap`` True = they cannot be listed:
    drop your view, show ``recent`` and page ``history`` if you need more."""

    stream: str
    role: str
    recent: tuple[Comment, ...]
    pin: Comment | None
    highlights: tuple[int, ...]
    counts: Counts | None
    reactions: dict[str, int]
    likes: dict[int, int]
    tier: Tier | None
    modes: Modes
    last_id: int
    recovered: bool = False
    gap: bool = False
    missed: tuple[Comment, ...] = ()
    deleted: tuple[int, ...] = ()
    #: Since when this user follows the channel (epoch seconds); None: not following (or unknown).
    follow_since: float | None = None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Snapshot:
        stream = str(raw["s"])
        recent = raw.get("recent") or []
        missed = raw.get("missed") or []
        return cls(
            stream=stream,
            role=str(raw.get("role", "viewer")),
            recent=tuple(Comment.from_wire(stream, c, "tick") for c in recent),
            pin=_comment_or_none(stream, raw.get("pin"), "tick"),
            highlights=tuple(int(i) for i in raw.get("hl") or []),
            counts=Counts.from_wire(raw.get(StateKey.COUNTS)),
            reactions=_reactions(raw.get(StateKey.REACTIONS)) or {},
            likes=_likes(raw.get(StateKey.LIKES)) or {},
            tier=Tier.from_wire(raw.get(StateKey.TIER)),
            modes=Modes.from_wire(raw.get("modes")),
            last_id=int(raw.get("last") or 0),
            recovered="gap" in raw,
            gap=bool(raw.get("gap")),
            missed=tuple(Comment.from_wire(stream, c, "missed") for c in missed),
            deleted=tuple(int(i) for i in raw.get("del") or []),
            follow_since=float(raw["fl"]) if raw.get("fl") is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Notice:
    """Something about this user: ``banned``, ``timed_out``, ``unbanned``, ``kicked`` (the client
    then does not re-join that stream after its reconnect)."""

    stream: str
    code: str
    message: str
    until_ms: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ServerErrorEvent:
    """An ``err`` that answers no pending request (e.g. the one sent just before an auth close)."""

    code: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Disconnected:
    code: int
    reason: str
    # True: the client will not reconnect (closed by you, or the token was refused).
    final: bool


@dataclass(frozen=True, slots=True)
class Reconnecting:
    attempt: int
    delay_s: float


@dataclass(frozen=True, slots=True)
class Reconnected:
    """Connected again; every joined stream was re-joined (its ``Snapshot`` came first)."""

    attempts: int


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event kind this client does not know (a newer server); kept raw."""

    stream: str
    raw: dict[str, Any]


Event = (
    Comment
    | Deleted
    | Purged
    | Banned
    | Unbanned
    | Pinned
    | Highlighted
    | ModesChanged
    | StateChanged
    | Gap
    | Snapshot
    | Notice
    | ServerErrorEvent
    | Disconnected
    | Reconnecting
    | Reconnected
    | UnknownEvent
)


def stream_event(stream: str, raw: Mapping[str, Any], source: CommentSource) -> Event:
    """One event of a tick's or ``ev`` message's ``e`` list."""
    kind = raw.get("k")
    if kind == EventKind.COMMENT:
        return Comment.from_wire(stream, raw, source)
    if kind == EventKind.DELETE:
        keep = raw.get("keep")
        return Deleted(stream, int(raw["id"]), keep if isinstance(keep, str) else None)
    if kind == EventKind.PURGE:
        return Purged(stream, str(raw["u"]))
    if kind == EventKind.BAN:
        return Banned(stream, str(raw["u"]), _int_or_none(raw.get("until")))
    if kind == EventKind.UNBAN:
        return Unbanned(stream, str(raw["u"]))
    if kind == EventKind.PIN:
        return Pinned(stream, _comment_or_none(stream, raw.get("c"), source))
    if kind == EventKind.HIGHLIGHT:
        return Highlighted(stream, int(raw["id"]))
    if kind == EventKind.MODES:
        return ModesChanged(stream, Modes.from_wire(raw))
    if kind == EventKind.GAP:
        return Gap(stream)
    return UnknownEvent(stream, dict(raw))


def state_changed(stream: str, slots: Mapping[str, Any]) -> StateChanged:
    return StateChanged(
        stream,
        counts=Counts.from_wire(slots.get(StateKey.COUNTS)),
        reactions=_reactions(slots.get(StateKey.REACTIONS)),
        likes=_likes(slots.get(StateKey.LIKES)),
        tier=Tier.from_wire(slots.get(StateKey.TIER)),
    )


@dataclass(frozen=True, slots=True)
class Ack:
    """A stored comment. ``duplicate``: a repost of a known cmid got the first ack back."""

    stream: str
    cmid: str
    id: int
    ts_ms: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class HistoryPage:
    stream: str
    # Newest first.
    items: tuple[Comment, ...]
    # Older comments remain: ask again with ``before=items[-1].id``.
    more: bool


@dataclass(frozen=True, slots=True)
class TopPage:
    """The reply to ``top``: the stream's most engaged comments, best first. ``scores[i]`` belongs to
    ``items[i]``: likes + 2 x replies + a badge bonus - 2 x the author's strikes (docs/protocol.md §2),
    always above 0. The server recomputes a stream's ranking at most once a second."""

    stream: str
    items: tuple[Comment, ...]
    scores: tuple[int, ...]

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> TopPage:
        stream = str(raw.get("s", ""))
        items = tuple(Comment.from_wire(stream, c, "tick") for c in raw.get("items") or ())
        scores = tuple(int(s) for s in raw.get("scores") or ())
        if len(scores) != len(items):
            # A score per item is the protocol; a short or long list must not misalign them.
            scores = (scores + (0,) * len(items))[: len(items)]
        return cls(stream, items, scores)
