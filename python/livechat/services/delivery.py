"""Delivering stored comments on this edge: the one path from "it is in the log" to the viewers.

Per stream, once per batch: every comment counts towards the stream's rate; one sampling call
decides which go into the tick. In a busy tier that call ranks them (``SamplingConfig.ranked``:
``livechat.services.quality`` reads each comment's signals, ``livechat.services.ranking`` keeps
the tier's share, best first, at most ``author_cap`` of it from one author); otherwise, or with
ranking off, it is the hash of the id. Each comment is kept in the room's recent buffer (snapshots
and recovery: a sampled-out comment is still part of what a reconnecting viewer missed); a
sampled-out one goes directly to its author's, mentioned users' and (ranked) the replied-to
author's connections on this edge, one ``ev`` per connection and stream.

Embedded, the posting path calls it right after the acks; with a shared log (``kafka://``) every
edge, the posting one included, calls it for each comment record the log follower hands over, so
all edges deliver one stream in the log's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from livechat.protocol import encode_direct
from livechat.services.context import ChatContext
from livechat.services.quality import QualitySignals
from livechat.services.sampling import PPM


@dataclass(frozen=True, slots=True)
class StoredPost:
    """One stored, visible comment to deliver."""

    stream: str
    comment_id: int
    user_id: str
    payload: bytes
    mentions: Sequence[str]
    # Raise the cluster's comment count for it (the posting edge does; others only read totals).
    count: bool = True


class Delivery:
    __slots__ = ("_ctx", "_quality", "published", "sampled_out")

    def __init__(self, ctx: ChatContext) -> None:
        self._ctx = ctx
        self._quality = QualitySignals(ctx)
        self.published = 0
        self.sampled_out = 0

    def deliver_many(self, posts: Sequence[StoredPost]) -> list[bool]:
        """Deliver ``posts`` (in the order given); returns, per post, whether it went into the tick."""
        ctx = self._ctx
        now = ctx.clock.monotonic()
        per_stream: dict[str, list[int]] = {}
        for index, post in enumerate(posts):
            per_stream.setdefault(post.stream, []).append(index)
        broadcast = [True] * len(posts)
        # The author a sampled-out reply answers (ranked tiers only), told directly.
        replied: dict[int, str] = {}
        for stream, indexes in per_stream.items():
            ctx.sampler.observe(stream, now, len(indexes))
            if ctx.sampler.ranked:
                self._rank(stream, posts, indexes, broadcast, replied)
                continue
            mask = ctx.sampler.keep_many(stream, [posts[i].comment_id for i in indexes])
            if mask is not None:
                for index, keep in zip(indexes, mask, strict=True):
                    broadcast[index] = keep == 1
        direct: dict[tuple[int, str], list[bytes]] = {}
        try:
            for index, (post, keep) in enumerate(zip(posts, broadcast, strict=True)):
                self._deliver(post, keep, direct, replied.get(index))
        finally:
            if direct:
                ctx.outbox.send_batch(
                    [(conn, encode_direct(stream, events)) for (conn, stream), events in direct.items()]
                )
        return broadcast

    def _rank(
        self,
        stream: str,
        posts: Sequence[StoredPost],
        indexes: list[int],
        broadcast: list[bool],
        replied: dict[int, str],
    ) -> None:
        """The ranked selection of one stream's posts (no-op in tier 0: all go into the tick)."""
        sampler = self._ctx.sampler
        if sampler.keep_ppm(stream) >= PPM:
            return
        quality = self._quality
        columns = quality.candidates(
            stream, [posts[i].comment_id for i in indexes], [posts[i].payload for i in indexes]
        )
        mask = sampler.select_many(
            stream, columns.comment_ids, columns.authors, columns.scores, columns.exempt
        )
        if mask is None:
            return
        for position, (index, keep) in enumerate(zip(indexes, mask, strict=True)):
            if keep:
                quality.shown(stream, columns.comment_ids[position], columns.authors[position])
                continue
            broadcast[index] = False
            reply_author = columns.reply_authors[position]
            if reply_author is not None:
                replied[index] = reply_author

    def _deliver(
        self,
        post: StoredPost,
        broadcast: bool,
        direct: dict[tuple[int, str], list[bytes]],
        reply_author: str | None = None,
    ) -> None:
        ctx = self._ctx
        stream = post.stream
        ctx.engagement.comment_posted(stream, post.comment_id, count=post.count)
        room = ctx.rooms.get(stream)
        if room is not None:
            room.recent.append(post.comment_id, post.user_id, post.payload)
            if post.user_id == room.owner_id:
                self._quality.broadcaster_comment(stream, post.comment_id)
        if broadcast:
            ctx.outbox.publish(stream, post.payload)
            self.published += 1
            return
        self.sampled_out += 1
        targets = ctx.sessions.conns_in(post.user_id, stream)
        if post.mentions or reply_author is not None:
            others = ctx.sessions.mentioned_conns(list(post.mentions), stream) if post.mentions else []
            if reply_author is not None:
                others.extend(ctx.sessions.conns_in(reply_author, stream))
            targets = sorted(set(targets).union(others))
        for conn in targets:
            direct.setdefault((conn, stream), []).append(post.payload)
