"""Registry: small shared state that every edge reads and writes (design.md §3).

Shaped after Redis: each method is one atomic command or script, keyed so a Redis Cluster can shard
it (one key per user / stream / rate key). Nothing here is durable: the embedded backend loses it on
restart, the Redis backend keeps it as long as Redis does (no persistence promised). Treat it as a
cache of facts that edges re-assert (connections, viewers) and counters that tolerate a reset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ConnectionRef:
    """Where one connection of a user lives."""

    edge_id: str
    conn_id: int


class Registry(Protocol):
    """Shared, non-durable state across edges.

    Guarantees every backend keeps:
    - **Atomicity**: every method is atomic on its own key (Redis: one command, MULTI or Lua).
    - **Visibility**: a write is visible to every edge once its coroutine returned.
    - **Expiry**: keys given a TTL vanish after it; rate windows expire by themselves. Times come
      from one clock per backend (Redis: the server's TIME), never from the calling edge, so edges
      with skewed clocks agree.
    """

    # -- connection registry: conn:user:{id} -> which edge holds which connections ------------
    async def add_connection(self, user_id: str, ref: ConnectionRef, ttl_s: float) -> None:
        """Record a connection of ``user_id``. The user's whole entry expires ``ttl_s`` after the
        latest add/touch, which bounds leftovers of an edge that died without removing its own."""

    async def remove_connection(self, user_id: str, ref: ConnectionRef) -> bool:
        """Forget one connection; True when it was recorded."""
        ...

    async def connections_of(self, user_id: str) -> list[ConnectionRef]:
        """Every recorded connection of the user, sorted by (edge_id, conn_id)."""
        ...

    # -- rate windows ---------------------------------------------------------------------------
    async def allow(self, key: str, limit: int, window_s: float) -> bool:
        """Sliding-window rate limit: True (and the event is counted) when fewer than ``limit``
        events were counted under ``key`` in the last ``window_s`` seconds; False (and NOT counted)
        otherwise. Exact (a log of event times, so ``limit`` should stay small, ≲1000). Slow mode is
        ``allow(key, 1, slow_seconds)``."""
        ...

    # -- recent comments cache (bounded list per stream) ---------------------------------------
    async def recent_push(self, stream: str, comment_id: int, payload: bytes, max_len: int) -> None:
        """Prepend one comment; the list keeps only the newest ``max_len`` entries by push order."""

    async def recent_get(self, stream: str, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` (comment_id, payload), most recently pushed first."""
        ...

    async def recent_remove(self, stream: str, comment_ids: Sequence[int]) -> int:
        """Drop entries with these ids (a delete or purge); returns how many went."""
        ...

    # -- unique viewers (HyperLogLog: ~0.81% standard error in Redis) ---------------------------
    async def viewers_add(self, stream: str, viewer_ids: Sequence[str]) -> bool:
        """Add viewers to the stream's unique-viewer estimate; True when the estimate changed."""
        ...

    async def viewers_count(self, stream: str) -> int:
        """Estimated number of distinct viewers ever added to ``stream``."""
        ...

    # -- counters -------------------------------------------------------------------------------
    async def incr(self, key: str, delta: int = 1, ttl_s: float | None = None) -> int:
        """Atomically add ``delta`` (may be negative); returns the new value. With ``ttl_s`` the
        counter expires that long after the FIRST increment (fixed window), not the latest."""
        ...

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        """Current values in ``keys`` order; missing or expired counters read as 0."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
