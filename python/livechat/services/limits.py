"""Write limits: per-user comment buckets by role, slow mode, reactions, per-stream admission."""

from __future__ import annotations

from livechat.config import LimitsConfig
from livechat.fastpath import TokenTable
from livechat.protocol import SLOW_MAX_S


def _per_minute(count: int) -> tuple[float, float]:
    # (tokens per second, burst); 0 per minute = unlimited (rate 0 keeps no bucket).
    return (count / 60.0, float(count)) if count > 0 else (0.0, 0.0)


class WriteLimits:
    """All write-side limits of one edge. Times are monotonic seconds.

    Comment buckets are per user (not per connection: opening tabs does not multiply the limit),
    in a class per role rank (0 viewer, 1 moderator, 2 broadcaster). Slow mode exempts nobody by
    itself; the caller skips it for moderators and broadcasters.
    """

    __slots__ = ("_comments", "_last_post", "_reactions", "_streams")

    def __init__(self, config: LimitsConfig) -> None:
        self._comments = TokenTable(
            [
                _per_minute(config.comments_per_minute_viewer),
                _per_minute(config.comments_per_minute_moderator),
                _per_minute(config.comments_per_minute_broadcaster),
            ]
        )
        self._reactions = TokenTable([_per_minute(config.reactions_per_minute)])
        per_second = float(config.stream_comments_per_second)
        self._streams = TokenTable([(per_second, per_second)] if per_second > 0 else [(0.0, 0.0)])
        # (stream, user) -> monotonic time of the last comment, kept only while slow mode is on.
        self._last_post: dict[tuple[str, str], float] = {}

    def take_comment(self, user_id: str, role_rank: int, now: float) -> float:
        """Take one comment token: 0.0 when allowed, else seconds until the next one."""
        if self._comments.allow(user_id, role_rank, now):
            return 0.0
        return max(self._comments.retry_after(user_id, role_rank, now), 0.001)

    def take_comments(self, user_ids: list[str], role_ranks: bytes, now: float) -> bytearray:
        """``take_comment`` for a run of posts in one call: 1 = allowed, 0 = refused."""
        return self._comments.allow_many(user_ids, role_ranks, now)

    def comment_retry_after(self, user_id: str, role_rank: int, now: float) -> float:
        return max(self._comments.retry_after(user_id, role_rank, now), 0.001)

    def admit_streams(self, streams: list[str], now: float) -> bytearray:
        """``admit_stream`` for a run of posts in one call."""
        return self._streams.allow_many(streams, bytes(len(streams)), now)

    def slow_mode_wait(self, stream: str, user_id: str, slow_s: int, now: float) -> float:
        """Seconds the user must still wait in a slow-mode stream (0.0 = may post)."""
        last = self._last_post.get((stream, user_id))
        if last is None:
            return 0.0
        wait = last + slow_s - now
        return wait if wait > 0.0 else 0.0

    def mark_posted(self, stream: str, user_id: str, now: float) -> None:
        self._last_post[(stream, user_id)] = now

    def admit_stream(self, stream: str, now: float) -> bool:
        """Per-stream admission cap on this edge."""
        return self._streams.allow(stream, 0, now)

    def take_reaction(self, user_id: str, now: float) -> bool:
        return self._reactions.allow(user_id, 0, now)

    def prune(self, now: float) -> int:
        """Forget buckets that refilled and slow-mode marks older than any slow interval."""
        dropped = self._comments.prune(now) + self._reactions.prune(now) + self._streams.prune(now)
        stale = [key for key, last in self._last_post.items() if now - last > SLOW_MAX_S]
        for key in stale:
            del self._last_post[key]
        return dropped + len(stale)


class ErrorBudget:
    """Counts error replies per connection in fixed one-minute windows."""

    __slots__ = ("_limit", "_windows")

    def __init__(self, per_minute: int) -> None:
        self._limit = per_minute
        # conn -> [window start, count]
        self._windows: dict[int, list[float]] = {}

    def charge(self, conn_id: int, now: float) -> bool:
        """Count one error; True when the connection is now over its budget."""
        window = self._windows.get(conn_id)
        if window is None or now - window[0] >= 60.0:
            self._windows[conn_id] = [now, 1.0]
            return self._limit < 1
        window[1] += 1.0
        return window[1] > self._limit

    def forget(self, conn_id: int) -> None:
        self._windows.pop(conn_id, None)
