"""Registry: small shared state that every edge reads and writes (docs/architecture.md §3).

Shaped after Redis: each method is one atomic command or script, keyed so a Redis Cluster can shard
it (one key per user / stream / rate key). Nothing here is durable: the embedded backend loses it on
restart, the Redis backend keeps it as long as Redis does (no persistence promised). Treat it as a
cache of facts that edges re-assert (connections, viewers) and counters that tolerate a reset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    - **Cluster-safe**: each call touches one key, or keys sharing one Redis Cluster hash tag, so
      a Redis Cluster runs it on one shard, atomically.
    - **Errors**: BackendUnavailable when the service cannot be reached (within ~2 s), ClosedError
      after ``aclose``. A call that raised may or may not have taken effect (its reply was lost).
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
        """Add viewers to the stream's unique-viewer estimate; True when the estimate changed.
        Pass one id per person (a user id, or a stable anonymous id), not per connection, so a
        viewer with three tabs on three edges counts once."""
        ...

    async def viewers_count(self, stream: str) -> int:
        """Estimated number of distinct viewers ever added to ``stream``. An estimate nobody
        added to or read for a while (the memory registry: 60 s; Redis: UNIQUE_VIEWERS_IDLE_S, a
        day) is dropped: a stream no edge has open starts again from zero."""
        ...

    # -- counters -------------------------------------------------------------------------------
    async def incr(self, key: str, delta: int = 1, ttl_s: float | None = None) -> int:
        """Atomically add ``delta`` (may be negative); returns the new value. With ``ttl_s`` the
        counter expires that long after the FIRST increment (fixed window), not the latest."""
        ...

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        """Current values in ``keys`` order; missing or expired counters read as 0."""
        ...

    async def hincr_many(self, key: str, deltas: Mapping[str, int]) -> dict[str, int]:
        """Atomically add each ``field: delta`` to the counter hash ``key`` (e.g. per-emoji totals
        of a stream) and return every field of the hash after the additions (``{}`` deltas read
        it). No expiry."""
        ...

    # -- idempotency claims (e.g. a comment's ``cmid`` across edges) ---------------------------
    async def claim(self, key: str, value: bytes, ttl_s: float) -> bytes | None:
        """Claim ``key`` for ``ttl_s`` seconds (SET NX): None when this call claimed it (``value``
        stored), else the value already stored, which is left unchanged. Of concurrent claims on
        one key exactly one gets None."""
        ...

    async def set_claim(self, key: str, value: bytes, ttl_s: float) -> None:
        """Overwrite the value of ``key`` (claimed or not) and restart its TTL, e.g. to replace a
        "pending" marker with the final answer once it is known."""

    async def release_claim(self, key: str) -> None:
        """Forget ``key`` (e.g. the claimed work failed, so a retry may claim it again)."""

    # -- live contributions: per-edge values that heal when an edge dies ----------------------
    async def set_contribution(self, key: str, edge_id: str, value: int, ttl_s: float) -> None:
        """Set this edge's ``value`` under ``key`` (e.g. its viewer count of a stream), valid for
        ``ttl_s`` seconds from now; an edge keeps it alive by setting it again before then. An
        edge that stops (crash, kill, partition) drops out of the sum once its TTL lapses."""

    async def sum_contributions(self, key: str) -> int:
        """Sum of every edge's live (not yet lapsed) contribution under ``key``; 0 when none."""
        ...

    # -- node-id leases (comment ids embed a node id: no two live edges may share one) --------
    async def lease_node(self, edge_id: str, max_nodes: int, ttl_s: float) -> int:
        """The smallest node id in ``[0, max_nodes)`` that no live lease holds, now leased to
        ``edge_id`` for ``ttl_s`` seconds. While the lease is live (renewed in time) no other
        edge gets that id, even under concurrent calls. An edge has at most one lease: calling
        again while it holds one renews and returns that one (so a retried call never takes two;
        edge ids must be unique among live edges, as the broker already requires). A lease that
        lapsed is free for anyone, the smallest first. Raises BackendError when all ids are held.
        """
        ...

    async def renew_node(self, edge_id: str, node: int, ttl_s: float) -> bool:
        """Extend ``edge_id``'s lease on ``node`` to ``ttl_s`` seconds from now. False when the
        lease was lost (it lapsed, was released, or never existed): the edge must stop using
        ``node`` and lease again. Renew well within the TTL (e.g. every ttl/3)."""
        ...

    async def release_node(self, edge_id: str, node: int) -> None:
        """Give ``node`` back now (clean shutdown). A no-op unless ``edge_id`` holds it."""

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
