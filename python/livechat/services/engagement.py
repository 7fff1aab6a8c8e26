"""Reactions, likes, comment and viewer counts: aggregated per stream, folded into the tick.

Nothing here is sent per event: ``flush`` (every ``engagement_flush_s``) writes each changed
stream's running totals into the edge's latest-value state slots, which ride the next tick:

- ``rx``: ``{emoji: total}`` for the five reactions;
- ``likes``: ``{comment_id: total}`` for comments whose likes changed since the last flush;
- ``n``: ``{"c": comments, "v": viewers}``.

With a Registry (cluster mode) the deltas of every flush are added to shared counters, and every
flush reads the cluster-wide reaction, comment and viewer totals of each open stream back (one
``get_counters`` call for all of them), so an edge's viewers see what happened on other edges even
when nothing changed locally. Like totals are read back only for comments liked on this edge.
Without a Registry the totals are this edge's.

Durable totals (with an ``EngagementWriter``, ``livechat.services.engagement_store``): every delta
counted for this edge goes to the MetaStore too, batched in the background, and ``open`` (a room
being loaded) reads the stream's stored totals back. Without a Registry they become this edge's
totals; with one they seed the shared counters exactly once per Registry lifetime (the claim
``engseed:<stream>``: of several edges opening the stream, one adds them), so a restarted edge
or Registry, and a room dropped after ``RoomConfig.idle_drop_s`` without viewers, show the same reactions,
comment count and likes as before. Viewer counts are live only (never stored). Without a
Registry every edge stores the comments it counts, remote ones included: durable totals assume
a Registry whenever several edges share a MetaStore (``livechat serve`` always has one).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Final

from livechat.config import RoomConfig
from livechat.ports.errors import BackendError
from livechat.ports.registry import Registry
from livechat.protocol import REACTIONS, StateKey, packb
from livechat.services.engagement_store import EngagementWriter
from livechat.services.outbox import Outbox

log = logging.getLogger("livechat.services.engagement")

_EMOJI = tuple(REACTIONS)

#: An edge's viewer contribution lapses this long after its last renewal (every flush renews it):
#: the count heals within this time after an edge dies.
VIEWERS_TTL_S: Final = 10.0
#: How long a stream's seed claim lives in the Registry (renewed at every open): as long as its
#: counters (which have no TTL), in practice; a stream idle for longer would be seeded again.
SEED_TTL_S: Final = 366 * 86_400.0
#: The longest an edge opening a stream waits for another edge seeding its counters.
SEED_WAIT_S: Final = 2.0
#: A seeding edge that died mid-way holds the claim this long (then another edge seeds).
SEEDING_TTL_S: Final = 30.0
_SEEDING: Final = b"seeding"
_SEEDED: Final = b"seeded"
_EMOJI_INDEX = {name: i for i, name in enumerate(_EMOJI)}


class StreamEngagement:
    __slots__ = (
        "comments",
        "comments_delta",
        "counts_dirty",
        "like_delta",
        "likers",
        "likes",
        "likes_dirty",
        "reactions",
        "rx_delta",
        "rx_dirty",
        "state_due",
        "unique",
        "unique_new",
        "viewers",
        "viewers_local",
        "watchers",
    )

    def __init__(self) -> None:
        self.reactions = [0] * len(_EMOJI)
        self.rx_delta = [0] * len(_EMOJI)
        # Totals changed by another edge (read from the Registry) and not yet written to the slot.
        self.rx_dirty = False
        # comment id -> users who like it (only for tracked, recent comments); None until the
        # first like, so tracking a comment allocates nothing. OrderedDict: dropping the oldest is
        # O(1) (next(iter()) of a dict whose front was deleted walks every deleted slot).
        self.likers: OrderedDict[int, set[str] | None] = OrderedDict()
        self.likes: dict[int, int] = {}
        # Not yet added to the Registry (cluster mode only).
        self.like_delta: dict[int, int] = {}
        # Comments whose like total changed since the last flush.
        self.likes_dirty: set[int] = set()
        self.comments = 0
        self.comments_delta = 0
        # Viewers shown: this edge's (alone) or every edge's contributions summed (cluster).
        self.viewers = 0
        # Signed-in viewers on this edge: user id -> their connections in the stream (a user with
        # three tabs is one viewer); anonymous connections count one each under "" keys.
        self.watchers: dict[str, int] = {}
        self.viewers_local = 0
        # Users who joined since the last flush, for the stream's unique-viewer estimate.
        self.unique_new: set[str] = set()
        # Distinct signed-in viewers ever (cluster: the Registry's HyperLogLog; alone: not kept).
        self.unique = 0
        self.counts_dirty = False
        # Monotonic time before which changed totals wait (``RoomConfig.state_sends_per_s``).
        self.state_due = 0.0


def _rx_key(stream: str, emoji: str) -> str:
    return f"rx:{stream}:{emoji}"


def _comments_key(stream: str) -> str:
    return f"cc:{stream}"


def _viewers_key(stream: str) -> str:
    return f"vc:{stream}"


def _likes_key(stream: str, comment_id: int) -> str:
    return f"lk:{stream}:{comment_id}"


def _seed_key(stream: str) -> str:
    return f"engseed:{stream}"


class Engagement:
    """Per-stream engagement totals of this edge (and the cluster, with a Registry)."""

    __slots__ = (
        "_edge_id",
        "_flush_s",
        "_registry",
        "_state_sends_per_s",
        "_streams",
        "_tracked_max",
        "_writer",
    )

    @property
    def shared(self) -> bool:
        """Whether totals are cluster-wide (a Registry carries every edge's deltas)."""
        return self._registry is not None

    def __init__(
        self,
        config: RoomConfig,
        registry: Registry | None = None,
        edge_id: str = "edge",
        writer: EngagementWriter | None = None,
    ) -> None:
        """``writer``: keep durable totals (see the module docstring); None: in memory only."""
        self._tracked_max = config.tracked_like_comments
        self._state_sends_per_s = config.state_sends_per_s
        self._flush_s = config.engagement_flush_s
        self._registry = registry
        self._edge_id = edge_id
        self._writer = writer
        self._streams: dict[str, StreamEngagement] = {}

    @property
    def writer(self) -> EngagementWriter | None:
        return self._writer

    async def open(self, stream: str, comment_ids: Sequence[int]) -> None:
        """A room is being loaded: its stored totals (likes of ``comment_ids``, the room's recent
        window, which are tracked from now on) become the stream's (seeding the Registry once).
        Raises what the MetaStore raises (the room then fails to open); a Registry outage only
        skips the seeding and shows the stored totals."""
        writer = self._writer
        if writer is None:
            return
        registry = self._registry
        counters: list[int] | None = None
        if registry is not None:
            try:
                await self._seed(registry, writer, stream)
                keys = [_comments_key(stream), *(_rx_key(stream, e) for e in _EMOJI)]
                keys += [_likes_key(stream, cid) for cid in comment_ids]
                counters = await registry.get_counters(keys)
            except BackendError as exc:
                # A Registry outage must not keep a room closed (fan-out does not need it): show
                # the stored totals now; the flushes read the shared counters once it is back,
                # and the next open seeds them.
                log.warning("engagement of %s opened from the meta store: %s", stream, exc)
        if counters is not None:
            comments, reactions = counters[0], counters[1 : 1 + len(_EMOJI)]
            likes = dict(zip(comment_ids, counters[1 + len(_EMOJI) :], strict=True))
        else:
            totals = await writer.load(stream, comment_ids)
            comments = totals.comments
            reactions = [totals.reactions.get(e, 0) for e in _EMOJI]
            likes = totals.likes
        state = self.stream(stream)
        # Deltas not yet in the Registry are shown on top, as a flush does.
        state.comments = comments + state.comments_delta
        state.reactions = [r + d for r, d in zip(reactions, state.rx_delta, strict=True)]
        for comment_id in comment_ids:
            if comment_id not in state.likers:
                state.likers[comment_id] = None
            total = likes.get(comment_id, 0) + state.like_delta.get(comment_id, 0)
            if total:
                state.likes[comment_id] = total
        while len(state.likers) > self._tracked_max:
            oldest, _ = state.likers.popitem(last=False)
            state.likes.pop(oldest, None)
        state.rx_dirty = state.counts_dirty = True

    def stream(self, stream: str) -> StreamEngagement:
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = StreamEngagement()
        return state

    def drop(self, stream: str) -> None:
        self._streams.pop(stream, None)

    async def _seed(self, registry: Registry, writer: EngagementWriter, stream: str) -> None:
        """Add the stored totals to the Registry's counters if no edge did in its lifetime.
        The claim reads SEEDING until the counters are added: another edge opening the stream
        meanwhile waits for them (up to SEED_WAIT_S), so its first snapshot has them too.

        Likes are seeded for the newest ``tracked_like_comments`` liked comments of the stream,
        not only this edge's recent window: the edges that open the stream later may have a
        different window (a room opened while history was down has none), and none of them seeds
        again. Older comments can no longer be liked, so their totals are never shown."""
        key = _seed_key(stream)
        waited = 0.0
        while (held := await registry.claim(key, _SEEDING, SEEDING_TTL_S)) == _SEEDING:
            if waited >= SEED_WAIT_S:
                return  # the flushes read the counters once they are seeded
            await asyncio.sleep(0.05)
            waited += 0.05
        if held is not None:
            await registry.set_claim(key, _SEEDED, SEED_TTL_S)  # lives as long as the counters
            return
        try:
            totals = await writer.load(stream, None)
            for emoji, n in totals.reactions.items():
                if n and emoji in _EMOJI_INDEX:
                    await registry.incr(_rx_key(stream, emoji), n)
            if totals.comments:
                await registry.incr(_comments_key(stream), totals.comments)
            liked = sorted(cid for cid, n in totals.likes.items() if n)[-self._tracked_max :]
            for comment_id in liked:
                await registry.incr(_likes_key(stream, comment_id), totals.likes[comment_id])
        except BaseException:
            # Not seeded (or partly): the next open tries again rather than never.
            await registry.release_claim(key)
            raise
        await registry.set_claim(key, _SEEDED, SEED_TTL_S)

    def react(self, stream: str, emoji: str) -> None:
        state = self.stream(stream)
        index = _EMOJI_INDEX[emoji]
        state.reactions[index] += 1
        state.rx_delta[index] += 1
        if self._writer is not None:
            self._writer.react(stream, emoji)

    def comment_posted(self, stream: str, comment_id: int, count: bool = True) -> None:
        """Start tracking who likes a visible comment and (``count``) count it. A comment from
        another edge is not counted when the Registry already carries that edge's count."""
        state = self.stream(stream)
        if count:
            state.comments += 1
            state.comments_delta += 1
            state.counts_dirty = True
            if self._writer is not None:
                self._writer.comments(stream, 1)
        likers = state.likers
        likers[comment_id] = None
        if len(likers) > self._tracked_max:
            oldest, _ = likers.popitem(last=False)
            state.likes.pop(oldest, None)

    def viewers(self, stream: str, delta: int, who: str | None = None) -> None:
        """``delta`` connections of user ``who`` (None: anonymous) joined (+) or left (-)."""
        state = self.stream(stream)
        before = state.viewers_local
        if who is None:
            state.viewers_local += delta
        else:
            held = state.watchers.get(who, 0)
            now = max(held + delta, 0)
            if now:
                state.watchers[who] = now
            else:
                state.watchers.pop(who, None)
            state.viewers_local += (now > 0) - (held > 0)
            if held == 0 and now > 0:
                state.unique_new.add(who)
        if state.viewers_local != before:
            # Shown at once (a joiner's snapshot counts them); a Registry flush then replaces the
            # figure with every edge's contributions summed.
            state.viewers += state.viewers_local - before
            state.counts_dirty = True

    def like(self, stream: str, comment_id: int, user_id: str, on: bool) -> bool | None:
        """Like or unlike; True when it changed the total, False when it was already so, None when
        the comment is not tracked (too old or unknown)."""
        state = self._streams.get(stream)
        if state is None or comment_id not in state.likers:
            return None
        likers = state.likers[comment_id]
        if on == (likers is not None and user_id in likers):
            return False
        delta = 1 if on else -1
        if likers is None:
            likers = state.likers[comment_id] = set()
        if on:
            likers.add(user_id)
        else:
            likers.discard(user_id)
        state.likes[comment_id] = state.likes.get(comment_id, 0) + delta
        state.likes_dirty.add(comment_id)
        if self._registry is not None:
            state.like_delta[comment_id] = state.like_delta.get(comment_id, 0) + delta
        if self._writer is not None:
            self._writer.like(stream, comment_id, delta)
        return True

    def forget(self, stream: str, comment_ids: Iterable[int], count: bool = True) -> None:
        """Deleted comments: stop tracking them; (``count``) the visible count drops. A delete
        from another edge is not counted when the Registry already carries that edge's count."""
        state = self._streams.get(stream)
        if state is None:
            return
        for comment_id in comment_ids:
            if comment_id in state.likers:
                del state.likers[comment_id]
                if count:
                    state.comments -= 1
                    state.comments_delta -= 1
                    state.counts_dirty = True
                    if self._writer is not None:
                        self._writer.comments(stream, -1)
            state.likes.pop(comment_id, None)
            state.like_delta.pop(comment_id, None)
            state.likes_dirty.discard(comment_id)

    def snapshot(self, stream: str, comment_ids: Iterable[int]) -> dict[str, Any]:
        """The state slots as a joiner needs them now (likes for the given comments)."""
        state = self.stream(stream)
        return {
            StateKey.COUNTS: self._counts(state),
            StateKey.REACTIONS: dict(zip(_EMOJI, state.reactions, strict=True)),
            StateKey.LIKES: {cid: state.likes[cid] for cid in comment_ids if state.likes.get(cid)},
        }

    def _counts(self, state: StreamEngagement) -> dict[str, int]:
        """The ``counts`` slot: comments, live viewers (users, not connections) and, with a
        Registry, ``u`` distinct signed-in viewers ever (HyperLogLog, ~1 % error)."""
        if self._registry is None:
            return {"c": state.comments, "v": state.viewers}
        return {"c": state.comments, "v": state.viewers, "u": state.unique}

    async def flush(self, outbox: Outbox, now: float | None = None) -> int:
        """Write changed totals to the state slots; returns how many streams changed.

        With ``now`` (monotonic), a stream's totals are written at most every ``viewers on this
        edge / state_sends_per_s`` seconds: a changed slot rides the next tick to every viewer, so
        with no comments flowing each write is a frame per viewer (100 000 viewers joining, each
        join changing the count, were 4 frames per viewer per second: 400 000 sends/s). Changes
        wait, none is lost: the slot carries the latest value when it goes."""
        if self._registry is not None:
            await self._sync_cluster(self._registry)
        changed = 0
        paced = now is not None and self._state_sends_per_s > 0
        for stream, state in list(self._streams.items()):
            rx_changed = state.rx_dirty or any(state.rx_delta)
            if not (rx_changed or state.likes_dirty or state.counts_dirty):
                continue
            if paced:
                assert now is not None
                if now < state.state_due:
                    continue
                gap = state.viewers_local / self._state_sends_per_s
                # Up to engagement_flush_s apart the housekeeping round paces them already.
                state.state_due = now + gap if gap > self._flush_s else 0.0
            changed += 1
            if rx_changed:
                if self._registry is None:
                    state.rx_delta = [0] * len(_EMOJI)
                state.rx_dirty = False
                outbox.set_state(
                    stream, StateKey.REACTIONS, packb(dict(zip(_EMOJI, state.reactions, strict=True)))
                )
            if state.likes_dirty:
                totals = {cid: state.likes.get(cid, 0) for cid in state.likes_dirty}
                state.likes_dirty = set()
                outbox.set_state(stream, StateKey.LIKES, packb(totals))
            if state.counts_dirty:
                state.counts_dirty = False
                if self._registry is None:
                    state.comments_delta = 0
                outbox.set_state(stream, StateKey.COUNTS, packb(self._counts(state)))
        return changed

    async def _sync_cluster(self, registry: Registry) -> None:
        """Add this edge's deltas to the shared counters, then read every open stream's totals.

        Each delta is taken before its ``incr`` is awaited (events arriving meanwhile start a new
        one) and put back if the Registry fails, so nothing is counted twice or lost.
        """
        streams = list(self._streams.items())
        for stream, state in streams:
            rx_delta, state.rx_delta = state.rx_delta, [0] * len(_EMOJI)
            likes, state.like_delta = state.like_delta, {}
            comments, state.comments_delta = state.comments_delta, 0
            unique, state.unique_new = state.unique_new, set()
            try:
                # This edge's viewers as a contribution that lapses unless renewed: an edge that
                # dies stops counting after VIEWERS_TTL_S.
                await registry.set_contribution(
                    _viewers_key(stream), self._edge_id, state.viewers_local, VIEWERS_TTL_S
                )
                if unique:
                    await registry.viewers_add(stream, sorted(unique))
                    unique = set()
                for i, emoji in enumerate(_EMOJI):
                    if rx_delta[i]:
                        await registry.incr(_rx_key(stream, emoji), rx_delta[i])
                        rx_delta[i] = 0
                        state.rx_dirty = True
                for comment_id, delta in list(likes.items()):
                    total = await registry.incr(_likes_key(stream, comment_id), delta)
                    del likes[comment_id]
                    if comment_id in state.likers:  # not deleted meanwhile
                        state.likes[comment_id] = total + state.like_delta.get(comment_id, 0)
                        state.likes_dirty.add(comment_id)
                if comments:
                    await registry.incr(_comments_key(stream), comments)
                    comments = 0
            finally:
                # Whatever was not added (the Registry failed) waits for the next flush.
                state.rx_delta = [a + b for a, b in zip(state.rx_delta, rx_delta, strict=True)]
                for comment_id, delta in likes.items():
                    state.like_delta[comment_id] = state.like_delta.get(comment_id, 0) + delta
                state.comments_delta += comments
                state.unique_new |= unique
        keys = []
        for stream, _ in streams:
            keys += [_comments_key(stream), *(_rx_key(stream, e) for e in _EMOJI)]
        totals = await registry.get_counters(keys)
        live = [await registry.sum_contributions(_viewers_key(stream)) for stream, _ in streams]
        uniques = [await registry.viewers_count(stream) for stream, _ in streams]
        width = 1 + len(_EMOJI)
        for index, (_, state) in enumerate(streams):
            comments, *reactions = totals[index * width : (index + 1) * width]
            # Deltas taken while we waited are not in the totals yet: keep them in what is shown.
            comments += state.comments_delta
            viewers = live[index]
            if uniques[index] != state.unique:
                state.unique = uniques[index]
                state.counts_dirty = True
            reactions = [r + d for r, d in zip(reactions, state.rx_delta, strict=True)]
            if comments != state.comments or viewers != state.viewers:
                state.comments, state.viewers = comments, viewers
                state.counts_dirty = True
            if reactions != state.reactions:
                state.reactions = reactions
                state.rx_dirty = True
