"""The signals ranked sampling scores comments by (``livechat.services.ranking``), read on this edge.

Only for a stream in a busy tier; per comment, from what every edge holds alike where it can:

- the event itself: ``b`` (broadcaster, moderator), ``r`` (a reply: to the broadcaster when the
  parent is one of the broadcaster's last ``BROADCASTER_TRACKED`` comments; its author is looked up
  among the stream's last ``SHOWN_TRACKED`` shown comments, what viewers reply to, then in the
  room's recent window) and ``x``, matched against the flag list (``flagged_terms``: the
  configuration is the same everywhere): a hit flags the comment and, for ``FLAG_MEMORY_S``,
  every later comment of its author in the stream;
- the author's strikes and follow: from their sessions when they are connected here (the posting
  edge), else from the MetaStore (shared in a cluster), read once per ``REPUTATION_TTL_S`` in the
  background; until that read is back the author counts as neutral (0 strikes, not a follower);
- likes the author's recent shown comments got (``Engagement``, totals shared in a cluster),
  re-read once per ``LIKES_REFRESH_S``.

So edges can differ only while a remote author's reputation is on its way or like totals are
between flushes; ``docs/protocol.md`` (sampling) says why that is acceptable.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from livechat.ports.errors import BackendError
from livechat.protocol import StateKey, unpackb
from livechat.services.context import ChatContext
from livechat.services.moderation import STRIKES
from livechat.services.moderation.rules import RuleHit
from livechat.services.ranking import author_part, comment_score

#: How long an author stays "flagged" in a stream after a comment of theirs hit the flag list.
FLAG_MEMORY_S: Final = 600.0
#: How long a MetaStore read of a remote author's strikes and follow is used.
REPUTATION_TTL_S: Final = 60.0
#: Entries kept per table (authors flagged, reputations): all are dropped at once past it.
TABLE_MAX: Final = 100_000
#: Shown comments per busy stream remembered (id -> author): replies find their parent's author
#: (30 000: 12 s of the 2 500/s the 5 % tier shows at 50 000/s; ~3 MB per busy stream).
SHOWN_TRACKED: Final = 30_000
#: The newest of them whose likes count towards their authors' engagement.
LIKES_TRACKED: Final = 1_000
#: The broadcaster's comments remembered per stream (replies to them rank higher).
BROADCASTER_TRACKED: Final = 256
LIKES_REFRESH_S: Final = 1.0
#: Streams whose comments are remembered (streams come and go: a bound, not an LRU).
STREAMS_MAX: Final = 4096
#: Badges exempt from the per-author cap: the show itself.
EXEMPT: Final = frozenset({"bc", "mod"})


@dataclass(slots=True)
class _Memory:
    """One stream's shown comments (id -> author, oldest first) and its broadcaster's comments."""

    shown: dict[int, str] = field(default_factory=dict)
    broadcaster: dict[int, None] = field(default_factory=dict)  # an ordered set, oldest first
    likes_by_author: dict[str, int] = field(default_factory=dict)
    likes_read: float = float("-inf")
    # author -> ``ranking.author_part``, rebuilt with the likes (strikes and follows stay current).
    parts: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Columns:
    """The selector's input for a batch of one stream (``RankedSelector.select_many``), and per
    comment the author of the comment it replies to (None: not a reply, or not known here)."""

    comment_ids: Sequence[int]
    authors: list[str]
    scores: list[int]
    exempt: list[bool]
    reply_authors: list[str | None]


class QualitySignals:
    """Builds ``Candidate``s for a busy stream's posts; remembers shown and broadcaster comments."""

    __slots__ = ("_ctx", "_flagged", "_loading", "_memory", "_reputation")

    def __init__(self, ctx: ChatContext) -> None:
        self._ctx = ctx
        # (stream, author) -> monotonic time until which the author counts as flagged.
        self._flagged: dict[tuple[str, str], float] = {}
        # (owner, user) -> (monotonic time read, strikes, follower).
        self._reputation: dict[tuple[str, str], tuple[float, int, bool]] = {}
        self._loading: set[tuple[str, str]] = set()
        self._memory: dict[str, _Memory] = {}

    def _stream(self, stream: str) -> _Memory:
        memory = self._memory.get(stream)
        if memory is None:
            if len(self._memory) >= STREAMS_MAX:
                self._memory.clear()
            memory = self._memory[stream] = _Memory()
        return memory

    def candidates(self, stream: str, comment_ids: Sequence[int], payloads: Sequence[bytes]) -> Columns:
        """The selector's columns for these comments (in the order given)."""
        ctx = self._ctx
        now = ctx.clock.monotonic()
        room = ctx.rooms.get(stream)
        owner = room.owner_id if room is not None else stream
        events: list[dict[str, Any]] = [unpackb(p) for p in payloads]
        hits = ctx.moderation.rules.check_many([str(e.get("x", "")) for e in events])
        memory = self._stream(stream)
        likes = self._author_likes(stream, memory, now)
        parts = memory.parts
        broadcaster = memory.broadcaster
        shown = memory.shown
        flagged = self._flagged
        columns = Columns(comment_ids, [], [], [], [])
        authors, scores, exempt, replied = (
            columns.authors,
            columns.scores,
            columns.exempt,
            columns.reply_authors,
        )
        for comment_id, event, (hit, _) in zip(comment_ids, events, hits, strict=True):
            author = str(event.get("u", ""))
            key = (stream, author)
            if hit is not RuleHit.NONE:
                if len(flagged) >= TABLE_MAX:
                    flagged.clear()
                flagged[key] = now + FLAG_MEMORY_S
                is_flagged = True
            elif flagged:
                until = flagged.get(key)
                is_flagged = until is not None and until > now
            else:
                is_flagged = False
            badge = event.get("b")
            if not isinstance(badge, str):
                badge = None
            elif badge == "bc" and author != owner:  # a broadcaster by role (the owner is noted always)
                self._note_broadcaster(memory, comment_id)
            reply_author, to_broadcaster = None, False
            parent_id = event.get("r")
            if isinstance(parent_id, int):
                to_broadcaster = parent_id in broadcaster
                reply_author = shown.get(parent_id)
                if reply_author is None and room is not None:
                    parent = room.recent.get(parent_id)
                    if parent is not None:
                        reply_author = str(unpackb(parent).get("u", ""))
            part = parts.get(author)
            if part is None:
                strikes, follower, known = self._author(author, stream, owner, now)
                part = author_part(strikes, follower, likes.get(author, 0))
                if known:
                    parts[author] = part
            authors.append(author)
            scores.append(comment_score(part, is_flagged, to_broadcaster, badge))
            exempt.append(badge in EXEMPT)
            replied.append(reply_author)
        return columns

    def shown(self, stream: str, comment_id: int, author: str) -> None:
        """A comment of a busy stream went into the tick (replies find its author, its likes count)."""
        shown = self._stream(stream).shown
        shown[comment_id] = author
        if len(shown) > SHOWN_TRACKED:
            del shown[next(iter(shown))]

    def broadcaster_comment(self, stream: str, comment_id: int) -> None:
        """The stream owner posted (any tier): replies to it rank higher."""
        self._note_broadcaster(self._stream(stream), comment_id)

    @staticmethod
    def _note_broadcaster(memory: _Memory, comment_id: int) -> None:
        memory.broadcaster[comment_id] = None
        if len(memory.broadcaster) > BROADCASTER_TRACKED:
            del memory.broadcaster[next(iter(memory.broadcaster))]

    def _author_likes(self, stream: str, memory: _Memory, now: float) -> dict[str, int]:
        if now - memory.likes_read >= LIKES_REFRESH_S:
            memory.likes_read = now
            newest = list(itertools.islice(reversed(memory.shown.items()), LIKES_TRACKED))
            totals: dict[int, int] = self._ctx.engagement.snapshot(stream, [cid for cid, _ in newest])[
                StateKey.LIKES
            ]
            by_author: dict[str, int] = {}
            for comment_id, author in newest:
                count = totals.get(comment_id)
                if count:
                    by_author[author] = by_author.get(author, 0) + count
            memory.likes_by_author = by_author
            memory.parts = {}  # strikes, follows and likes read again
        return memory.likes_by_author

    def _author(self, user: str, stream: str, owner: str, now: float) -> tuple[int, bool, bool]:
        """(strikes, follower, known) of ``user``: their sessions here, else the MetaStore cache
        (known False: not read yet, counted neutral)."""
        sessions = self._ctx.sessions.user_sessions(user)
        if sessions:
            strikes = max(s.strikes for s in sessions)
            follower = any(
                (m := s.streams.get(stream)) is not None and m.follow_since is not None for s in sessions
            )
            return strikes, follower, True
        key = (owner, user)
        cached = self._reputation.get(key)
        if cached is not None and now - cached[0] < REPUTATION_TTL_S:
            return cached[1], cached[2], True
        if key not in self._loading and user:
            self._loading.add(key)
            self._ctx.background.spawn(self._load(key), "author reputation for ranking")
        return (cached[1], cached[2], False) if cached is not None else (0, False, False)

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
