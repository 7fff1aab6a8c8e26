"""Field limits and text rules of client messages: protocol, not configuration (docs/protocol.md §2)."""

from __future__ import annotations

import re
from typing import Final

STREAM_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
USER_ID_MAX: Final = 128
CLIENT_MSG_ID_MAX: Final = 64
# The largest integer a JavaScript Number holds exactly.
RID_MAX: Final = (1 << 53) - 1
ID_MAX: Final = (1 << 63) - 1
TIMEOUT_MAX_S: Final = 14 * 24 * 3600
SLOW_MAX_S: Final = 24 * 3600
FOLLOW_AGE_MAX_S: Final = 5 * 365 * 24 * 3600
BAN_REASON_MAX: Final = 200
# A JWT in a `refresh` op (and at upgrade): longer is refused before any parsing.
TOKEN_MAX: Final = 8192
MENTIONS_MAX: Final = 10
# A page of the moderation queue (``queue``): flagged comments and reports, each up to ``limit``.
QUEUE_LIMIT_DEFAULT: Final = 50
QUEUE_LIMIT_MAX: Final = 200
# ``review``'s ``action``: approve (the flagged comment stays) or dismiss (it is deleted).
REVIEW_ACTIONS: Final = ("approve", "dismiss")
# Top comments a ``top`` reply lists (``limit``).
TOP_LIMIT_DEFAULT: Final = 10
TOP_LIMIT_MAX: Final = 50
# Hold for review (``hold``): the modes, and a stream's own bound in ms (under 50 ms no classifier
# answers; over 2 s the wait outlasts the retro path's 2 s tombstone budget).
HOLD_MODES: Final = ("off", "open", "closed")
HOLD_MIN_MS: Final = 50
HOLD_MAX_MS: Final = 2_000
HISTORY_LIMIT_MAX: Final = 1000
HISTORY_LIMIT_DEFAULT: Final = 50

# C0/C1 controls, DEL, bidi embeddings/overrides/isolates: never valid in a comment.
FORBIDDEN_TEXT: Final = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{1,32})")


def extract_mentions(text: str) -> list[str]:
    """Lower-cased @handles in order of first appearance, at most MENTIONS_MAX."""
    found: list[str] = []
    for match in _MENTION.finditer(text):
        handle = match.group(1).lower()
        if handle not in found:
            found.append(handle)
            if len(found) == MENTIONS_MAX:
                break
    return found
