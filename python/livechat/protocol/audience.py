"""Encoders of the moderator and audience messages (docs/protocol.md): the ``kick`` event, the
``queue`` reply (a page of the moderation queue) and the ``top`` reply (the top comments)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from livechat.ports.meta import FlaggedComment, UserReport
from livechat.protocol.codes import EventKind, MessageType
from livechat.protocol.encode import Raw, RawArray, pack_map, packb

#: ``code`` of the notice a kicked user gets before the close (4010).
KICKED_NOTICE: Final = "kicked"

_K_KICK: Final = EventKind.KICK.value
_T_QUEUE: Final = MessageType.QUEUE.value
_T_TOP: Final = MessageType.TOP.value


def encode_kick(user_id: str) -> bytes:
    """``{"k": "kick", "u"}``: the user's connections in the stream are closed on every edge."""
    return packb({"k": _K_KICK, "u": user_id})


def _flagged(item: FlaggedComment) -> bytes:
    return pack_map(
        {
            "id": item.comment_id,
            "u": item.user_id,
            "c": Raw(item.payload),
            "reason": item.reason,
            "score": item.score,
            "ts": int(item.created_at * 1000),
        }
    )


def _report(item: UserReport) -> bytes:
    return packb(
        {
            "id": item.report_id,
            "by": item.reporter_id,
            "u": item.target_user_id,
            "c": item.target_comment_id,
            "reason": item.reason,
            "ts": int(item.created_at * 1000),
        }
    )


def encode_queue(
    rid: int | None,
    stream: str,
    flagged: Sequence[FlaggedComment],
    reports: Sequence[UserReport],
    more: bool,
) -> bytes:
    """A page of the moderation queue: ``flagged`` pending comments (oldest first: the queue is
    worked in order) and ``reports`` (newest first); ``more``: older reports remain (ask again with
    ``before`` = the last report's id)."""
    fields = {
        "t": _T_QUEUE,
        "s": stream,
        "flagged": RawArray([_flagged(item) for item in flagged]),
        "reports": RawArray([_report(item) for item in reports]),
        "more": more,
    }
    if rid is not None:
        fields["rid"] = rid
    return pack_map(fields)


def encode_top(rid: int | None, stream: str, items: Sequence[bytes], scores: Sequence[int]) -> bytes:
    """``{"t": "top", "s", "items": [comment event...] best first, "scores": [score...]}``."""
    fields: dict[str, object] = {
        "t": _T_TOP,
        "s": stream,
        "items": RawArray(items),
        "scores": list(scores),
    }
    if rid is not None:
        fields["rid"] = rid
    return pack_map(fields)
