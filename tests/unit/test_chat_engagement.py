"""Reactions, likes, counts and tiers in state slots; two edges kept in step through the broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from chat_harness import Harness
from livechat.backends import open_broker, open_registry
from livechat.ports import Broker, Registry


async def test_reactions_likes_and_counts_fold_into_state(make_harness: Any) -> None:
    h: Harness = await make_harness()
    a = h.connect("a")
    b = h.connect("b")
    anon = h.connect()
    for conn in (a, b, anon):
        await h.join(conn)
    ack = await h.post(a, "like me")
    for emoji in ("heart", "heart", "laugh"):
        await h.send(b, "react", stream="s1", emoji=emoji)
    await h.send(b, "like", stream="s1", id=ack["id"], rid=2)
    assert h.outbox.take(b)[-1] == {"t": "ok", "op": "like", "rid": 2}
    await h.send(a, "like", stream="s1", id=ack["id"])
    await h.send(a, "like", stream="s1", id=ack["id"])  # idempotent
    await h.send(b, "like", stream="s1", id=123)
    assert h.outbox.take(b)[-1]["code"] == "not_found"
    await h.chat.housekeeping()
    assert h.outbox.state_value("s1", "rx") == {"heart": 2, "laugh": 1, "wow": 0, "sad": 0, "angry": 0}
    assert h.outbox.state_value("s1", "likes") == {ack["id"]: 2}
    assert h.outbox.state_value("s1", "n") == {"c": 1, "v": 3}
    await h.send(a, "unlike", stream="s1", id=ack["id"])
    h.chat.on_close(anon)
    await h.chat.housekeeping()
    assert h.outbox.state_value("s1", "likes") == {ack["id"]: 1}
    assert h.outbox.state_value("s1", "n") == {"c": 1, "v": 2}
    snap = await h.join(h.connect("late"))
    assert snap["likes"] == {ack["id"]: 1} and snap["rx"]["heart"] == 2 and snap["n"]["v"] == 3


async def test_reaction_rate_limit(make_harness: Any) -> None:
    h: Harness = await make_harness()
    conn = h.connect("a")
    await h.join(conn)
    for _ in range(300):
        await h.send(conn, "react", stream="s1", emoji="wow")
    assert not any(m["t"] == "err" for m in h.outbox.take(conn))
    await h.send(conn, "react", stream="s1", emoji="wow")
    assert h.outbox.take(conn)[-1]["code"] == "rate_limited"


async def test_idle_rooms_are_dropped(make_harness: Any) -> None:
    h: Harness = await make_harness()
    conn = h.connect("a")
    await h.join(conn)
    h.chat.on_close(conn)
    for _ in range(3):
        h.clock.advance(40)
        await h.chat.housekeeping()
    assert h.chat.context.rooms.get("s1") is None
    assert h.chat.stats()["rooms"] == 0


@pytest.fixture
async def cluster(make_harness: Any) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two edges on the same storage, an in-process broker bus and a shared registry."""
    name = uuid.uuid4().hex[:10]
    brokers: list[Broker] = [await open_broker(f"memory://{name}", edge_id=e) for e in ("A", "B")]
    registry: Registry = await open_registry(f"memory://{name}")
    edges = []
    for broker in brokers:
        h: Harness = await make_harness(broker=broker, registry=registry)
        broker.set_handler(h.chat.remote)
        edges.append(h)
    yield edges[0], edges[1]
    for broker in brokers:
        await broker.aclose()
    await registry.aclose()


async def settle(*edges: Harness) -> None:
    for h in edges:
        await h.chat.context.background.drain()
    for _ in range(5):
        await asyncio.sleep(0)


async def test_comments_and_moderation_cross_edges(cluster: tuple[Harness, Harness]) -> None:
    a, b = cluster
    author = a.connect("u1")
    mod = a.connect("m", role="moderator")
    watcher = b.connect("w")
    await a.join(author)
    await a.join(mod)
    await b.join(watcher)
    ack = await a.post(author, "from edge A")
    await settle(a, b)
    assert [e["id"] for e in b.outbox.events("s1")] == [ack["id"]]
    # Edge B's snapshot memory has it too.
    assert [c["id"] for c in (await b.join(b.connect("late")))["recent"]] == [ack["id"]]
    await a.send(mod, "slow", stream="s1", seconds=60)
    await a.send(mod, "timeout", stream="s1", user="w", seconds=300)
    await a.send(mod, "delete", stream="s1", id=ack["id"])
    await settle(a, b)
    kinds = [e["k"] for e in b.outbox.events("s1", priority=True)]
    assert kinds == ["modes", "ban", "del"]
    # Edge B enforces what edge A decided.
    assert (await b.post(watcher, "hi"))["code"] == "timed_out"
    assert (await b.join(b.connect("late2")))["recent"] == []
    assert (await b.join(b.connect("late3")))["modes"]["slow"] == 60


async def test_sampled_out_mentions_reach_other_edges(cluster: tuple[Harness, Harness]) -> None:
    a, b = cluster
    author = a.connect("u1")
    bob = b.connect("bob")
    await a.join(author)
    await b.join(bob)
    sampler = a.chat.context.sampler
    start = a.clock.monotonic()
    for i in range(9):
        sampler.observe("s1", start + i * 0.25, 20_000)
    a.clock.advance(2.25)
    assert sampler.tier("s1", a.clock.monotonic()).level == 3
    acks = [await a.post(author, f"@bob look {i}") for i in range(10)]
    await settle(a, b)
    direct = {e["id"] for m in b.outbox.messages(bob) if m["t"] == "ev" for e in m["e"]}
    ticked = {e["id"] for e in b.outbox.events("s1")}
    assert {ack["id"] for ack in acks} == direct | ticked


async def test_engagement_totals_are_cluster_wide(cluster: tuple[Harness, Harness]) -> None:
    a, b = cluster
    ca = a.connect("x")
    cb = b.connect("y")
    await a.join(ca)
    await b.join(cb)
    for _ in range(3):
        await a.send(ca, "react", stream="s1", emoji="heart")
    for _ in range(2):
        await b.send(cb, "react", stream="s1", emoji="heart")
    await a.chat.housekeeping()
    await b.chat.housekeeping()
    assert b.outbox.state_value("s1", "rx")["heart"] == 5
    assert b.outbox.state_value("s1", "n")["v"] == 2
    ack = await a.post(ca, "count me")
    await settle(a, b)
    await a.chat.housekeeping()
    await b.chat.housekeeping()
    assert a.outbox.state_value("s1", "n")["c"] == 1
    assert ack["t"] == "ack"


async def test_broker_gap_tells_clients_to_resync(cluster: tuple[Harness, Harness]) -> None:
    _, b = cluster
    conn = b.connect("w")
    await b.join(conn)
    b.chat.remote.on_gap(["s1", "unknown"])
    await settle(b)
    assert b.outbox.events("s1", priority=True) == [{"k": "gap"}]


async def test_viewers_count_people_not_connections(make_harness: Any) -> None:
    """Three tabs of one signed-in user are one viewer; anonymous connections count one each."""
    h: Harness = await make_harness()
    tabs = [h.connect("same-user") for _ in range(3)]
    anons = [h.connect(), h.connect()]
    for conn in (*tabs, *anons):
        await h.join(conn)
    await h.chat.housekeeping()
    assert h.outbox.state_value("s1", "n")["v"] == 3
    for conn in tabs[:2]:
        h.chat.on_close(conn)
    await h.chat.housekeeping()
    assert h.outbox.state_value("s1", "n")["v"] == 3, "the user still has a tab open"
    h.chat.on_close(tabs[2])
    await h.chat.housekeeping()
    assert h.outbox.state_value("s1", "n")["v"] == 2
