"""Ranked sampling (issue 12): which comments of a busy stream go into its tick, chosen by quality.

In a busy tier (``livechat.services.sampling``) a stream broadcasts a share ``f`` of its comments.
``RankedSelector`` picks that share by score instead of at random, one comment at a time in the
stream's order, so the choice needs no waiting (no added latency) and depends only on the order
of the comments and their scores:

- comments are grouped in windows of ``window_ms`` by the timestamp in their id (ids are minted
  by the posting edge, so every edge cuts the same windows: a window starts with the first comment
  of a later slot in stream order, once the window holds ``MIN_WINDOW`` comments);
- each window's selection uses the score histogram of the previous window: every comment scoring
  above a level ``T`` is kept, none below it, and at ``T`` the hash of the id keeps a part ``p``
  chosen so that the kept share is ``f``; the first window, with no histogram yet, is the plain
  sampler's hash among the comments scoring at least ``BASE_SCORE`` (a flagged or struck
  author's comment is not shown while the selector learns the stream);
- an author may fill at most ``author_cap`` of a window's shown comments, and at any point of the
  window at most that share of what it has shown so far (``CAP_FLOOR`` at least; the broadcaster
  and moderators are exempt). An author adds at most that many comments to the
  histogram the next window's threshold is computed from, so the budget the rest of their
  comments would have used goes to the next best comments and the shown rate stays ``f`` times the
  comment rate (the "showing M/s" of the banner);
- whatever the threshold, a window never shows more than that share of its comments so far plus
  ``BUDGET_SLACK`` and 3 standard deviations of a random draw: when the scores shift (a raid of new
  accounts, reputations arriving), a stale threshold cannot show more than the tier says.

With every score equal and no author offering more than the cap, the selection is the hash
sampler's (``keep_sample(id, keep_ppm)``): ``T`` is that score and ``p`` is ``keep_ppm`` (unless
the hash itself runs more than 3 standard deviations + ``BUDGET_SLACK`` ahead of its share).

Scores (``score``) are small integers, ``0..MAX_SCORE``; the weights below say what counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from livechat.fastpath import keep_sample
from livechat.ids import NODE_BITS, SEQUENCE_BITS

PPM: Final = 1_000_000
_TIME_SHIFT: Final = SEQUENCE_BITS + NODE_BITS

#: A neutral comment: a signed-in viewer with no strikes, nothing flagged, no engagement yet.
BASE_SCORE: Final = 6
MAX_SCORE: Final = 15
#: A comment the flag list hits, or from an author flagged lately: below any unflagged comment of
#: an author with fewer than 3 strikes.
FLAGGED: Final = -6
#: Per moderation strike of the author, counted up to ``MAX_STRIKES``.
STRIKE: Final = -1
MAX_STRIKES: Final = 3
#: A follower of the channel: a regular rather than a drive-by account.
FOLLOWER: Final = 1
#: A reply to the broadcaster's comment: the conversation viewers came for.
TO_BROADCASTER: Final = 2
#: Likes the author's recent shown comments got: +1 from ``LIKED`` on, +2 from ``LIKED_WELL``.
LIKED: Final = 1
LIKED_WELL: Final = 5
#: The broadcaster's and moderators' comments (``b`` of the event) rank above every viewer's.
BADGE: Final = {"bc": 9, "mod": 7}
#: The cap never goes below this many shown comments per author and window: the share is meant for
#: busy windows (2 500 shown at 50 000/s), not for the first comments of a window or a quiet one.
CAP_FLOOR: Final = 3
#: A window ends at a new slot only once it holds this many comments (else it goes on): the next
#: window's threshold needs a histogram (200: 2 per level of 0..15 several times over).
MIN_WINDOW: Final = 200
#: How far (besides 3 standard deviations of a random draw) a window's shown count may run ahead
#: of the share of its comments so far.
BUDGET_SLACK: Final = 20


@dataclass(frozen=True, slots=True)
class Signals:
    """What is known about one comment and its author when it is delivered."""

    flagged: bool = False
    strikes: int = 0
    follower: bool = False
    badge: str | None = None
    to_broadcaster: bool = False
    author_likes: int = 0


def author_part(strikes: int, follower: bool, author_likes: int) -> int:
    """The part of a score that depends on the author alone (callers cache it per author)."""
    value = BASE_SCORE + STRIKE * min(max(strikes, 0), MAX_STRIKES)
    if follower:
        value += FOLLOWER
    if author_likes >= LIKED_WELL:
        value += 2
    elif author_likes >= LIKED:
        value += 1
    return value


def comment_score(author: int, flagged: bool, to_broadcaster: bool, badge: str | None) -> int:
    """A comment's score from its author's part (``author_part``) and its own signals."""
    value = author
    if flagged:
        value += FLAGGED
    if to_broadcaster:
        value += TO_BROADCASTER
    if badge is not None:
        value += BADGE.get(badge, 0)
    return min(max(value, 0), MAX_SCORE)


def score(signals: Signals) -> int:
    """The comment's quality, ``0..MAX_SCORE`` (higher is shown first)."""
    author = author_part(signals.strikes, signals.follower, signals.author_likes)
    return comment_score(author, signals.flagged, signals.to_broadcaster, signals.badge)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One comment offered to the selector. ``exempt``: never capped (broadcaster, moderators)."""

    comment_id: int
    author: str
    score: int
    exempt: bool = False


class _Window:
    """One stream's selection state: the current window and the previous window's histogram."""

    __slots__ = ("cut", "hist", "kept", "offered", "previous", "seen", "shown", "slot")

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.hist = [0] * (MAX_SCORE + 1)  # scores of the comments that could be shown
        self.seen = 0
        self.kept = 0
        # Per capped author in this window: comments put in ``hist``, and shown.
        self.offered: dict[str, int] = {}
        self.shown: dict[str, int] = {}
        self.previous: tuple[list[int], int] | None = None
        # For ``previous`` and one keep_ppm: (keep_ppm, threshold level, ppm kept at it, author cap).
        self.cut: tuple[int, int, int, int] | None = None

    def roll(self, slot: int) -> None:
        self.previous = (self.hist, self.seen)
        self.hist = [0] * (MAX_SCORE + 1)
        self.seen = 0
        self.kept = 0
        self.offered = {}
        self.shown = {}
        self.cut = None
        self.slot = slot


def threshold(hist: Sequence[int], seen: int, keep_ppm: int) -> tuple[int, int]:
    """(level, ppm) keeping ``keep_ppm`` of ``seen`` comments from the best of ``hist`` down:
    everything above ``level`` and ``ppm`` parts per million of ``level``. When the histogram holds
    fewer comments than that (capped authors left it), everything in it: (0, PPM)."""
    target = keep_ppm * seen  # in comment-ppm: no rounding until the last division
    above = 0
    for level in range(len(hist) - 1, -1, -1):
        count = hist[level]
        if count and (above + count) * PPM >= target:
            return level, max(0, (target - above * PPM) // count)
        above += count
    return 0, PPM


def _allowed(seen: int, keep_ppm: int) -> float:
    """The most a window may have shown after ``seen`` comments: the share, plus BUDGET_SLACK,
    plus 3 standard deviations of a random draw of that share (so a hash draw running ahead by
    chance is let through, and a stale threshold keeping far too many is not)."""
    share = keep_ppm / PPM
    mean = share * seen
    return mean + BUDGET_SLACK + 3.0 * math.sqrt(mean * (1.0 - share))


class RankedSelector:
    """Per-stream ranked selection for the busy tiers; deterministic from the comments' order,
    ids, authors and scores (and the tier's ``keep_ppm``)."""

    __slots__ = ("_author_cap", "_streams", "_window_ms")

    def __init__(self, window_ms: int, author_cap: float) -> None:
        if window_ms < 1:
            raise ValueError("SamplingConfig.rank_window_ms must be >= 1")
        if not 0.0 < author_cap <= 1.0:
            raise ValueError("SamplingConfig.author_cap must be in (0, 1]")
        self._window_ms = window_ms
        self._author_cap = author_cap
        self._streams: dict[str, _Window] = {}

    def cap(self, keep_ppm: int, seen: int) -> int:
        """Shown comments one author may have in a window of ``seen`` comments at ``keep_ppm``."""
        budget = keep_ppm * seen / PPM
        return max(CAP_FLOOR, int(self._author_cap * budget + 0.999999))

    def select(self, stream: str, keep_ppm: int, candidates: Sequence[Candidate]) -> bytearray:
        """1 = into the tick, 0 = stored only; ``candidates`` in the stream's order."""
        return self.select_many(
            stream,
            keep_ppm,
            [c.comment_id for c in candidates],
            [c.author for c in candidates],
            [c.score for c in candidates],
            [c.exempt for c in candidates],
        )

    def select_many(
        self,
        stream: str,
        keep_ppm: int,
        comment_ids: Sequence[int],
        authors: Sequence[str],
        scores: Sequence[int],
        exempt: Sequence[bool],
    ) -> bytearray:
        """``select`` on columns (one per field of ``Candidate``): no object per comment."""
        out = bytearray(len(comment_ids))
        window = self._streams.get(stream)
        window_ms = self._window_ms
        share = self._author_cap
        for index, comment_id in enumerate(comment_ids):
            # Window slots from the id's time bits (ms since the id epoch, a multiple of 500 ms).
            slot = (comment_id >> _TIME_SHIFT) // window_ms
            if window is None:
                window = self._streams[stream] = _Window(slot)
            elif slot > window.slot:
                if window.seen >= MIN_WINDOW:
                    window.roll(slot)
                else:  # too few comments for a histogram: the window goes on
                    window.slot = slot
            previous = window.previous
            cut = window.cut
            if cut is None or cut[0] != keep_ppm:
                if previous is None:
                    cut = (keep_ppm, BASE_SCORE, -1, 0)
                else:
                    level, ppm = threshold(previous[0], previous[1], keep_ppm)
                    # The cap is a share of what the window will show: sized from the previous one.
                    cut = window.cut = (keep_ppm, level, ppm, self.cap(keep_ppm, previous[1]))
            cap = cut[3] if previous is not None else self.cap(keep_ppm, window.seen + 1)
            author = authors[index]
            level = scores[index]
            window.seen += 1
            free = exempt[index]
            if free:
                window.hist[level] += 1
            else:
                # An author adds at most ``cap`` comments to the histogram: what they may be shown.
                offered = window.offered.get(author, 0)
                if offered < cap:
                    window.offered[author] = offered + 1
                    window.hist[level] += 1
                # Shown: at most ``cap`` in the window, and at any point at most the share of what
                # the window has shown so far (CAP_FLOOR at least): no burst at a window's start.
                shown = window.shown.get(author, 0)
                if shown >= cap or (shown >= CAP_FLOOR and shown >= share * (window.kept + 1)):
                    continue
            if cut[2] < 0:  # the first window: the hash, among comments scoring BASE_SCORE or more
                keep = level >= BASE_SCORE and keep_sample(comment_id, keep_ppm)
            else:
                keep = level > cut[1] or (level == cut[1] and keep_sample(comment_id, cut[2]))
            if keep and window.kept * PPM >= keep_ppm * window.seen + BUDGET_SLACK * PPM:
                keep = window.kept < _allowed(window.seen, keep_ppm)
            if keep:
                window.kept += 1
                out[index] = 1
                if not free:
                    window.shown[author] = window.shown.get(author, 0) + 1
        return out

    def forget(self, stream: str) -> None:
        self._streams.pop(stream, None)
