"""Durable engagement totals (issue 12): a pruned room reloads them, a Registry is seeded once however
many edges open the stream, and a failing MetaStore costs the counts of one batch, never a flush."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from chat_harness import Harness
from livechat.backends import open_registry
from livechat.config import RoomConfig
from livechat.ports.errors import BackendUnavailable
from livechat.ports.meta import EngagementTotals, MetaStore
from livechat.services.background import Background
from livechat.services.engagement_store import WRITE_ATTEMPTS, EngagementWriter


async def engage(h: Harness) -> tuple[int, int]:
    """Two comments, three reactions, two likes on the first; every viewer leaves."""
    a, b = h.connect("a"), h.connect("b")
    await h.join(a)
    await h.join(b)
    first = (await h.post(a, "one"))["id"]
    second = (await h.post(a, "two"))["id"]
    for emoji in ("heart", "heart", "wow"):
        await h.send(b, "react", stream="s1", emoji=emoji)
    for conn in (a, b):
        await h.send(conn, "like", stream="s1", id=first)
    h.chat.on_close(a)
    h.chat.on_close(b)
    return first, second


async def test_a_pruned_room_reloads_its_totals(make_harness: Any) -> None:
    """No Registry: the totals are the edge's own, and live on in the MetaStore (here not even
    written yet: pending deltas count in the reload)."""
    h: Harness = await make_harness()
    first, second = await engage(h)
    for _ in range(3):
        h.clock.advance(RoomConfig().idle_drop_s)
        await h.chat.housekeeping()
    assert h.chat.context.rooms.get("s1") is None
    snap = await h.join(h.connect("late"))
    assert snap["rx"]["heart"] == 2 and snap["rx"]["wow"] == 1
    assert (snap["n"]["c"], snap["likes"]) == (2, {first: 2})
    # Counting goes on from there, and a deleted old comment lowers the count.
    late = h.connect("late2")
    await h.join(late)
    await h.send(late, "like", stream="s1", id=second)
    await h.chat.housekeeping()
    assert h.outbox.state_value("s1", "likes") == {second: 1}
    writer = h.chat.context.engagement.writer
    assert writer is not None
    await writer.aclose()
    stored = await h.backends.meta.engagement("s1")
    assert stored == EngagementTotals({"heart": 2, "wow": 1}, 2, {first: 2, second: 1})


async def test_two_edges_opening_a_stream_seed_the_registry_once(make_harness: Any) -> None:
    meta = (await make_harness()).backends.meta
    await meta.add_engagement("s1", {"heart": 5}, 7, {})
    registry = await open_registry(f"memory://{uuid.uuid4().hex[:10]}")
    try:
        edges: list[Harness] = [await make_harness(registry=registry) for _ in range(3)]
        snaps = await asyncio.gather(*(snapshot(h, h.connect(f"v{i}")) for i, h in enumerate(edges)))
        for snap in snaps:
            assert (snap["rx"]["heart"], snap["n"]["c"]) == (5, 7), snap
        for h in edges:
            await h.chat.housekeeping()
            assert h.outbox.state_value("s1", "rx")["heart"] == 5
            assert h.outbox.state_value("s1", "n")["c"] == 7
    finally:
        await registry.aclose()


async def snapshot(h: Harness, conn: int) -> Any:
    """Join and wait for the snapshot (an edge waiting for another's seed answers after the
    harness's inline wait)."""
    await h.send(conn, "join", stream="s1")
    for _ in range(100):
        replies = [m for m in h.outbox.messages(conn) if m["t"] == "snapshot"]
        if replies:
            return replies[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no snapshot: {h.outbox.messages(conn)}")


class Unreachable:
    """A MetaStore whose engagement writes fail the way a PostgreSQL that went away fails."""

    def __init__(self) -> None:
        self.calls = 0

    async def add_engagement(
        self, stream_id: str, reactions: Mapping[str, int], comments: int, likes: Mapping[int, int]
    ) -> None:
        self.calls += 1
        raise BackendUnavailable("connection refused")

    async def engagement(self, stream_id: str, like_ids: Sequence[int] | None = None) -> EngagementTotals:
        return EngagementTotals({}, 0, {})


async def test_a_failing_store_costs_one_batch_and_never_a_flush() -> None:
    meta = Unreachable()
    background = Background()
    writer = EngagementWriter(cast_meta(meta), background)
    writer.react("s1", "heart")
    writer.comments("s1", 1)
    started = time.perf_counter()
    writer.write_pending()
    assert time.perf_counter() - started < 0.01  # handed to a task, not awaited
    await background.drain()
    assert (meta.calls, writer.dropped, background.failures) == (WRITE_ATTEMPTS, 1, 1)
    # Dropped, not kept forever: the next round has nothing of it.
    writer.write_pending()
    await background.drain()
    assert meta.calls == WRITE_ATTEMPTS


def cast_meta(store: object) -> MetaStore:
    """Only the two engagement methods are ever called by the writer."""
    return store  # type: ignore[return-value]
