"""Write limits: per-user comment buckets by role, slow mode, reactions, per-stream admission; and
the budgets of the other requests that cost the server (history pages, joins, reports, likes)."""

from __future__ import annotations

import enum
import ipaddress
from typing import Final

from livechat.config import LimitsConfig
from livechat.fastpath import TokenTable
from livechat.protocol import SLOW_MAX_S, ErrorCode, ProtocolError
from livechat.services.sessions import Session


def retry_ms(seconds: float) -> int:
    """A wait in whole milliseconds, rounded up, at least 1."""
    return max(int(seconds * 1000.0 + 0.999), 1)


def _per_minute(count: int) -> tuple[float, float]:
    # (tokens per second, burst); 0 per minute = unlimited (rate 0 keeps no bucket).
    return (count / 60.0, float(count)) if count > 0 else (0.0, 0.0)


class WriteLimits:
    """All write-side limits of one edge. Times are monotonic seconds.

    Comment buckets are per user (not per connection: opening tabs does not multiply the limit),
    in a class per role rank (0 viewer, 1 moderator, 2 broadcaster). Slow mode exempts nobody by
    itself; the caller skips it for moderators and broadcasters.
    """

    __slots__ = ("_comments", "_last_post", "_reactions", "_streams", "budgets")

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
        self.budgets = RequestBudgets(config)

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

    def reaction_retry_after(self, user_id: str, now: float) -> float:
        return max(self._reactions.retry_after(user_id, 0, now), 0.001)

    def prune(self, now: float) -> int:
        """Forget buckets that refilled and slow-mode marks older than any slow interval."""
        dropped = self._comments.prune(now) + self._reactions.prune(now) + self._streams.prune(now)
        dropped += self.budgets.prune(now)
        stale = [key for key, last in self._last_post.items() if now - last > SLOW_MAX_S]
        for key in stale:
            del self._last_post[key]
        return dropped + len(stale)


class Budget(enum.Enum):
    """A request with a budget, named as its ``LimitsConfig`` keys are (``<name>_per_minute``)."""

    HISTORY = "history_pages"
    JOIN = "joins"
    REPORT = "reports"
    LIKE = "likes"


# Token classes of a budget's table: one bucket per connection, one per user or source address.
_CONNECTION: Final = 0
_OWNER: Final = 1


#: Anonymous IPv6 clients share a budget per /64: one subscriber line is usually given a whole /64,
#: so a per-address budget would give one client 2**64 of them.
IPV6_BUDGET_PREFIX: Final = 64


def client_ip(peer: str | None) -> str | None:
    """The IP address in an edge peer (``1.2.3.4:5678``, ``[2001:db8::1]:5678``, or a bare IP
    from a trusted proxy), in normal form (IPv4-mapped IPv6 as IPv4); None when there is none."""
    if not peer:
        return None
    host = peer
    if peer.startswith("["):
        host = peer[1 : peer.find("]")]
    elif peer.count(":") == 1:
        host = peer.partition(":")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def budget_owner(session: Session) -> str | None:
    """Whose per-user budget a session's requests take: the signed-in user's, else (anonymous) its
    source address's (IPv6: its /64); None when neither is known (then only the connection's
    budget applies)."""
    user_id = session.principal.user_id
    if user_id is not None:
        return "u:" + user_id
    address = session.address
    if address is None:
        return None
    if ":" in address:
        network = ipaddress.ip_network(f"{address}/{IPV6_BUDGET_PREFIX}", strict=False)
        return f"a:{network}"
    return f"a:{address}"


class RequestBudgets:
    """Per-minute budgets of the requests that cost the server a read or a write each: history
    pages, joins, reports, likes (``Budget``). Each request takes one token from its connection's
    bucket and one from its owner's (``budget_owner``); it is refused when either is empty, and
    then nothing is taken. Times are monotonic seconds."""

    __slots__ = ("_tables",)

    def __init__(self, config: LimitsConfig) -> None:
        self._tables = {
            budget: TokenTable(
                [
                    _per_minute(getattr(config, f"{budget.value}_per_minute")),
                    _per_minute(getattr(config, f"{budget.value}_per_minute_per_user")),
                ]
            )
            for budget in Budget
        }

    def take(self, budget: Budget, conn_id: int, owner: str | None, now: float) -> float:
        """Take one request: 0.0 when allowed, else seconds until both buckets allow one."""
        table = self._tables[budget]
        wait = table.retry_after(conn_id, _CONNECTION, now)
        if owner is not None:
            wait = max(wait, table.retry_after(owner, _OWNER, now))
        if wait > 0.0:
            return max(wait, 0.001)
        table.allow(conn_id, _CONNECTION, now)
        if owner is not None:
            table.allow(owner, _OWNER, now)
        return 0.0

    def charge(self, budget: Budget, session: Session, rid: int | None, now: float) -> ProtocolError | None:
        """``take`` for a session's request: None when allowed, else its ``rate_limited`` reply."""
        wait = self.take(budget, session.conn, budget_owner(session), now)
        if wait == 0.0:
            return None
        return ProtocolError(
            ErrorCode.RATE_LIMITED, f"too many requests ({budget.value})", rid, retry_ms=retry_ms(wait)
        )

    def prune(self, now: float) -> int:
        """Forget refilled buckets (closed connections' too)."""
        return sum(table.prune(now) for table in self._tables.values())


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
