"""Adaptive sampling: a per-stream comment-rate monitor and the tier it puts the stream in.

Every comment is stored; the tier only decides which ones go into the stream's tick. With
``SamplingConfig.ranked`` (the default) a busy tier keeps the best-scoring share of the comments
(``livechat.services.ranking``, ``select``); otherwise, and as its first-window fallback, the
decision is a hash of the comment id (``livechat.fastpath.keep_sample``, ``keep``/``keep_many``),
so every edge agrees on it without coordination. Callers never sample out moderator actions, a
viewer's own comments, replies to them or comments mentioning them (those reach the author, the
replied-to and the mentioned users directly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from livechat.config import SamplingConfig
from livechat.fastpath import keep_sample, sample_mask
from livechat.services.ranking import Candidate, RankedSelector

PPM = 1_000_000


@dataclass(frozen=True, slots=True)
class Tier:
    """``level`` 0 broadcasts everything; higher levels keep ``keep_ppm`` parts per million."""

    level: int
    keep_ppm: int
    rate: float


class _StreamRate:
    """Comments counted in ``buckets`` slices of a sliding window; the rate uses completed slices."""

    __slots__ = ("counts", "current", "level", "rate", "total")

    def __init__(self, buckets: int, slice_index: int) -> None:
        self.counts = [0] * buckets
        self.current = slice_index
        self.total = 0  # sum of every slice but the current one
        self.level = 0
        self.rate = 0.0


class Sampler:
    """Tracks each stream's comment rate and tier (monotonic seconds)."""

    __slots__ = ("_buckets", "_down", "_keep", "_ranked", "_slice_s", "_streams", "_thresholds")

    def __init__(self, config: SamplingConfig) -> None:
        if config.buckets < 2:
            raise ValueError("SamplingConfig.buckets must be >= 2")
        previous = 0.0
        for threshold, fraction in config.tiers:
            if threshold <= previous or not 0.0 < fraction <= 1.0:
                raise ValueError("SamplingConfig.tiers must ascend with fractions in (0, 1]")
            previous = threshold
        self._buckets = config.buckets
        self._slice_s = config.window_s / config.buckets
        # Level i (1-based) starts at thresholds[i]; thresholds[0] is a placeholder for level 0.
        self._thresholds = [0.0] + [t for t, _ in config.tiers]
        self._keep = [PPM] + [round(f * PPM) for _, f in config.tiers]
        self._down = config.hysteresis
        self._streams: dict[str, _StreamRate] = {}
        selector = RankedSelector(config.rank_window_ms, config.author_cap)
        self._ranked = selector if config.ranked else None

    @property
    def ranked(self) -> bool:
        """Whether busy tiers select by score (``select``) rather than by hash (``keep_many``)."""
        return self._ranked is not None

    def _advance(self, state: _StreamRate, index: int) -> None:
        """Move to slice ``index``. Invariant: ``total`` sums the B-1 completed slices before it."""
        if index <= state.current:
            return
        buckets = self._buckets
        counts = state.counts
        if index - state.current >= buckets:
            for i in range(buckets):
                counts[i] = 0
            state.total = 0
        else:
            for entered in range(state.current + 1, index + 1):
                state.total += counts[(entered - 1) % buckets]  # the slice left is now complete
                state.total -= counts[entered % buckets]  # slice entered - B leaves the window
                counts[entered % buckets] = 0
        state.current = index
        state.rate = state.total / (self._slice_s * (buckets - 1))
        self._retier(state)

    def _retier(self, state: _StreamRate) -> None:
        rate = state.rate
        level = state.level
        thresholds = self._thresholds
        while level + 1 < len(thresholds) and rate >= thresholds[level + 1]:
            level += 1
        while level > 0 and rate < thresholds[level] * self._down:
            level -= 1
        state.level = level

    def observe(self, stream: str, now: float, count: int = 1) -> None:
        """Count ``count`` comments of ``stream`` at ``now``."""
        index = int(now / self._slice_s)
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _StreamRate(self._buckets, index)
        elif index != state.current:
            self._advance(state, index)
        state.counts[index % self._buckets] += count

    def tier(self, stream: str, now: float) -> Tier:
        state = self._streams.get(stream)
        if state is None:
            return Tier(0, PPM, 0.0)
        self._advance(state, int(now / self._slice_s))
        return Tier(state.level, self._keep[state.level], state.rate)

    def keep(self, stream: str, comment_id: int) -> bool:
        """Whether a comment goes into the tick at the stream's current tier."""
        state = self._streams.get(stream)
        if state is None or state.level == 0:
            return True
        return keep_sample(comment_id, self._keep[state.level])

    def keep_many(self, stream: str, comment_ids: list[int]) -> bytearray | None:
        """``keep`` for several comments of one stream in one call; None = keep them all."""
        state = self._streams.get(stream)
        if state is None or state.level == 0:
            return None
        return sample_mask(comment_ids, self._keep[state.level])

    def keep_ppm(self, stream: str) -> int:
        """The share of the stream's comments its current tier broadcasts (PPM: all)."""
        state = self._streams.get(stream)
        return PPM if state is None else self._keep[state.level]

    def select(self, stream: str, candidates: list[Candidate]) -> bytearray | None:
        """The ranked twin of ``keep_many`` (``livechat.services.ranking``): 1 = into the tick;
        None = keep them all (tier 0). Falls back to ``keep_many`` when ranking is off."""
        return self.select_many(
            stream,
            [c.comment_id for c in candidates],
            [c.author for c in candidates],
            [c.score for c in candidates],
            [c.exempt for c in candidates],
        )

    def select_many(
        self,
        stream: str,
        comment_ids: Sequence[int],
        authors: Sequence[str],
        scores: Sequence[int],
        exempt: Sequence[bool],
    ) -> bytearray | None:
        """``select`` on columns (``RankedSelector.select_many``)."""
        state = self._streams.get(stream)
        if state is None or state.level == 0:
            return None
        if self._ranked is None:
            return sample_mask(comment_ids, self._keep[state.level])
        return self._ranked.select_many(stream, self._keep[state.level], comment_ids, authors, scores, exempt)

    def forget(self, stream: str) -> None:
        self._streams.pop(stream, None)
        if self._ranked is not None:
            self._ranked.forget(stream)

    def streams(self) -> list[str]:
        return list(self._streams)
