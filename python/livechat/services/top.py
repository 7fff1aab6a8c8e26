"""Top comments: the ``top`` op ranks a stream's recent comments by engagement and reputation.

Candidates are the comments the room holds in memory (``RoomConfig.recent_buffer``, 500: the
newest, visible ones; deleted and shadow-banned comments are never there). Each scores

    likes + REPLY_WEIGHT * replies + badge bonus (broadcaster, moderator) - STRIKE_WEIGHT * strikes

(replies: comments in the window answering it; strikes: its author's moderation strikes, read
from the MetaStore for the authors of the best candidates only). Comments scoring at most 0 are
left out (a plain comment nobody reacted to is not "top"). A stream's ranking is computed at most
once per ``CACHE_S`` and shared by every viewer asking meanwhile, whatever their ``limit``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Final

from livechat.ports.errors import BackendError
from livechat.protocol import ErrorCode, ProtocolError, StateKey, Top, unpackb
from livechat.protocol.audience import encode_top
from livechat.protocol.rules import TOP_LIMIT_MAX
from livechat.services.context import ChatContext
from livechat.services.moderation import STRIKES
from livechat.services.sessions import Session

#: A reply counts as much as two likes: it is more effort, and shows a conversation.
REPLY_WEIGHT: Final = 2
#: What a strike costs: a user with a few strikes needs real engagement to make the list.
STRIKE_WEIGHT: Final = 2
#: Bonus by badge (``b`` of a comment event): the broadcaster's and moderators' comments.
BADGE_BONUS: Final = {"bc": 3, "mod": 1}
#: Seconds a stream's ranking is reused: a busy room asks often, and likes flush every 250 ms.
CACHE_S: Final = 1.0
#: Candidates whose authors' strikes are read: the best by engagement, a few times the largest page.
REPUTATION_READS: Final = 4 * TOP_LIMIT_MAX


class TopComments:
    __slots__ = ("_cache", "_ctx")

    def __init__(self, ctx: ChatContext) -> None:
        self._ctx = ctx
        # stream -> (monotonic time computed, [(score, payload)] best first)
        self._cache: dict[str, tuple[float, list[tuple[int, bytes]]]] = {}

    async def handle(self, session: Session, msg: Top) -> None:
        ctx = self._ctx
        room = ctx.rooms.get(msg.stream)
        if msg.stream not in session.streams or room is None:
            refused = ProtocolError(ErrorCode.NOT_JOINED, "join the stream first", msg.rid)
            ctx.reply_error(session.conn, refused)
            return
        try:
            ranked = await self.ranking(msg.stream)
        except BackendError as exc:
            ctx.reply_error(
                session.conn, ProtocolError(ErrorCode.UNAVAILABLE, f"storage unavailable: {exc}", msg.rid)
            )
            return
        best = ranked[: msg.limit]
        reply = encode_top(msg.rid, msg.stream, [p for _, p in best], [s for s, _ in best])
        ctx.outbox.send(session.conn, reply)

    async def ranking(self, stream: str) -> list[tuple[int, bytes]]:
        """The stream's comments scoring above 0, best first (newest first among equals)."""
        now = self._ctx.clock.monotonic()
        cached = self._cache.get(stream)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        ranked = await self._rank(stream)
        if len(self._cache) >= 4096:  # streams come and go: a bound, not an LRU
            self._cache.clear()
        self._cache[stream] = (now, ranked)
        return ranked

    async def _rank(self, stream: str) -> list[tuple[int, bytes]]:
        ctx = self._ctx
        room = ctx.rooms.get(stream)
        if room is None:
            return []
        window = room.recent.latest(ctx.config.rooms.recent_buffer)
        events = [(cid, payload, unpackb(payload)) for cid, payload in window]
        replies = Counter(int(e["r"]) for _, _, e in events if isinstance(e.get("r"), int))
        likes: dict[int, int] = ctx.engagement.snapshot(stream, [cid for cid, _, _ in events])[StateKey.LIKES]
        # (score, comment id, payload, author)
        scored: list[tuple[int, int, bytes, str]] = []
        for cid, payload, event in events:
            badge = event.get("b")
            bonus = BADGE_BONUS.get(badge, 0) if isinstance(badge, str) else 0
            score = likes.get(cid, 0) + REPLY_WEIGHT * replies.get(cid, 0) + bonus
            if score > 0:
                scored.append((score, cid, payload, str(event.get("u", ""))))
        scored.sort(reverse=True)
        scored = scored[:REPUTATION_READS]
        authors = sorted({row[3] for row in scored})
        reputations = await asyncio.gather(*(ctx.meta.get_reputation(user) for user in authors))
        strikes = {rep.user_id: rep.get(STRIKES) for rep in reputations}
        final = [
            (score - STRIKE_WEIGHT * strikes.get(author, 0), cid, payload)
            for score, cid, payload, author in scored
        ]
        final.sort(key=lambda row: (row[0], row[1]), reverse=True)
        return [(score, payload) for score, _, payload in final if score > 0]
