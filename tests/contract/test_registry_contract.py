"""Registry contract (livechat.ports.registry), run against every registry backend.

Two registry clients on the same shared state stand for two edges: every write through one must be
visible through the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from livechat.backends import open_registry
from livechat.ports import BackendError, ClosedError, ConnectionRef, Registry
from redis_service import RedisServer

RegistryOpener = Callable[[], Awaitable[Registry]]


async def two_edges(open_registry_instance: RegistryOpener) -> tuple[Registry, Registry]:
    return await open_registry_instance(), await open_registry_instance()


async def test_connection_registry_is_shared(open_registry_instance: RegistryOpener) -> None:
    a, b = await two_edges(open_registry_instance)
    assert await a.connections_of("u1") == []
    await a.add_connection("u1", ConnectionRef("edge-a", 7), ttl_s=60)
    await b.add_connection("u1", ConnectionRef("edge-b", 3), ttl_s=60)
    await b.add_connection("u1", ConnectionRef("edge-a", 2), ttl_s=60)
    await a.add_connection("u2", ConnectionRef("edge-a", 9), ttl_s=60)
    expected = [ConnectionRef("edge-a", 2), ConnectionRef("edge-a", 7), ConnectionRef("edge-b", 3)]
    assert await a.connections_of("u1") == expected
    assert await b.connections_of("u1") == expected
    assert await b.remove_connection("u1", ConnectionRef("edge-a", 7)) is True
    assert await a.remove_connection("u1", ConnectionRef("edge-a", 7)) is False
    assert await a.connections_of("u1") == [ConnectionRef("edge-a", 2), ConnectionRef("edge-b", 3)]
    assert await b.connections_of("u2") == [ConnectionRef("edge-a", 9)]


async def test_edge_ids_with_separators_round_trip(open_registry_instance: RegistryOpener) -> None:
    a = await open_registry_instance()
    odd = ConnectionRef("host-1|worker:2", 2**62)
    await a.add_connection("u", odd, ttl_s=60)
    assert await a.connections_of("u") == [odd]


async def test_connection_entry_expires_after_ttl_from_latest_add(
    open_registry_instance: RegistryOpener,
) -> None:
    a, b = await two_edges(open_registry_instance)
    await a.add_connection("u", ConnectionRef("dead-edge", 1), ttl_s=0.6)
    await asyncio.sleep(0.2)
    await b.add_connection("u", ConnectionRef("live-edge", 2), ttl_s=0.6)  # refreshes the whole entry
    await asyncio.sleep(0.2)  # 0.4 s after the first add, 0.2 s after the latest
    assert len(await a.connections_of("u")) == 2
    await asyncio.sleep(0.5)
    assert await a.connections_of("u") == []


async def test_sliding_window_is_shared_and_exact(open_registry_instance: RegistryOpener) -> None:
    a, b = await two_edges(open_registry_instance)
    assert [await a.allow("user:1", 3, 0.5) for _ in range(2)] == [True, True]
    assert await b.allow("user:1", 3, 0.5) is True
    # Denied attempts are not counted, or a spammer would never get out.
    assert [await x.allow("user:1", 3, 0.5) for x in (a, b, a, b)] == [False] * 4
    assert await a.allow("user:2", 3, 0.5) is True  # keys are independent
    await asyncio.sleep(0.6)
    assert [await b.allow("user:1", 3, 0.5) for _ in range(4)] == [True, True, True, False]


async def test_window_slides_rather_than_resets(open_registry_instance: RegistryOpener) -> None:
    a = await open_registry_instance()
    assert await a.allow("k", 2, 0.8) is True
    await asyncio.sleep(0.45)
    assert await a.allow("k", 2, 0.8) is True
    assert await a.allow("k", 2, 0.8) is False
    await asyncio.sleep(0.45)  # the first event left the window, the second has not
    assert await a.allow("k", 2, 0.8) is True
    assert await a.allow("k", 2, 0.8) is False


async def test_concurrent_allow_never_exceeds_the_limit(open_registry_instance: RegistryOpener) -> None:
    a, b = await two_edges(open_registry_instance)
    results = await asyncio.gather(*(x.allow("burst", 10, 5.0) for _ in range(30) for x in (a, b)))
    assert sum(results) == 10


async def test_slow_mode_is_one_per_window(open_registry_instance: RegistryOpener) -> None:
    a, b = await two_edges(open_registry_instance)
    assert await a.allow("slow:s:u", 1, 0.3) is True
    assert await b.allow("slow:s:u", 1, 0.3) is False
    await asyncio.sleep(0.35)
    assert await b.allow("slow:s:u", 1, 0.3) is True


async def test_recent_list_is_bounded_newest_first_and_removable(
    open_registry_instance: RegistryOpener,
) -> None:
    a, b = await two_edges(open_registry_instance)
    for i in range(1, 13):
        await (a if i % 2 else b).recent_push("s", i, f"c{i}".encode(), max_len=8)
    got = await b.recent_get("s", 100)
    assert got == [(i, f"c{i}".encode()) for i in range(12, 4, -1)]
    assert await a.recent_get("s", 3) == got[:3]
    assert await a.recent_remove("s", [7, 9, 999]) == 2
    assert [cid for cid, _ in await b.recent_get("s", 100)] == [12, 11, 10, 8, 6, 5]
    assert await a.recent_get("other", 10) == []
    assert await a.recent_get("s", 0) == []
    assert await a.recent_remove("s", []) == 0


async def test_recent_entries_keep_binary_payloads_and_big_ids(
    open_registry_instance: RegistryOpener,
) -> None:
    a = await open_registry_instance()
    big = (1 << 63) - 1
    await a.recent_push("s", big, b"\x00\xff\r\n", max_len=5)
    await a.recent_push("s", 0, b"", max_len=5)
    assert await a.recent_get("s", 5) == [(0, b""), (big, b"\x00\xff\r\n")]
    assert await a.recent_remove("s", [big]) == 1


async def test_unique_viewers_estimate(open_registry_instance: RegistryOpener) -> None:
    a, b = await two_edges(open_registry_instance)
    assert await a.viewers_count("s") == 0
    assert await a.viewers_add("s", ["v1", "v2", "v3"]) is True
    assert await b.viewers_add("s", ["v1", "v2"]) is False  # already counted
    assert await b.viewers_count("s") == 3
    ids = [f"viewer-{i}" for i in range(20_000)]
    for start in range(0, len(ids), 1000):
        await (a if start % 2000 else b).viewers_add("s", ids[start : start + 1000])
    estimate = await a.viewers_count("s")
    # 0.81% standard error: 3 sigma is ~2.5%.
    assert abs(estimate - 20_003) / 20_003 < 0.025, estimate
    assert await a.viewers_add("s", []) is False
    assert await b.viewers_count("other") == 0


async def test_counters_are_atomic_and_shared(open_registry_instance: RegistryOpener) -> None:
    a, b = await two_edges(open_registry_instance)
    results = await asyncio.gather(*(x.incr("comments:s") for _ in range(50) for x in (a, b)))
    assert sorted(results) == list(range(1, 101))
    assert await b.incr("comments:s", -30) == 70
    assert await a.get_counters(["comments:s", "missing", "comments:s"]) == [70, 0, 70]
    assert await a.get_counters([]) == []


async def test_counter_ttl_is_a_fixed_window_from_the_first_increment(
    open_registry_instance: RegistryOpener,
) -> None:
    a, b = await two_edges(open_registry_instance)
    assert await a.incr("window", 1, ttl_s=0.8) == 1
    await asyncio.sleep(0.3)
    assert await b.incr("window", 1, ttl_s=0.8) == 2  # does not extend the window
    await asyncio.sleep(0.6)
    assert await a.get_counters(["window"]) == [0]
    assert await b.incr("window", 5, ttl_s=0.8) == 5  # a new window


async def test_closed_registry_refuses_calls(open_registry_instance: RegistryOpener) -> None:
    a = await open_registry_instance()
    await a.aclose()
    await a.aclose()
    with pytest.raises(ClosedError):
        await a.incr("x")


# -- Redis only: server-side state a client must survive ----------------------------------------


async def test_redis_registry_survives_script_flush_and_reconnect(redis_server: RedisServer) -> None:
    registry = await open_registry(redis_server.url, prefix="flush-test:")
    try:
        assert await registry.allow("k", 5, 10.0) is True
        redis_server.cli("SCRIPT", "FLUSH")  # as after a Redis restart: cached script SHAs are gone
        assert await registry.allow("k", 5, 10.0) is True
        redis_server.cli("CLIENT", "KILL", "TYPE", "normal")
        await asyncio.sleep(0.1)  # let the loop see the connection drop
        assert await registry.incr("after-kill") == 1
        assert await registry.allow("k", 2, 10.0) is False  # state kept across the reconnect
    finally:
        await registry.aclose()


# -- reaction totals -----------------------------------------------------------------------------


async def test_hincr_many_adds_atomically_and_returns_the_whole_hash(
    open_registry_instance: RegistryOpener,
) -> None:
    a, b = await two_edges(open_registry_instance)
    assert await a.hincr_many("rx:s", {}) == {}
    assert await a.hincr_many("rx:s", {"heart": 2, "wow": 1}) == {"heart": 2, "wow": 1}
    await asyncio.gather(*(x.hincr_many("rx:s", {"heart": 1, "fire": 1}) for _ in range(25) for x in (a, b)))
    assert await b.hincr_many("rx:s", {"wow": -1}) == {"heart": 52, "wow": 0, "fire": 50}
    assert await a.hincr_many("rx:s", {}) == {"heart": 52, "wow": 0, "fire": 50}
    assert await a.hincr_many("rx:other", {}) == {}


# -- idempotency claims --------------------------------------------------------------------------


async def test_exactly_one_concurrent_claim_wins_and_others_see_its_value(
    open_registry_instance: RegistryOpener,
) -> None:
    a, b = await two_edges(open_registry_instance)
    results = await asyncio.gather(
        *(x.claim("cmid:u1:c7", f"edge-{i}".encode(), 30.0) for i, x in enumerate([a, b] * 10))
    )
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    first = f"edge-{winners[0]}".encode()
    assert all(r == first for r in results if r is not None)
    # The stored value is the answer later callers get, until it is replaced ...
    await b.set_claim("cmid:u1:c7", b"ack:42", 30.0)
    assert await a.claim("cmid:u1:c7", b"other", 30.0) == b"ack:42"
    assert await a.claim("cmid:u1:c8", b"x", 30.0) is None  # keys are independent
    # ... or released, after which the next claim wins again.
    await a.release_claim("cmid:u1:c7")
    await a.release_claim("never-claimed")
    assert await b.claim("cmid:u1:c7", b"retry", 30.0) is None
    assert await a.claim("cmid:u1:c7", b"late", 30.0) == b"retry"


async def test_claim_lapses_after_its_ttl(open_registry_instance: RegistryOpener) -> None:
    a, b = await two_edges(open_registry_instance)
    assert await a.claim("k", b"first", 0.4) is None
    assert await b.claim("k", b"second", 0.4) == b"first"  # a failed claim does not extend it
    await asyncio.sleep(0.5)
    assert await b.claim("k", b"third", 0.4) is None
    await a.set_claim("k", b"fourth", 0.3)  # set_claim restarts the TTL
    await asyncio.sleep(0.2)
    assert await b.claim("k", b"x", 5.0) == b"fourth"
    await asyncio.sleep(0.2)
    assert await b.claim("k", b"fifth", 5.0) is None


# -- live contributions --------------------------------------------------------------------------


async def test_contributions_sum_over_edges_and_heal_when_an_edge_stops(
    open_registry_instance: RegistryOpener,
) -> None:
    a, b = await two_edges(open_registry_instance)
    assert await a.sum_contributions("viewers:s") == 0
    await a.set_contribution("viewers:s", "edge-a", 10, ttl_s=30.0)
    await b.set_contribution("viewers:s", "edge-b", 5, ttl_s=0.5)  # edge B will "crash"
    await b.set_contribution("viewers:other", "edge-b", 7, ttl_s=30.0)
    assert await b.sum_contributions("viewers:s") == 15
    await a.set_contribution("viewers:s", "edge-a", 12, ttl_s=30.0)  # an edge's value is replaced
    assert await a.sum_contributions("viewers:s") == 17
    await asyncio.sleep(0.3)
    await b.set_contribution("viewers:s", "edge-b", 6, ttl_s=0.5)  # renewed in time: still counted
    await asyncio.sleep(0.3)
    assert await a.sum_contributions("viewers:s") == 18
    await asyncio.sleep(0.35)  # B stopped renewing: its share lapses, A's stays
    assert await a.sum_contributions("viewers:s") == 12
    assert await b.sum_contributions("viewers:other") == 7
    await a.set_contribution("viewers:s", "edge-a", 0, ttl_s=30.0)  # a clean shutdown
    assert await b.sum_contributions("viewers:s") == 0


# -- node-id leases ------------------------------------------------------------------------------


async def test_concurrent_leases_get_distinct_smallest_ids(open_registry_instance: RegistryOpener) -> None:
    edges = [await open_registry_instance() for _ in range(8)]
    nodes = await asyncio.gather(*(r.lease_node(f"edge-{i}", 1024, 30.0) for i, r in enumerate(edges)))
    assert sorted(nodes) == list(range(8))
    # Leasing again while holding a lease returns the same id (a retried call never takes two).
    assert await edges[3].lease_node("edge-3", 1024, 30.0) == nodes[3]
    assert await edges[0].lease_node("edge-new", 1024, 30.0) == 8
    # A released id is the smallest free one again; only its holder can release it.
    await edges[1].release_node("edge-2", nodes[1])
    assert await edges[1].renew_node("edge-1", nodes[1], 30.0) is True
    await edges[1].release_node("edge-1", nodes[1])
    assert await edges[1].renew_node("edge-1", nodes[1], 30.0) is False
    assert await edges[5].lease_node("edge-late", 1024, 30.0) == nodes[1]


async def test_lapsed_lease_is_reused_and_cannot_be_renewed(open_registry_instance: RegistryOpener) -> None:
    a, b = await two_edges(open_registry_instance)
    assert await a.lease_node("dying", 4, ttl_s=0.4) == 0
    assert await b.lease_node("live", 4, ttl_s=30.0) == 1
    await asyncio.sleep(0.2)
    assert await a.renew_node("dying", 0, ttl_s=0.4) is True  # renewed in time
    await asyncio.sleep(0.3)
    assert await b.lease_node("other", 4, ttl_s=30.0) == 2  # 0 is still held
    await asyncio.sleep(0.3)  # "dying" stopped renewing 0.6 s ago
    assert await b.lease_node("newcomer", 4, ttl_s=30.0) == 0
    assert await a.renew_node("dying", 0, ttl_s=0.4) is False  # lost for good
    assert await b.renew_node("live", 1, ttl_s=30.0) is True
    assert await a.lease_node("fourth", 4, ttl_s=30.0) == 3
    with pytest.raises(BackendError):
        await a.lease_node("fifth", 4, ttl_s=30.0)
