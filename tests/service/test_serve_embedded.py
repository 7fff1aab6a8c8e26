"""`livechat serve` with no services: join, post, ack, fan-out to other viewers, history across a
restart, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
import websockets

from tests.service.serve_process import Client, ServeProcess


@pytest.fixture
def serve(tmp_path: Path):
    proc = ServeProcess(tmp_path / "data").start()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.stop()


async def test_post_reaches_author_and_viewers_then_survives_restart(serve: ServeProcess) -> None:
    alice = await Client.connect(serve.url(serve.token("alice")))
    bob = await Client.connect(serve.url(serve.token("bob")), deflate=False)
    anon = await Client.connect(serve.url())
    for c in (alice, bob, anon):
        await c.send(op="join", stream="s1", rid=1)
        snap = await c.reply("snapshot")
        assert snap["s"] == "s1" and snap["recent"] == []

    texts = ["hello 👋", "second", "naïve café"]
    acks = []
    for i, text in enumerate(texts):
        await alice.send(op="post", stream="s1", text=text, cmid=f"m{i}", rid=10 + i)
        acks.append(await alice.reply("ack"))
    assert [a["cmid"] for a in acks] == ["m0", "m1", "m2"]
    ids = [a["id"] for a in acks]
    assert ids == sorted(ids)

    for viewer in (bob, anon, alice):
        got = await viewer.comments(3)
        assert [c["x"] for c in got] == texts
        assert [c["id"] for c in got] == ids
        assert {c["u"] for c in got} == {"alice"}

    # An anonymous viewer may read but not write.
    await anon.send(op="post", stream="s1", text="hi", cmid="x", rid=99)
    err = await anon.reply("err")
    assert err["code"] == "read_only" and err["rid"] == 99
    for c in (alice, bob, anon):
        await c.close()

    assert serve.stop() == 0
    serve.start()
    carol = await Client.connect(serve.url(serve.token("carol")))
    await carol.send(op="history", stream="s1", rid=4)
    refused = await carol.reply("err")
    assert refused["code"] == "not_joined" and refused["rid"] == 4
    await carol.send(op="join", stream="s1", rid=6)
    snap = await carol.reply("snapshot")
    assert [c["x"] for c in snap["recent"]] == texts
    await carol.send(op="history", stream="s1", rid=5)
    page = await carol.reply("history")
    assert [c["x"] for c in page["items"]] == list(reversed(texts))
    assert page["more"] is False
    await carol.close()


async def test_idempotent_repost_returns_the_first_ack(serve: ServeProcess) -> None:
    alice = await Client.connect(serve.url(serve.token("alice")))
    await alice.send(op="join", stream="s2")
    await alice.reply("snapshot")
    await alice.send(op="post", stream="s2", text="once", cmid="same", rid=1)
    first = await alice.reply("ack")
    await alice.send(op="post", stream="s2", text="once", cmid="same", rid=2)
    second = await alice.reply("ack")
    assert second["id"] == first["id"] and second.get("dup") is True
    got = await alice.comments(1)
    await alice.send(op="ping", rid=3)
    await alice.reply("pong")
    assert len([c for c in alice.events if c.get("k") == "c"]) == len(got) == 1
    await alice.close()


async def test_sigterm_closes_clients_with_1001_and_keeps_acked_comments(serve: ServeProcess) -> None:
    """SIGTERM while posts are in flight: every client is closed with 1001, every acked comment is
    in history after a restart, and nothing is stored that its author was not told about."""
    # Moderators: 100 comments/min each, so no post is refused for its rate.
    alice = await Client.connect(serve.url(serve.token("alice", role="moderator")))
    await alice.send(op="join", stream="s3")
    await alice.reply("snapshot")
    for i in range(20):
        await alice.send(op="post", stream="s3", text=f"c{i}", cmid=f"c{i}", rid=i)
    acked = [(await alice.reply("ack"))["id"] for _ in range(20)]

    posters = [await Client.connect(serve.url(serve.token(f"p{n}", role="moderator"))) for n in range(3)]
    for poster in posters:
        await poster.send(op="join", stream="s3")
        await poster.reply("snapshot")

    async def pump(client: Client, name: str) -> None:
        for i in range(40):
            try:
                await client.send(op="post", stream="s3", text=f"{name}-{i}", cmid=f"{name}-{i}", rid=i)
            except websockets.ConnectionClosed:
                return
            await asyncio.sleep(0.002)

    async def acks_until_closed(client: Client) -> list[int]:
        ids = []
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                message = await client.recv(10)
                if message.get("t") == "ack":
                    ids.append(message["id"])
        return ids

    pumps = [asyncio.create_task(pump(p, f"p{n}")) for n, p in enumerate(posters)]
    readers = [asyncio.create_task(acks_until_closed(p)) for p in (alice, *posters)]
    await asyncio.sleep(0.05)  # the posters are mid-stream when the signal lands
    assert await asyncio.to_thread(serve.stop) == 0
    await asyncio.gather(*pumps)
    in_flight_acks = [i for ids in await asyncio.gather(*readers) for i in ids]
    for client in (alice, *posters):
        assert client.ws.close_code == 1001
    assert in_flight_acks, "no post was acknowledged between the first ack and SIGTERM"

    serve.start()
    bob = await Client.connect(serve.url(serve.token("bob")))
    await bob.send(op="join", stream="s3")
    await bob.reply("snapshot")
    stored: list[int] = []
    before = None
    while True:  # history pages hold at most 100 comments
        await bob.send(op="history", stream="s3", limit=100, **({"before": before} if before else {}))
        page = await bob.reply("history")
        stored += [c["id"] for c in page["items"]]
        if not page["more"]:
            break
        before = page["items"][-1]["id"]
    assert sorted(stored) == sorted(acked + in_flight_acks)
    await bob.close()
