"""MetaStore: streams, users, roles, follows, room modes, pins, highlights, bans, moderation records,
reputation.

Shaped after PostgreSQL (the cluster backend): small relational records, each write atomic and
durable, read-your-writes from the same process. Nothing here is on the per-viewer hot path; services
cache what they read per comment (modes, roles, bans) and refresh on change events.

Times are wall-clock seconds (``time.time()``). Methods taking ``now`` use it to judge expiry, so
tests and replays control the clock; None means the current time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol

#: ``stream_id`` used for site-wide records (a global ban, a global role).
GLOBAL_STREAM = "*"


class Role(StrEnum):
    """Roles in a stream, weakest first. A user with no stored role is a VIEWER."""

    VIEWER = "viewer"
    MODERATOR = "moderator"
    BROADCASTER = "broadcaster"


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream_id: str
    # The broadcaster: the channel followers follow.
    owner_id: str
    title: str = ""
    created_at: float = 0.0
    ended_at: float | None = None


@dataclass(frozen=True, slots=True)
class UserInfo:
    user_id: str
    display_name: str
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RoomModes:
    """Room modes: recoverable state sent in every snapshot. The defaults are an open room."""

    # Minimum seconds between two comments of one non-moderator (0 = off).
    slow_seconds: int = 0
    # Followers-only: None = off; otherwise minimum follow age in seconds (0 = any follower).
    followers_only_min_age_s: int | None = None
    comments_off: bool = False
    emote_only: bool = False
    # Hold for review (``livechat.services.moderation.hold``): "off", "open" or "closed"; None =
    # the edge's default (``chat.moderation.hold``).
    hold: str | None = None
    # Its longest wait for the classifier, ms; 0 = the edge's default (``chat.moderation.hold_ms``).
    hold_ms: int = 0


@dataclass(frozen=True, slots=True)
class Pin:
    stream_id: str
    comment_id: int
    pinned_by: str
    # The pinned comment's encoded event, so a snapshot does not need a history lookup.
    payload: bytes
    pinned_at: float
    # None = until unpinned.
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Ban:
    """A ban (``expires_at`` None) or a timeout (``expires_at`` set). ``stream_id`` may be GLOBAL_STREAM."""

    stream_id: str
    user_id: str
    banned_by: str
    reason: str
    created_at: float
    expires_at: float | None = None


class ModActionKind(StrEnum):
    DELETE_COMMENT = "delete_comment"
    PURGE_USER = "purge_user"
    BAN = "ban"
    TIMEOUT = "timeout"
    UNBAN = "unban"
    PIN = "pin"
    UNPIN = "unpin"
    SET_MODES = "set_modes"
    SET_ROLE = "set_role"
    APPROVE = "approve"
    REJECT = "reject"
    SHADOW_BAN = "shadow_ban"
    KICK = "kick"


@dataclass(frozen=True, slots=True)
class ModAction:
    """One moderation action, for the audit trail. ``action_id`` is assigned by the store (0 before)."""

    stream_id: str
    actor_id: str
    kind: ModActionKind
    created_at: float
    target_user_id: str | None = None
    target_comment_id: int | None = None
    reason: str = ""
    action_id: int = 0


@dataclass(frozen=True, slots=True)
class UserReport:
    """A viewer reporting a comment or a user. ``report_id`` is assigned by the store (0 before)."""

    stream_id: str
    reporter_id: str
    target_user_id: str
    reason: str
    created_at: float
    target_comment_id: int | None = None
    report_id: int = 0


class FlagStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class FlaggedComment:
    """A comment held (or already shown) and queued for human review."""

    stream_id: str
    comment_id: int
    user_id: str
    payload: bytes
    reason: str
    # Moderator model score in [0, 1], or -1 when the flag came from a rule or reports.
    score: float
    created_at: float
    status: FlagStatus = FlagStatus.PENDING
    resolved_by: str | None = None
    resolved_at: float | None = None


@dataclass(frozen=True, slots=True)
class Reputation:
    """Counters about one user, used by moderation. Unknown counters read as 0."""

    user_id: str
    counters: dict[str, int] = field(default_factory=dict)

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)


class EngagementTotals(NamedTuple):
    """A stream's stored engagement: what ``MetaStore.engagement`` reads back."""

    # emoji -> reactions ever (only emojis that were ever added).
    reactions: dict[str, int]
    # Visible comments (posts minus deletions).
    comments: int
    # comment id -> likes (likes minus unlikes), for comments ever liked among those asked for.
    likes: dict[int, int]


#: Rows a store's ``find_user_by_name`` reads: enough to tell one match from several per level.
NAME_CANDIDATES = 16


def handle_key(text: str) -> str:
    """How a user id or display name compares with an @mention: case-folded (ASCII), spaces
    removed. The stores compute the same key in SQL: ``lower(replace(column, ' ', ''))``."""
    return text.replace(" ", "").lower()


def named_user(name: str, candidates: Sequence[UserInfo]) -> UserInfo | None:
    """The user the mention ``name`` names among ``candidates`` (the rows whose id or display
    name has the key of ``name``), tried in this order, the first level with exactly one user
    winning: the id equal to ``name``; the id equal ignoring case; the display name equal
    ignoring case and spaces. Several users on the deciding level: None (an ambiguous mention
    names nobody, rather than the wrong person)."""
    key = handle_key(name)
    levels = (
        [u for u in candidates if u.user_id == name],
        [u for u in candidates if u.user_id.lower() == name.lower()],
        [u for u in candidates if handle_key(u.display_name) == key],
    )
    for level in levels:
        if level:
            return level[0] if len(level) == 1 else None
    return None


class MetaStore(Protocol):
    """Relational metadata of streams, users and moderation.

    Guarantees every backend keeps:
    - **Durability**: a write has committed when its coroutine returns (SQLite: WAL commit).
    - **Atomicity**: each method is one transaction; counters (``bump_reputation``) are atomic
      increments, never read-modify-write races between edges.
    - **Read-your-writes** within one process; across processes, once the write has returned.
    - **Expiry**: bans/timeouts and pins past ``expires_at`` read as absent (they may linger in
      storage until ``purge_expired``).
    """

    # -- streams and users ---------------------------------------------------------------------
    async def upsert_stream(self, stream: StreamInfo) -> None:
        """Create or replace the stream's record."""

    async def get_stream(self, stream_id: str) -> StreamInfo | None: ...

    async def upsert_user(self, user: UserInfo) -> None:
        """Create or replace the user's record."""

    async def get_user(self, user_id: str) -> UserInfo | None: ...

    async def find_user_by_name(self, name: str) -> UserInfo | None:
        """The user an @mention names (``name`` as written after the @): see ``named_user`` for
        the rule. None when no user matches, or when the match is ambiguous."""
        ...

    # -- roles ---------------------------------------------------------------------------------
    async def set_role(self, stream_id: str, user_id: str, role: Role) -> None:
        """Set the user's role in a stream (GLOBAL_STREAM: everywhere). VIEWER removes the record."""

    async def get_role(self, stream_id: str, user_id: str) -> Role:
        """The stronger of the user's role in ``stream_id`` and their GLOBAL_STREAM role; the stream
        owner is BROADCASTER; VIEWER when nothing is stored."""
        ...

    async def list_roles(self, stream_id: str) -> dict[str, Role]:
        """Users with a stored non-viewer role in exactly ``stream_id``."""
        ...

    # -- follows (followers-only mode) ---------------------------------------------------------
    async def follow(self, channel_id: str, user_id: str, followed_at: float) -> None:
        """Record that ``user_id`` follows ``channel_id`` (a broadcaster). A repeat keeps the FIRST
        follow time, so re-following cannot reset the follow age."""

    async def unfollow(self, channel_id: str, user_id: str) -> bool:
        """Remove the follow; True when it existed."""
        ...

    async def followed_since(self, channel_id: str, user_id: str) -> float | None:
        """When ``user_id`` started following, or None."""
        ...

    # -- room modes ----------------------------------------------------------------------------
    async def set_modes(self, stream_id: str, modes: RoomModes) -> None:
        """Replace the stream's modes."""

    async def get_modes(self, stream_id: str) -> RoomModes:
        """The stream's modes; RoomModes() when never set."""
        ...

    # -- pins ----------------------------------------------------------------------------------
    async def set_pin(self, pin: Pin) -> None:
        """Pin a comment, replacing the stream's previous pin (one pin per stream)."""

    async def clear_pin(self, stream_id: str) -> bool:
        """Remove the pin; True when one was set (and unexpired)."""
        ...

    async def get_pin(self, stream_id: str, now: float | None = None) -> Pin | None:
        """The current pin, or None when none or expired."""
        ...

    # -- highlights ----------------------------------------------------------------------------
    async def add_highlight(self, stream_id: str, comment_id: int) -> None:
        """Highlight a comment of the stream. Highlighting it again makes it the newest (kept once)."""

    async def list_highlights(self, stream_id: str, limit: int) -> list[int]:
        """Comment ids of the ``limit`` newest highlights, oldest first (the order a snapshot
        lists them)."""
        ...

    # -- bans and timeouts ---------------------------------------------------------------------
    async def ban(self, ban: Ban) -> None:
        """Ban (or time out) a user, replacing any earlier ban of them in that stream."""

    async def unban(self, stream_id: str, user_id: str) -> bool:
        """Lift the ban; True when an unexpired one existed."""
        ...

    async def get_ban(self, stream_id: str, user_id: str, now: float | None = None) -> Ban | None:
        """The ban in force for the user in ``stream_id``: a GLOBAL_STREAM ban counts too (the one
        ending later wins; a permanent ban beats any timeout). None when none is in force."""
        ...

    async def list_bans(self, stream_id: str, now: float | None = None) -> list[Ban]:
        """Bans in force in exactly ``stream_id``, oldest first."""
        ...

    # -- moderation records --------------------------------------------------------------------
    async def record_action(self, action: ModAction) -> int:
        """Append to the audit trail; returns the new action_id (increasing)."""
        ...

    async def list_actions(self, stream_id: str, limit: int, before_id: int | None = None) -> list[ModAction]:
        """Audit trail of a stream, newest first, paged by action_id."""
        ...

    async def add_report(self, report: UserReport) -> int:
        """Store a user report; returns its report_id. One reporter reporting the same comment twice
        is stored once (the first report_id is returned)."""
        ...

    async def list_reports(
        self, stream_id: str, limit: int, before_id: int | None = None
    ) -> list[UserReport]:
        """Reports in a stream, newest first, paged by report_id."""
        ...

    async def count_reports(self, stream_id: str, comment_id: int) -> int:
        """How many distinct reporters reported this comment."""
        ...

    async def flag_comment(self, flagged: FlaggedComment) -> bool:
        """Queue a comment for review; True when newly queued (a comment is queued once)."""
        ...

    async def list_flagged(
        self, stream_id: str, limit: int, status: FlagStatus = FlagStatus.PENDING
    ) -> list[FlaggedComment]:
        """Flagged comments with ``status``, oldest first (a review queue is worked in order)."""
        ...

    async def resolve_flag(
        self, stream_id: str, comment_id: int, status: FlagStatus, resolved_by: str, now: float | None = None
    ) -> bool:
        """Approve or reject a PENDING flag; True when it was pending (a second resolve is False,
        so two moderators acting at once cannot both win)."""
        ...

    # -- reputation ----------------------------------------------------------------------------
    async def bump_reputation(self, user_id: str, counter: str, delta: int = 1) -> int:
        """Atomically add ``delta`` to one counter of the user; returns the new value."""
        ...

    async def get_reputation(self, user_id: str) -> Reputation: ...

    # -- engagement (reactions, comment count, likes) ------------------------------------------
    async def add_engagement(
        self, stream_id: str, reactions: Mapping[str, int], comments: int, likes: Mapping[int, int]
    ) -> None:
        """Add deltas (any sign) to the stream's totals: per-emoji reactions, the comment count and
        per-comment likes. One transaction: all of them land or none (so a retry after a failure
        never counts a part twice); concurrent adds from several edges sum, never overwrite."""

    async def engagement(self, stream_id: str, like_ids: Sequence[int] | None = None) -> EngagementTotals:
        """The stream's totals, read in one transaction (one consistent point in time). Likes are
        read for ``like_ids`` only (None: every comment of the stream ever liked); a comment never
        liked is absent. A stream with nothing stored reads as ({}, 0, {})."""
        ...

    # -- housekeeping --------------------------------------------------------------------------
    async def purge_expired(self, now: float | None = None) -> int:
        """Delete expired bans and pins from storage; returns how many rows went."""
        ...

    async def aclose(self) -> None:
        """Finish pending writes and release the backing store. Idempotent."""
