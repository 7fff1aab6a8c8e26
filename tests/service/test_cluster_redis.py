"""Three `livechat serve` edges on one real Redis (broker and registry), each with its own data dir.

A comment posted on edge A reaches viewers on B and C in order, exactly once each; a moderator
delete on B removes it everywhere (ticks, snapshots and history on every edge); a ban issued on C
disconnects the banned user's connection on A.
"""

from __future__ import annotations

import asyncio

from tests.service.conftest import StartServe
from tests.service.serve_process import Client, ServeProcess

STREAM = "cluster-s1"


async def joined(edge: ServeProcess, user: str | None, role: str = "viewer", **claims: object) -> Client:
    token = edge.token(user, role, **claims) if user is not None else None
    client = await Client.connect(edge.url(token))
    await client.join(STREAM)
    return client


async def history_ids(client: Client) -> list[int]:
    page = await client.call("history", stream=STREAM, limit=100)
    assert page["t"] == "history", page
    return [c["id"] for c in page["items"]]


async def test_post_delete_and_ban_across_three_edges(start_edge: StartServe) -> None:
    a, b, c = (start_edge(name, node) for name, node in (("a", 1), ("b", 2), ("c", 3)))
    alice = await joined(a, "alice", "moderator")  # the poster (a moderator: 100 comments/min)
    dave = await joined(a, "dave")  # gets banned from edge C
    watcher_a = await joined(a, None)
    bob = await joined(b, "bob")
    mod_b = await joined(b, "mia", "moderator")
    carol = await joined(c, "carol")
    mod_c = await joined(c, "max", "moderator")
    viewers = [alice, watcher_a, bob, mod_b, carol, mod_c]

    texts = [f"comment {i} from A" for i in range(12)]
    for i, text in enumerate(texts):  # pipelined: no wait for acks in between
        await alice.send(op="post", stream=STREAM, text=text, cmid=f"a{i}", rid=100 + i)
    acks = [await alice.reply("ack") for _ in texts]
    ids = [ack["id"] for ack in acks]
    assert [ack["cmid"] for ack in acks] == [f"a{i}" for i in range(12)]
    assert ids == sorted(ids)

    for viewer in viewers:
        got = await viewer.comments(len(texts))
        assert [e["x"] for e in got] == texts
        assert [e["id"] for e in got] == ids
    await asyncio.gather(*(v.drain(0.4) for v in viewers))
    for viewer in viewers:
        assert [e["id"] for e in viewer.comment_events()] == ids, "each comment exactly once"

    # History is per edge (SQLite): A stored the comments; B and C serve what they stored.
    assert await history_ids(alice) == list(reversed(ids))

    # A moderator on B deletes the 4th comment: a tombstone reaches every edge's viewers ...
    victim = ids[3]
    ok = await mod_b.call("delete", stream=STREAM, id=victim)
    assert ok == {"t": "ok", "rid": ok["rid"], "op": "delete"}
    for viewer in viewers:
        await viewer.event("del", id=victim)
    # ... and it is gone from history and snapshots on every edge, A's SQLite included.
    for viewer in (alice, bob, carol):
        assert victim not in await history_ids(viewer)
    assert await history_ids(alice) == [i for i in reversed(ids) if i != victim]
    for edge in (a, b, c):
        late = await joined(edge, None)
        snap_ids = [e["id"] for e in (await late.join(STREAM))["recent"]]
        assert victim not in snap_ids and snap_ids == [i for i in ids if i != victim]
        await late.close()
    # A reconnect on A from before the delete learns that it went.
    again = await Client.connect(a.url())
    snap = await again.join(STREAM, last_id=ids[5])
    assert snap["gap"] is False and victim in snap["del"]
    assert [e["id"] for e in snap["missed"]] == ids[6:]
    await again.close()

    # A moderator on C bans dave, whose only connection is on A: notice, then disconnect.
    ok = await mod_c.call("ban", stream=STREAM, user="dave", reason="spam")
    assert ok["t"] == "ok" and ok["op"] == "ban"
    assert await dave.closed() == 1008
    notices = [m for m in dave.replies if m.get("t") == "notice"]
    assert notices and notices[-1]["code"] == "banned" and notices[-1]["s"] == STREAM
    for viewer in viewers:
        await viewer.event("ban", u="dave", until=None)
    # A reconnect on A is let in (anyone may read) but may not post there.
    dave2 = await joined(a, "dave")
    refused = await dave2.call("post", stream=STREAM, text="back", cmid="d1")
    assert refused["t"] == "err" and refused["code"] == "banned"

    # Bystanders kept working throughout: one more comment reaches everyone once.
    ack = await alice.call("post", stream=STREAM, text="still here", cmid="a-last")
    for viewer in viewers:
        got = await viewer.comments(len(texts) + 1)
        assert got[-1]["id"] == ack["id"] and got[-1]["x"] == "still here"
    for client in (*viewers, dave2):
        await client.close()


async def test_decisions_from_other_edges_survive_a_restart(start_edge: StartServe) -> None:
    """Each edge keeps its own SQLite: what B decided is written to A's too, so A restarted
    still enforces the ban, the room modes and the pin, and still hides the deleted comment."""
    a, b = start_edge("a", 1), start_edge("b", 2)
    poster = await joined(a, "pat", "moderator")
    mod_b = await joined(b, "mia", "moderator")
    acks = [await poster.call("post", stream=STREAM, text=f"r{i}", cmid=f"r{i}") for i in range(3)]
    await mod_b.comments(3)
    for op, fields in (
        ("ban", {"user": "dave"}),
        ("slow", {"seconds": 30}),
        ("pin", {"id": acks[1]["id"]}),
        ("delete", {"id": acks[0]["id"]}),
    ):
        assert (await mod_b.call(op, stream=STREAM, **fields))["t"] == "ok"
    await poster.event("del", id=acks[0]["id"])  # the last decision reached A
    await poster.close()
    assert a.stop() == 0
    a.start()
    dave = await joined(a, "dave")
    snap = dave.replies[-1]
    assert snap["modes"]["slow"] == 30 and snap["pin"]["id"] == acks[1]["id"]
    assert [c["id"] for c in snap["recent"]] == [acks[1]["id"], acks[2]["id"]]
    assert (await dave.call("post", stream=STREAM, text="hi", cmid="d"))["code"] == "banned"
    assert [c["id"] for c in (await dave.call("history", stream=STREAM))["items"]] == [
        acks[2]["id"],
        acks[1]["id"],
    ]
    for client in (dave, mod_b):
        await client.close()


async def test_counts_and_reactions_are_cluster_wide(start_edge: StartServe) -> None:
    a, b = start_edge("a", 1), start_edge("b", 2)
    poster = await joined(a, "pat", "moderator")
    viewer_b = await joined(b, "vic")
    viewer_b2 = await joined(b, "val")
    await poster.call("react", stream=STREAM, emoji="heart")
    await viewer_b.call("react", stream=STREAM, emoji="heart")
    await viewer_b.call("react", stream=STREAM, emoji="wow")
    acks = [await poster.call("post", stream=STREAM, text=f"n{i}", cmid=f"n{i}") for i in range(3)]
    # Every edge shows cluster totals: 3 viewers on two edges, 3 comments, 2 hearts + 1 wow.
    for client in (poster, viewer_b):
        await client.slot(STREAM, "n", lambda n: n == {"c": 3, "v": 3, "u": 3}, timeout=5)
        await client.slot(STREAM, "rx", lambda rx: rx["heart"] == 2 and rx["wow"] == 1, timeout=5)
    # A delete lowers the count once, not once per edge.
    mod_b = await joined(b, "mo", "moderator")
    await mod_b.call("delete", stream=STREAM, id=acks[0]["id"])
    for client in (poster, viewer_b, viewer_b2):
        await client.slot(STREAM, "n", lambda n: n == {"c": 2, "v": 4, "u": 4}, timeout=5)
    await asyncio.sleep(0.6)  # several flushes later it has not drifted
    for client in (poster, viewer_b):
        await client.drain(0.1)
        assert client.state[STREAM]["n"] == {"c": 2, "v": 4, "u": 4}
    for client in (poster, viewer_b, viewer_b2, mod_b):
        await client.close()


async def test_edges_without_a_node_id_get_distinct_ones(start_edge: StartServe) -> None:
    """Comment ids are ms | node (10 bits) | sequence (12 bits): two edges on one node could mint
    the same id in the same millisecond, so cluster edges draw theirs from the shared registry."""
    a, b = start_edge("a", None), start_edge("b", None)
    nodes = set()
    for i, edge in enumerate((a, b)):
        poster = await joined(edge, f"p{i}", "moderator")
        ack = await poster.call("post", stream=STREAM, text="hi", cmid=f"c{i}")
        nodes.add((ack["id"] >> 12) & 1023)
        await poster.close()
    assert len(nodes) == 2
