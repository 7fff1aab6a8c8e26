"""Three `livechat serve` edges on the real engines behave as one system.

Kafka sequences every stream (edges follow the streams they have open), Cassandra keeps history
(written by `livechat worker persist`), PostgreSQL keeps bans, modes and roles, Redis keeps the
shared limits, the cmid index and node leases. Each test uses its own streams and users on one
cluster per module (starting Cassandra-backed edges costs seconds).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from livechat.ids import MAX_NODE, NODE_BITS, SEQUENCE_BITS

from tests.cluster.cluster_edges import PARTITIONS, Cluster, eventually, joined
from tests.cluster.test_notify_worker import Webhook, read_topic
from tests.service.serve_process import Client, ServeProcess


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    asyncio.run(c.create())
    try:
        for name in ("a", "b", "c"):
            c.edge(name)
        c.persist_worker()
        yield c
    finally:
        asyncio.run(c.close())


@pytest.fixture
def edges(cluster: Cluster) -> tuple[ServeProcess, ServeProcess, ServeProcess]:
    a, b, c = cluster.edges[:3]
    return a, b, c


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    await Client.close_all()


def node_of(comment_id: int) -> int:
    return (comment_id >> SEQUENCE_BITS) & MAX_NODE


async def history_ids(client: Client, stream: str) -> list[int]:
    page = await client.call("history", stream=stream, limit=100)
    assert page["t"] == "history", page
    return [c["id"] for c in page["items"]]


async def test_comments_reach_every_edge_once_in_one_order(edges: tuple[ServeProcess, ...]) -> None:
    stream = "order"
    posters = [await joined(edge, stream, f"poster-{i}", "moderator") for i, edge in enumerate(edges)]
    viewers = [await joined(edge, stream, None) for edge in edges for _ in range(2)]
    # Posts from the three edges at once: the log orders them; every viewer sees that order.
    for round_ in range(5):
        for i, poster in enumerate(posters):
            await poster.send(op="post", stream=stream, text=f"{i}/{round_}", cmid=f"{i}-{round_}")
    acks = [await poster.reply("ack") for poster in posters for _ in range(5)]
    assert all(not ack.get("dup") for ack in acks)
    expected = {ack["id"] for ack in acks}
    for viewer in viewers:
        await viewer.comments(15, timeout=10)
    await asyncio.gather(*(viewer.drain(0.5) for viewer in viewers))
    orders = [[e["id"] for e in viewer.comment_events()] for viewer in viewers]
    for order in orders:
        assert sorted(order) == sorted(expected), "every comment exactly once"
    assert all(order == orders[0] for order in orders), "one order on every edge"


async def test_a_ban_on_one_edge_holds_on_every_edge_even_one_that_opens_the_stream_later(
    cluster: Cluster, edges: tuple[ServeProcess, ...]
) -> None:
    stream = "bans"
    a, b, c = edges
    mod_c = await joined(c, stream, "mod-c", "moderator")
    eve_b = await joined(b, stream, "eve")
    ok = await mod_c.call("timeout", stream=stream, user="eve", seconds=600)
    assert ok["t"] == "ok", ok
    # B had the stream open: the ban reached it through the log.
    notice = await eve_b.reply("notice", timeout=10)
    assert notice["code"] == "timed_out", notice
    refused = await eve_b.call("post", stream=stream, text="let me", cmid="e1")
    assert refused["t"] == "err" and refused["code"] == "timed_out", refused
    # A had not opened the stream: it reads the ban from PostgreSQL when it does.
    eve_a = await joined(a, stream, "eve")
    refused = await eve_a.call("post", stream=stream, text="and here?", cmid="e2")
    assert refused["t"] == "err" and refused["code"] == "timed_out", refused
    # So does an edge that starts after the ban.
    d = cluster.edge("d")
    eve_d = await joined(d, stream, "eve")
    refused = await eve_d.call("post", stream=stream, text="a new edge?", cmid="e3")
    assert refused["t"] == "err" and refused["code"] == "timed_out", refused


async def test_comment_budget_is_shared_by_all_edges(edges: tuple[ServeProcess, ...]) -> None:
    stream = "budget"
    clients = [await joined(edge, stream, "greedy") for edge in edges]
    replies = []
    for i in range(15):  # a viewer may post 10 comments a minute, across every edge together
        replies.append(await clients[i % 3].call("post", stream=stream, text=f"spam {i}", cmid=f"g{i}"))
    acked = [r for r in replies if r["t"] == "ack"]
    refused = [r for r in replies if r["t"] == "err"]
    assert len(acked) == 10, replies
    assert {r["code"] for r in refused} == {"rate_limited"} and all(r["retry_ms"] > 0 for r in refused)


async def test_the_same_cmid_on_another_edge_returns_the_first_ack(edges: tuple[ServeProcess, ...]) -> None:
    stream = "retry"
    a, b, _ = edges
    on_a = await joined(a, stream, "retrier")
    on_b = await joined(b, stream, "retrier")
    first = await on_a.call("post", stream=stream, text="once", cmid="same")
    again = await on_b.call("post", stream=stream, text="once", cmid="same")
    assert first["t"] == "ack" and not first.get("dup")
    assert again["t"] == "ack" and again["dup"] is True and again["id"] == first["id"]
    watcher = await joined(a, stream, None)
    await watcher.drain(1.0)
    snap = await watcher.join(stream)
    assert [e["id"] for e in snap["recent"]].count(first["id"]) == 1


async def test_history_is_identical_on_every_edge(edges: tuple[ServeProcess, ...]) -> None:
    stream = "history"
    posters = [await joined(edge, stream, f"writer-{i}", "moderator") for i, edge in enumerate(edges)]
    ids = []
    for i in range(12):
        ack = await posters[i % 3].call("post", stream=stream, text=f"h{i}", cmid=f"h{i}")
        ids.append(ack["id"])
    deleted = ids[4]
    assert (await posters[1].call("delete", stream=stream, id=deleted))["t"] == "ok"
    expected = sorted((i for i in ids if i != deleted), reverse=True)

    async def all_equal() -> bool:
        pages = [await history_ids(poster, stream) for poster in posters]
        return all(page == expected for page in pages)

    await eventually(all_equal, what="history on every edge = the cluster's comments")


async def test_no_two_live_edges_share_a_node_id(edges: tuple[ServeProcess, ...]) -> None:
    stream = "nodes"
    nodes = []
    for i, edge in enumerate(edges):
        client = await joined(edge, stream, f"noder-{i}", "moderator")
        ack = await client.call("post", stream=stream, text="which node?", cmid="n")
        nodes.append(node_of(ack["id"]))
    assert len(set(nodes)) == len(edges), nodes
    assert NODE_BITS >= 2


async def test_recovery_on_another_edge_is_exact(edges: tuple[ServeProcess, ...]) -> None:
    stream = "recover"
    a, b, c = edges
    poster = await joined(a, stream, "teller", "moderator")
    viewer = await joined(b, stream, None)
    ids = [(await poster.call("post", stream=stream, text=f"r{i}", cmid=f"r{i}"))["id"] for i in range(5)]
    seen = await viewer.comments(5, timeout=10)
    last = seen[-1]["id"]
    await viewer.close()
    missed = [(await poster.call("post", stream=stream, text=f"m{i}", cmid=f"m{i}"))["id"] for i in range(7)]
    # Back on C, which had not opened the stream: exactly what was missed, no gap.
    back = await Client.connect(c.url())
    snap = await back.join(stream, last_id=last)
    assert snap["gap"] is False, snap
    assert [e["id"] for e in snap["missed"]] == missed
    assert ids[-1] == last


async def test_a_sampled_viewer_recovers_every_comment(cluster: Cluster, tmp_path: Path) -> None:
    """With sampling on (every comment past the first tier's rate is sampled out of the tick),
    recovery still returns every comment missed, not only those the ticks carried."""
    stream = "sampled"
    edge = cluster.edge("sampling", "--set", "chat.sampling.tiers=[[1.0, 0.5]]")
    poster = await joined(edge, stream, "busy", "broadcaster")
    viewer = await joined(edge, stream, None)
    first = await poster.call("post", stream=stream, text="start", cmid="s0")
    await viewer.comments(1, timeout=10)
    await viewer.close()
    ids = []
    for i in range(40):
        ids.append((await poster.call("post", stream=stream, text=f"s{i}", cmid=f"s{i + 1}"))["id"])

    # An ack means the log has the comment; the edge's memory has it once its follower read it
    # back. The author gets each of their comments (tick or, sampled out, `ev`): once all 40 are
    # back, the edge holds them all, and recovery must list every one.
    def author_has_all() -> bool:
        seen = {e.get("id") for e in poster.events + poster.direct if e.get("k") == "c"}
        return set(ids) <= seen

    await poster.wait(author_has_all, timeout=10, what="the author's 40 comments")
    back = await Client.connect(edge.url())
    snap = await back.join(stream, last_id=first["id"])
    assert snap["gap"] is False
    assert [e["id"] for e in snap["missed"]] == ids


async def test_viewer_count_counts_users_and_heals_when_an_edge_dies(cluster: Cluster) -> None:
    """Live viewers are people across every edge (two tabs of one user count once); an edge killed
    with -9 stops counting once its contribution lapses (engagement.VIEWERS_TTL_S = 10 s)."""
    stream = "heads"
    a = cluster.edges[0]
    doomed = cluster.edge("doomed")
    watcher = await joined(a, stream, "watcher")
    tabs = [await joined(doomed, stream, "fan") for _ in range(2)]
    others = [await joined(doomed, stream, f"fan-{i}") for i in range(2)]
    counts = await watcher.slot(stream, "n", lambda n: n["v"] == 4, timeout=10)
    assert counts["u"] >= 4
    doomed.stop(signal.SIGKILL)
    await asyncio.gather(*(client.close() for client in (*tabs, *others)), return_exceptions=True)
    healed = await watcher.slot(stream, "n", lambda n: n["v"] == 1, timeout=20)
    assert healed["u"] >= 4, "unique viewers ever do not drop"


async def test_mentions_of_a_real_user_reach_the_notifications_topic_and_the_webhook(
    cluster: Cluster, edges: tuple[ServeProcess, ...]
) -> None:
    """An edge records every signed-in user it sees (the MetaStore's users table); the notify
    worker resolves @mentions through it: a real user is notified, an unknown handle is not."""
    stream = "mentions"
    a, b, _ = edges
    hook = Webhook(fail_first=1)
    try:
        cluster.notify_worker(hook.url)
        await joined(b, stream, "mona", name="Mona")  # mona is a real user: she signed in
        talker = await joined(a, stream, "tess", "moderator")
        ack = await talker.call("post", stream=stream, text="hi @mona and @nobody", cmid="m1")
        assert ack["t"] == "ack"
        records = await read_topic(cluster.notifications_topic, PARTITIONS, want=1, timeout=30, settle=2)
        found = [json.loads(r.value) for r in records]
        assert [(n["user"], n["kind"], n["from"]) for n in found] == [("mona", "mention", "tess")]
        assert int(found[0]["comment_id"]) == ack["id"]
        posted = await eventually(lambda: asyncio.sleep(0, hook.received()), timeout=20, what="webhook POST")
        assert [n["user"] for n in posted] == ["mona"]
    finally:
        hook.close()
