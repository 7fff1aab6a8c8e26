"""The signals ranked sampling scores comments by (``livechat.services.ranking``), read on this edge.

Only for a stream in a busy tier; per comment, from what every edge holds alike where it can:

- the event itself: ``b`` (broadcaster, moderator), ``r`` (a reply: its parent is looked up in the
  room's recent window, which every edge fills in stream order) and ``x``, matched against the flag
  list (``ModerationConfig.flagged_terms``: the configuration is the same everywhere) — a hit
  flags the comment and, for ``FLAG_MEMORY_S``, every later comment of its author in the stream;
- the author's strikes and follow: from their sessions when they are connected here (the posting
  edge), else from the MetaStore (shared in a cluster), read once per ``REPUTATION_TTL_S`` in the
  background; until that read is back the author counts as neutral (0 strikes, not a follower);
- likes the author's recent shown comments got (``Engagement``, totals shared in a cluster),
  re-read once per ``LIKES_REFRESH_S``.

So edges can differ only while a remote author's reputation is on its way or like totals are
between flushes; ``docs/protocol.md`` (sampling) says why that is acceptable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from livechat.ports.errors import BackendError
from livechat.protocol import StateKey, unpackb
from livechat.services.context import ChatContext
from livechat.services.moderation import STRIKES
from livechat.services.moderation.rules import RuleHit
from livechat.services.ranking import Candidate, Signals, score

#: How long an author stays "flagged" in a stream after a comment of theirs hit the flag list.
FLAG_MEMORY_S: Final = 600.0
#: How long a MetaStore read of a remote author's strikes and follow is used.
REPUTATION_TTL_S: Final = 60.0
#: Entries kept per table (authors flagged, reputations): all are dropped at once past it.
TABLE_MAX: Final = 100_000
#: Shown comments per stream whose likes count towards their authors' engagement.
LIKES_TRACKED: Final = 1_000
LIKES_REFRESH_S: Final = 1.0
#: Busy streams whose shown comments are remembered (streams come and go: a bound, not an LRU).
STREAMS_MAX: Final = 4096
#: Badges exempt from the per-author cap: the show itself.
EXEMPT: Final = frozenset({"bc", "mod"})


@dataclass(slots=True)
class _Likes:
    shown: deque[tuple[int, str]]
    by_author: dict[str, int]
    refreshed: float


@dataclass(frozen=True, slots=True)
class Scored:
    """A post's candidate for the selector and the author of the comment it replies to (if known)."""

    candidate: Candidate
    reply_author: str | None


class QualitySignals:
    """Builds ``Candidate``s for a busy stream's posts; remembers shown comments for engagement."""

    __slots__ = ("_ctx", "_flagged", "_likes", "_loading", "_reputation")

    def __init__(self, ctx: ChatContext) -> None:
        self._ctx = ctx
        # (stream, author) -> monotonic time until which the author counts as flagged.
        self._flagged: dict[tuple[str, str], float] = {}
        # (owner, user) -> (monotonic time read, strikes, follower).
        self._reputation: dict[tuple[str, str], tuple[float, int, bool]] = {}
        self._loading: set[tuple[str, str]] = set()
        self._likes: dict[str, _Likes] = {}

    def candidates(self, stream: str, comment_ids: Sequence[int], payloads: Sequence[bytes]) -> list[Scored]:
        """One ``Scored`` per comment, in the order given."""
        ctx = self._ctx
        now = ctx.clock.monotonic()
        room = ctx.rooms.get(stream)
        owner = room.owner_id if room is not None else stream
        events: list[dict[str, Any]] = [unpackb(p) for p in payloads]
        texts = [str(e.get("x", "")) for e in events]
        hits = ctx.moderation.rules.check_many(texts)
        likes = self._author_likes(stream, now)
        flagged = self._flagged
        out: list[Scored] = []
        for comment_id, event, (hit, _) in zip(comment_ids, events, hits, strict=True):
            author = str(event.get("u", ""))
            key = (stream, author)
            if hit is not RuleHit.NONE:
                if len(flagged) >= TABLE_MAX:
                    flagged.clear()
                flagged[key] = now + FLAG_MEMORY_S
                is_flagged = True
            else:
                until = flagged.get(key)
                is_flagged = until is not None and until > now
            badge = event.get("b")
            badge = badge if isinstance(badge, str) else None
            reply_author, to_broadcaster = None, False
            parent_id = event.get("r")
            if isinstance(parent_id, int) and room is not None:
                parent = room.recent.get(parent_id)
                if parent is not None:
                    parent_event = unpackb(parent)
                    reply_author = str(parent_event.get("u", ""))
                    to_broadcaster = reply_author == owner or parent_event.get("b") == "bc"
            strikes, follower = self._author(author, stream, owner, now)
            signals = Signals(is_flagged, strikes, follower, badge, to_broadcaster, likes.get(author, 0))
            candidate = Candidate(comment_id, author, score(signals), badge in EXEMPT)
            out.append(Scored(candidate, reply_author))
        return out

    def shown(self, stream: str, comment_id: int, author: str) -> None:
        """A comment of a busy stream went into the tick: its likes count for its author."""
        likes = self._likes.get(stream)
        if likes is None:
            if len(self._likes) >= STREAMS_MAX:
                self._likes.clear()
            likes = self._likes[stream] = _Likes(deque(maxlen=LIKES_TRACKED), {}, 0.0)
        likes.shown.append((comment_id, author))

    def _author_likes(self, stream: str, now: float) -> dict[str, int]:
        likes = self._likes.get(stream)
        if likes is None:
            return {}
        if now - likes.refreshed >= LIKES_REFRESH_S:
            likes.refreshed = now
            totals: dict[int, int] = self._ctx.engagement.snapshot(stream, [cid for cid, _ in likes.shown])[
                StateKey.LIKES
            ]
            by_author: dict[str, int] = {}
            for comment_id, author in likes.shown:
                count = totals.get(comment_id)
                if count:
                    by_author[author] = by_author.get(author, 0) + count
            likes.by_author = by_author
        return likes.by_author

    def _author(self, user: str, stream: str, owner: str, now: float) -> tuple[int, bool]:
        """(strikes, follower) of ``user``: their sessions here, else the MetaStore cache."""
        sessions = self._ctx.sessions.user_sessions(user)
        if sessions:
            strikes = max(s.strikes for s in sessions)
            follower = any(
                (m := s.streams.get(stream)) is not None and m.follow_since is not None for s in sessions
            )
            return strikes, follower
        key = (owner, user)
        cached = self._reputation.get(key)
        if cached is not None and now - cached[0] < REPUTATION_TTL_S:
            return cached[1], cached[2]
        if key not in self._loading and user:
            self._loading.add(key)
            self._ctx.background.spawn(self._load(key), "author reputation for ranking")
        return (cached[1], cached[2]) if cached is not None else (0, False)

    async def _load(self, key: tuple[str, str]) -> None:
        owner, user = key
        meta = self._ctx.meta
        entry = (0, False)  # a failed read: neutral until the next try, REPUTATION_TTL_S later
        try:
            reputation = await meta.get_reputation(user)
            since = await meta.followed_since(owner, user)
            entry = (reputation.get(STRIKES), since is not None)
        except BackendError:
            pass
        finally:
            self._loading.discard(key)
        if len(self._reputation) >= TABLE_MAX:
            self._reputation.clear()
        self._reputation[key] = (self._ctx.clock.monotonic(), *entry)
