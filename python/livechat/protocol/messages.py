"""The client messages, one dataclass per op (docs/protocol.md §2), as ``ClientDecoder`` returns them.

Every message carries ``rid``: the request id the reply echoes, None when the client sent none.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Join:
    rid: int | None
    stream: str
    # Newest comment id the client already has (reconnect); None on a first join.
    last_id: int | None


@dataclass(slots=True)
class Leave:
    rid: int | None
    stream: str


@dataclass(slots=True)
class Post:
    rid: int | None
    stream: str
    # NFC-normalised, stripped, 1..max_text_chars code points.
    text: str
    cmid: str
    reply_to: int | None


@dataclass(slots=True)
class React:
    rid: int | None
    stream: str
    emoji: str


@dataclass(slots=True)
class Like:
    rid: int | None
    stream: str
    comment_id: int
    # True for "like", False for "unlike".
    on: bool


@dataclass(slots=True)
class History:
    rid: int | None
    stream: str
    before: int | None
    limit: int


@dataclass(slots=True)
class Ping:
    rid: int | None


@dataclass(slots=True)
class Refresh:
    """A new token for this connection (same ``sub``), sent before the current one expires."""

    rid: int | None
    token: str


@dataclass(slots=True)
class Report:
    rid: int | None
    stream: str
    comment_id: int | None
    user: str | None
    reason: str


@dataclass(slots=True)
class DeleteComment:
    rid: int | None
    stream: str
    comment_id: int


@dataclass(slots=True)
class PurgeUser:
    rid: int | None
    stream: str
    user: str


@dataclass(slots=True)
class BanUser:
    """``ban`` (seconds None, permanent) or ``timeout`` (seconds set)."""

    rid: int | None
    stream: str
    user: str
    seconds: int | None
    reason: str


@dataclass(slots=True)
class UnbanUser:
    rid: int | None
    stream: str
    user: str


@dataclass(slots=True)
class PinComment:
    """``pin`` (comment_id set) or ``unpin`` (None)."""

    rid: int | None
    stream: str
    comment_id: int | None


@dataclass(slots=True)
class Highlight:
    rid: int | None
    stream: str
    comment_id: int


@dataclass(slots=True)
class SetSlowMode:
    rid: int | None
    stream: str
    seconds: int


@dataclass(slots=True)
class SetFollowersOnly:
    rid: int | None
    stream: str
    # None switches the mode off; 0 = any follower.
    min_age_s: int | None


@dataclass(slots=True)
class SetHold:
    """Hold for review in a stream: ``mode`` "off", "open" or "closed"; ``ms`` the longest wait
    (None: the edge's default)."""

    rid: int | None
    stream: str
    mode: str
    ms: int | None


@dataclass(slots=True)
class SetComments:
    rid: int | None
    stream: str
    enabled: bool


@dataclass(slots=True)
class Kick:
    rid: int | None
    stream: str
    user: str


@dataclass(slots=True)
class ModQueue:
    """A page of the moderation queue: pending flagged comments (oldest first, ``limit``) and
    reports (newest first, ``limit``, older than report id ``before``)."""

    rid: int | None
    stream: str
    limit: int
    before: int | None


@dataclass(slots=True)
class Review:
    """A moderator's decision on a flagged comment: approve (it stays) or dismiss (it is deleted)."""

    rid: int | None
    stream: str
    comment_id: int
    approve: bool


@dataclass(slots=True)
class Top:
    """The stream's top comments, at most ``limit``."""

    rid: int | None
    stream: str
    limit: int


@dataclass(slots=True)
class Follow:
    """Follow (``on``) or unfollow the channel the stream belongs to."""

    rid: int | None
    stream: str
    on: bool


ModeratorMessage = (
    DeleteComment
    | PurgeUser
    | BanUser
    | UnbanUser
    | PinComment
    | Highlight
    | SetSlowMode
    | SetFollowersOnly
    | SetComments
    | SetHold
    | Kick
    | ModQueue
    | Review
)
ClientMessage = (
    Join | Leave | Post | React | Like | History | Ping | Refresh | Report | Follow | Top | ModeratorMessage
)
