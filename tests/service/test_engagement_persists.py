"""Issue 12: reactions, likes and the comment count survive a restart of `livechat serve`
(embedded: SQLite MetaStore, in-process registry) and a room dropped after 60 s without viewers,
seen by a joiner's snapshot through a real WebSocket client. Viewer counts are live only."""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from livechat.devsecret import SECRET_FILE

from tests.contract.redis_service import RedisServer
from tests.ports import free_port
from tests.service.conftest import StartServe
from tests.service.serve_process import SERVE_PORTS, Client, ServeProcess

STREAM = "eng"
FANS = ("fan-a", "fan-b", "fan-c")
#: The engagement writer's round (``livechat.services.engagement_store.WRITE_EVERY_S``) plus slack.
WRITTEN_S = 3.0
#: The room's idle drop (``chat.rooms.idle_drop_s``, shortened here) plus two prune rounds
#: (``PRUNE_EVERY_S``) plus slack.
IDLE_DROP_S = 2.0
PRUNED_S = IDLE_DROP_S + 2 * 5.0 + 5.0


def rooms_loaded(admin_port: int) -> int:
    """The edge's ``livechat_rooms`` gauge, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^livechat_rooms (\S+)$", text, re.MULTILINE)
    assert match is not None, "no livechat_rooms in /metrics"
    return int(float(match.group(1)))


def shown(snap: dict[str, Any]) -> tuple[dict[str, int], int, dict[int, int]]:
    """What a joiner sees of engagement: reactions, comment count, likes of the recent comments."""
    return snap["rx"], snap["n"]["c"], snap["likes"]


async def engage(proc: ServeProcess) -> tuple[list[int], tuple[dict[str, int], int, dict[int, int]]]:
    """The broadcaster posts 4 comments and deletes one; three fans react and like. Returns the
    comment ids and what a watcher's state slots show once the flushes are in."""
    owner = await proc.client("eng-owner", streams={STREAM: "broadcaster"})
    await owner.join(STREAM)
    ids = []
    for i in range(4):
        ack = await owner.call("post", stream=STREAM, text=f"comment {i}", cmid=f"c{i}")
        assert ack["t"] == "ack", ack
        ids.append(ack["id"])
    deleted = await owner.call("delete", stream=STREAM, id=ids.pop())
    assert deleted.get("t") == "ok", deleted
    watcher = await proc.client("eng-watcher")
    await watcher.join(STREAM)
    for n, name in enumerate(FANS):
        fan = await proc.client(name)
        await fan.join(STREAM)
        for emoji in ("heart", "wow")[: n + 1]:
            reply = await fan.call("react", stream=STREAM, emoji=emoji)
            assert reply.get("op") == "react", reply
        assert (await fan.call("like", stream=STREAM, id=ids[0]))["op"] == "like"
        if n == 0:
            assert (await fan.call("like", stream=STREAM, id=ids[1]))["op"] == "like"
    rx = await watcher.slot(STREAM, "rx", lambda v: v.get("heart") == 3 and v.get("wow") == 2)
    counts = await watcher.slot(STREAM, "n", lambda v: v.get("c") == 3)
    await watcher.slot(STREAM, "likes", lambda v: v.get(ids[0]) == 3)
    snap = await (await proc.client("eng-probe")).join(STREAM)
    assert shown(snap) == (rx, counts["c"], {ids[0]: 3, ids[1]: 1}), snap
    return ids, shown(snap)


async def test_engagement_survives_restarts_and_a_crash(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = ServeProcess(data).start()
    try:
        ids, before = await engage(proc)
        await Client.close_all()
    finally:
        proc.stop()  # SIGTERM: a drain, which writes what is pending
    proc.assert_no_tracebacks()

    proc = ServeProcess(data).start()
    try:
        joiner = await proc.client("eng-after")
        snap = await joiner.join(STREAM)
        assert [c["id"] for c in snap["recent"]] == ids
        assert shown(snap) == before
        assert snap["n"]["v"] == 1  # viewers are live only: just this joiner
        # Counting goes on from the stored totals: a new fan's like and reaction add to them.
        late = await proc.client("fan-late")
        await late.join(STREAM)
        assert (await late.call("like", stream=STREAM, id=ids[1]))["op"] == "like"
        assert (await late.call("react", stream=STREAM, emoji="heart"))["op"] == "react"
        await joiner.slot(STREAM, "likes", lambda v: v.get(ids[1]) == 2)
        await joiner.slot(STREAM, "rx", lambda v: v.get("heart") == 4)
        await asyncio.sleep(WRITTEN_S)  # one write round: a crash from now on loses nothing
        await Client.close_all()
    finally:
        proc.stop(signal.SIGKILL)

    proc = ServeProcess(data).start()
    try:
        snap = await (await proc.client("eng-after-crash")).join(STREAM)
        rx, comments, likes = shown(snap)
        assert (rx["heart"], rx["wow"], comments) == (4, 2, 3)
        assert likes == {ids[0]: 3, ids[1]: 2}
    finally:
        await Client.close_all()
        proc.stop()
    proc.assert_no_tracebacks()


async def test_engagement_survives_a_room_dropped_without_viewers(tmp_path: Path) -> None:
    """The room is pruned ``idle_drop_s`` after its last viewer left: the next joiner's snapshot
    still shows every total."""
    admin = free_port(SERVE_PORTS)
    idle = f"chat.rooms.idle_drop_s={IDLE_DROP_S}"
    proc = ServeProcess(tmp_path / "data", "--admin-port", str(admin), "--set", idle).start()
    try:
        ids, before = await engage(proc)
        assert await asyncio.to_thread(rooms_loaded, admin) == 1
        await Client.close_all()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PRUNED_S
        while await asyncio.to_thread(rooms_loaded, admin) != 0:
            assert loop.time() < deadline, f"the room was not dropped within {PRUNED_S} s"
            await asyncio.sleep(1.0)
        snap = await (await proc.client("eng-back")).join(STREAM)
        assert [c["id"] for c in snap["recent"]] == ids
        assert shown(snap) == before
        assert snap["n"]["v"] == 1
    finally:
        await Client.close_all()
        proc.stop()
    proc.assert_no_tracebacks()


async def test_cluster_edges_restarted_on_a_fresh_registry_seed_it_once(
    request: pytest.FixtureRequest, tmp_path: Path, start_serve: StartServe, redis_server: RedisServer
) -> None:
    """Two edges on one PostgreSQL meta store and one Redis: restarted on a fresh registry (a new
    key prefix: a Redis that lost its data), each shows every total once: the first edge to open
    the stream seeded the counters from PostgreSQL, the other did not add them again. (Each edge
    keeps its own SQLite history here, as in ``test_cluster_redis``.)"""
    from tests.contract.backend_postgres import fresh_url

    meta_url = fresh_url("meta", request, tmp_path)
    secret = secrets.token_urlsafe(32)

    def edge(name: str, node: int, prefix: str) -> ServeProcess:
        data = tmp_path / f"data-{name}"
        data.mkdir(parents=True, exist_ok=True)
        (data / SECRET_FILE).write_text(secret + "\n")
        return start_serve(
            name,
            *("--broker", redis_server.url, "--registry", redis_server.url, "--edge-id", name),
            *("--set", f"chat.node_id={node}", "--set", f"backends.redis_prefix={prefix}"),
            *("--set", f"backends.meta={meta_url}"),
        )

    first = f"t{uuid.uuid4().hex[:10]}:"
    a, b = edge("a", 1, first), edge("b", 2, first)
    try:
        # B's room is open before the posts: B tracks (and may like) the comments A broadcasts.
        watcher = await b.client("eng-watcher")
        await watcher.join(STREAM)
        owner = await a.client("eng-owner", streams={STREAM: "broadcaster"})
        await owner.join(STREAM)
        acks = [await owner.call("post", stream=STREAM, text=f"c{i}", cmid=f"c{i}") for i in range(2)]
        ids = [ack["id"] for ack in acks]
        await watcher.comments(2)
        for n, (proc, name) in enumerate(((a, "fa"), (b, "fb"), (b, "fc"))):
            fan = await proc.client(name)
            await fan.join(STREAM)
            assert (await fan.call("react", stream=STREAM, emoji="heart")).get("op") == "react"
            reply = await fan.call("like", stream=STREAM, id=ids[n % 2])
            assert reply.get("op") == "like", reply
        for client in (owner, watcher):
            await client.slot(STREAM, "rx", lambda v: v["heart"] == 3)
            await client.slot(STREAM, "n", lambda v: v["c"] == 2)
        await Client.close_all()
    finally:
        assert a.stop() == 0 and b.stop() == 0

    fresh = f"t{uuid.uuid4().hex[:10]}:"
    a, b = edge("a", 1, fresh), edge("b", 2, fresh)
    try:
        # B first: its own history has none of A's comments, so it opens the room with an empty
        # recent window and seeds the registry; A, opening next, must find every like seeded.
        joiners = [await b.client("after-b"), await a.client("after-a")]
        snaps = [await joiner.join(STREAM) for joiner in joiners]
        assert [c["id"] for c in snaps[1]["recent"]] == ids
        expected = {ids[0]: 2, ids[1]: 1}
        for snap in snaps:
            in_window = {c["id"]: expected[c["id"]] for c in snap["recent"]}
            assert shown(snap) == ({**snap["rx"], "heart": 3}, 2, in_window), snap
        await asyncio.sleep(1.0)  # several flushes later, read back from the registry: not doubled
        for joiner in joiners:
            await joiner.drain(0.3)
            assert joiner.state.get(STREAM, {}).get("rx", {"heart": 3})["heart"] == 3
            assert joiner.state.get(STREAM, {}).get("n", {"c": 2})["c"] == 2
        await Client.close_all()
    finally:
        # Before the test's database is dropped (its finalizer runs before start_serve's).
        assert a.stop() == 0 and b.stop() == 0
