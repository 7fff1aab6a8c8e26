"""The moderation queue as the Python client returns it (docs/protocol.md §2, ``queue``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from livechat.client.events import Comment


@dataclass(frozen=True, slots=True)
class FlaggedItem:
    """A comment waiting for a moderator's ``review``."""

    comment: Comment
    reason: str
    # The classifier's score, -1.0 for a block-list flag term or reports.
    score: float
    flagged_ms: int


@dataclass(frozen=True, slots=True)
class ReportItem:
    report_id: int
    reporter: str
    user: str
    comment_id: int | None
    reason: str
    reported_ms: int


@dataclass(frozen=True, slots=True)
class ModerationQueue:
    """One page: ``flagged`` oldest first, ``reports`` newest first; ``more``: older reports remain
    (ask again with ``before`` = the last report's id)."""

    stream: str
    flagged: tuple[FlaggedItem, ...]
    reports: tuple[ReportItem, ...]
    more: bool

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> ModerationQueue:
        stream = str(raw.get("s", ""))
        flagged = tuple(
            FlaggedItem(
                Comment.from_wire(stream, item["c"], "tick"),
                str(item.get("reason", "")),
                float(item.get("score", -1.0)),
                int(item.get("ts", 0)),
            )
            for item in raw.get("flagged") or []
        )
        reports = tuple(
            ReportItem(
                int(item["id"]),
                str(item.get("by", "")),
                str(item.get("u", "")),
                int(item["c"]) if item.get("c") is not None else None,
                str(item.get("reason", "")),
                int(item.get("ts", 0)),
            )
            for item in raw.get("reports") or []
        )
        return cls(stream, flagged, reports, bool(raw.get("more")))
