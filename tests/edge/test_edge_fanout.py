"""Fanout mode with real clients: every message any client sends reaches every client, inside tick
frames ``{"t": "tick", "s": "fanout", "q": seq, "e": [...]}``, in one order shared by all.
"""

from __future__ import annotations

import asyncio
import os
import random

from edge_clients import KINDS, Peer, StartEdge, open_peer, unpack
from edge_wire import RawClient

TICK_KEYS = {"t", "s", "q", "e"}


def message(sender: int, i: int, rng: random.Random) -> bytes | str:
    """Sender 0 speaks text, the others binary; sizes around the 256-byte deflate threshold."""
    body = f"{sender}:{i}:" + "m" * rng.choice([0, 10, 200, 400, 3000])
    return body if sender == 0 else body.encode() + os.urandom(rng.choice([0, 16, 300]))


def sender_of(event: bytes | str) -> int:
    head = event if isinstance(event, str) else event[:4].decode("latin-1")
    return int(head.split(":")[0])


async def collect(peer: Peer, events_wanted: int) -> list[dict[str, object]]:
    ticks: list[dict[str, object]] = []
    count = 0
    while count < events_wanted:
        tick = unpack(await peer.recv())
        assert set(tick) == TICK_KEYS, tick.keys()
        assert tick["t"] == "tick" and tick["s"] == "fanout"
        assert isinstance(tick["q"], int) and isinstance(tick["e"], list) and tick["e"]
        ticks.append(tick)
        count += len(tick["e"])
    assert count == events_wanted
    return ticks


async def test_every_client_gets_every_message_in_one_order(start_edge: StartEdge) -> None:
    edge = start_edge(mode="fanout", deflate_min_bytes=256)
    peers = [await open_peer(k, edge.port) for k in KINDS * 2]
    per_sender = 150
    senders = peers[:3]
    rng = random.Random(5)
    sent = [[message(s, i, rng) for i in range(per_sender)] for s in range(len(senders))]
    total = per_sender * len(senders)

    async def send(s: int) -> None:
        for i, m in enumerate(sent[s]):
            await senders[s].send(m)
            if i % 10 == 0:
                await asyncio.sleep(0.001)

    collectors = [asyncio.create_task(collect(p, total)) for p in peers]
    await asyncio.gather(*[send(s) for s in range(len(senders))])
    results = await asyncio.gather(*collectors)

    seqs = [[t["q"] for t in ticks] for ticks in results]
    events = [[e for t in ticks for e in t["e"]] for ticks in results]  # type: ignore[attr-defined]
    assert seqs[0] == list(range(1, len(seqs[0]) + 1)), "q counts every tick from 1, no gaps"
    assert all(s == seqs[0] for s in seqs), "every client saw the same ticks"
    assert all(e == events[0] for e in events), "every client saw the same events in the same order"
    for s in range(len(senders)):
        mine = [
            e for e in events[0] if (e if isinstance(e, str) else e.decode("latin-1")).startswith(f"{s}:")
        ]
        assert mine == sent[s], f"sender {s}: its messages, whole, in its order"
    assert len(seqs[0]) < total, "several messages shared a tick"
    stats = edge.stats()
    assert stats["events_published"] == total
    assert stats["deliveries"] == total * len(peers)
    for p in peers:
        await p.close()


async def test_late_joiner_gets_only_what_follows(start_edge: StartEdge) -> None:
    edge = start_edge(mode="fanout")
    early = await open_peer("websockets", edge.port)
    await early.send(b"before")
    first = unpack(await early.recv())
    assert (first["q"], first["e"]) == (1, [b"before"])
    late = await open_peer("picows", edge.port)
    await late.send("after")
    for peer in (early, late):
        tick = unpack(await peer.recv())
        assert (tick["q"], tick["e"]) == (2, ["after"])
    await late.close()
    await early.send(b"alone")
    assert unpack(await early.recv())["e"] == [b"alone"]
    assert edge.stream_subscribers("fanout") == 1
    await early.close()


async def test_one_compressed_frame_serves_every_deflate_client(start_edge: StartEdge) -> None:
    """Ticks of at least deflate_min_bytes go compressed to deflate clients (the same bytes for
    each: server_no_context_takeover) and plain to the others; both decode to the same tick."""
    edge = start_edge(mode="fanout", deflate_min_bytes=256)
    deflaters = [await RawClient.connect(edge.port, extensions="permessage-deflate") for _ in range(3)]
    plain = await RawClient.connect(edge.port)
    sender = await open_peer("websockets", edge.port)
    await sender.send(b"x" * 1000)
    got = [await c.recv_message() for c in [*deflaters, plain]]
    assert all(m.compressed for m in got[:3]) and not got[3].compressed
    assert all(m.data == got[3].data for m in got)
    assert unpack(got[3].data)["e"] == [b"x" * 1000]
    await sender.send(b"short")
    small = [await c.recv_message() for c in [*deflaters, plain]]
    assert not any(m.compressed for m in small), "under deflate_min_bytes: plain for everyone"
    assert edge.stats()["frames_built"] == 2
    for c in [*deflaters, plain]:
        await c.close()
    await sender.close()
