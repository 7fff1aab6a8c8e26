"""App mode: events reach Python through ``drain()`` (woken by the eventfd on the asyncio loop),
and Python steers connections with subscribe / publish / set_state / send / send_many / close,
as ``livechat/_edge.pyi`` documents.
"""

from __future__ import annotations

import asyncio
import os
import select
from collections.abc import Callable

import msgpack
import pytest
from edge_clients import AppEvents, open_peer, unpack
from edge_wire import ETHERNET_MSS, OP_CLOSE, Closed, RawClient, client_frame, close_payload
from livechat._edge import (
    CLOSE_GOING_AWAY,
    CLOSE_SLOW_CONSUMER,
    EVENT_CLOSE,
    EVENT_MESSAGE,
    EVENT_OPEN,
    Edge,
)

StartApp = Callable[..., tuple[Edge, AppEvents]]


def pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


async def connect(edge: Edge, events: AppEvents, path: str = "/", **kw: object) -> tuple[RawClient, int]:
    client = await RawClient.connect(edge.port, path, **kw)  # type: ignore[arg-type]
    conn, _ = await events.expect_open()
    return client, conn


async def read_ticks(client: RawClient, wanted: dict[str, int]) -> dict[str, list[dict[str, object]]]:
    """Tick frames by stream until each stream of ``wanted`` has carried that many events."""
    ticks: dict[str, list[dict[str, object]]] = {s: [] for s in wanted}
    counts = dict.fromkeys(wanted, 0)
    while counts != wanted:
        tick = unpack((await client.recv_message()).data)
        ticks[tick["s"]].append(tick)
        counts[tick["s"]] += len(tick["e"])
    return ticks


async def test_open_message_close_events(start_app: StartApp) -> None:
    edge, events = start_app()
    client = await RawClient.connect(edge.port, "/room/7?since=42", extra=[("Authorization", "Bearer abc")])
    conn, (path, peer, auth) = await events.expect_open()
    local_port = client.sock.getsockname()[1]
    assert (path, peer, auth) == ("/room/7?since=42", f"127.0.0.1:{local_port}", "Bearer abc")

    # X-Forwarded-For from a peer that is not a trusted proxy (none are, by default) is ignored.
    spoofed = await RawClient.connect(edge.port, extra=[("X-Forwarded-For", "203.0.113.9")])
    conn2, (path2, peer2, auth2) = await events.expect_open()
    assert (path2, peer2, auth2) == ("/", f"127.0.0.1:{spoofed.sock.getsockname()[1]}", None)
    assert conn2 != conn
    proxy_edge, proxy_events = start_app(trusted_proxies=("127.0.0.1/32",))
    await RawClient.connect(proxy_edge.port, extra=[("X-Forwarded-For", "1.1.1.1, 203.0.113.9")])
    _, (_, peer3, _) = await proxy_events.expect_open()
    assert peer3 == "203.0.113.9"

    sent: list[bytes | str] = [pack({"op": "post", "text": "hi"}), "plain text", "", pack(None), b"\x90"]
    for m in sent:
        client.send_message(m)
    for m in sent:
        got = await events.expect_message(conn)
        assert type(got) is type(m) and got == m

    client.send(client_frame(OP_CLOSE, close_payload(1000, "bye")))
    await client.expect_close(1000)
    assert await events.expect_close(conn) == (1000, "bye")
    spoofed.abort()
    code, _reason = await events.expect_close(conn2)
    assert code == 1006, "a connection lost without a close frame reports 1006"
    events.assert_idle()


async def test_events_of_many_connections_keep_per_connection_order(start_app: StartApp) -> None:
    edge, events = start_app()
    clients = await asyncio.gather(*[RawClient.connect(edge.port) for _ in range(100)])
    for i, c in enumerate(clients):
        for j in range(5):
            c.send_message(pack([i, j]))
    seen: dict[int, list[object]] = {}
    opened: set[int] = set()
    while sum(len(v) for v in seen.values()) < 500:
        kind, conn, data = await events.next()
        if kind == EVENT_OPEN:
            opened.add(conn)
            continue
        assert kind == EVENT_MESSAGE and conn in opened, "OPEN comes before a connection's messages"
        seen.setdefault(conn, []).append(msgpack.unpackb(data))
    assert len(seen) == 100
    for msgs in seen.values():
        i = msgs[0][0]  # type: ignore[index]
        assert msgs == [[i, j] for j in range(5)]
    assert events.wakeups < 600, "events arrive in batches, not one wake-up each"
    for c in clients:
        c.abort()


async def test_malformed_binary_gets_an_error_and_the_connection_stays(start_app: StartApp) -> None:
    edge, events = start_app()
    client, conn = await connect(edge, events)
    for bad in (b"\xc1", b"\x92\x01", b"\x01\x02", b"\xd9\x05ab", b""):
        client.send_message(bad)
        error = unpack((await client.recv_message()).data)
        # docs/protocol.md §6
        assert error["t"] == "err" and error["code"] == "bad_msgpack" and error["msg"], error
    client.send_message("text is never msgpack-checked \xff")
    client.send_message(pack({"ok": True}))
    assert await events.expect_message(conn) == "text is never msgpack-checked \xff"
    assert await events.expect_message(conn) == pack({"ok": True})
    events.assert_idle()
    await client.close()


async def test_msgpack_check_can_be_turned_off(start_app: StartApp) -> None:
    edge, events = start_app(validate_msgpack=False)
    client, conn = await connect(edge, events)
    client.send_message(b"\xc1not msgpack")
    assert await events.expect_message(conn) == b"\xc1not msgpack"
    await client.close()


async def test_publish_reaches_subscribers_in_order(start_app: StartApp) -> None:
    edge, events = start_app()
    a, ca = await connect(edge, events)
    b, cb = await connect(edge, events)
    edge.subscribe(ca, "s1")
    edge.subscribe(cb, "s1")
    edge.subscribe(cb, "s2")
    await asyncio.sleep(0.05)
    assert edge.stream_subscribers("s1") == 2 and edge.stream_subscribers("s2") == 1
    published = [pack({"n": i, "pad": "x" * (i % 7) * 50}) for i in range(200)]
    for p in published:
        edge.publish("s1", p)
        if len(p) % 3 == 0:
            await asyncio.sleep(0)
    edge.publish("s2", pack("only b"))

    for c, wanted in ((a, {"s1": 200}), (b, {"s1": 200, "s2": 1})):
        ticks = await read_ticks(c, wanted)
        s1 = ticks["s1"]
        assert [t["q"] for t in s1] == list(range(1, len(s1) + 1))
        assert [e for t in s1 for e in t["e"]] == [msgpack.unpackb(p) for p in published]  # type: ignore[attr-defined]
    assert [(t["q"], t["e"]) for t in ticks["s2"]] == [(1, ["only b"])]

    edge.unsubscribe(cb, "s1")
    await asyncio.sleep(0.05)
    edge.publish("s1", pack("after unsubscribe"))
    assert unpack((await a.recv_message()).data)["e"] == ["after unsubscribe"]
    with pytest.raises(asyncio.TimeoutError):
        await b.recv_message(timeout=0.3)
    assert edge.stream_subscribers("s1") == 1
    await b.close()
    await events.expect_close(cb)
    assert edge.stream_subscribers("s2") == 0
    await a.close()


async def test_state_is_conflated_and_priority_goes_in_its_own_frame(start_app: StartApp) -> None:
    """Within one tick: set_state twice -> only the last value; a priority event travels in a
    frame of its own marked "p", ahead of the normal frame of the same tick."""
    # A 300 ms tick, so every call below lands inside one tick window.
    edge, events = start_app(tick_min_ms=300, tick_max_ms=300)
    client, conn = await connect(edge, events)
    edge.subscribe(conn, "live")
    await asyncio.sleep(0.05)
    edge.publish("live", pack("first"))  # the first tick of a stream goes at once
    first = unpack((await client.recv_message()).data)
    assert first == {"t": "tick", "s": "live", "q": 1, "e": ["first"]}

    edge.set_state("live", "viewers", pack(10))
    edge.publish("live", pack("normal"))
    edge.set_state("live", "viewers", pack(11))
    edge.set_state("live", "mode", pack({"slow": 5}))
    edge.publish("live", pack("urgent"), priority=True)
    priority = unpack((await client.recv_message()).data)
    normal = unpack((await client.recv_message()).data)
    assert priority == {"t": "tick", "s": "live", "q": 2, "e": ["urgent"], "p": True}
    assert normal == {
        "t": "tick",
        "s": "live",
        "q": 3,
        "e": ["normal"],
        "st": {"viewers": 11, "mode": {"slow": 5}},
    }

    edge.set_state("live", "viewers", pack(12))
    only_state = unpack((await client.recv_message()).data)
    assert only_state == {"t": "tick", "s": "live", "q": 4, "e": [], "st": {"viewers": 12}}
    edge.publish("live", pack("no state change"))
    assert "st" not in unpack((await client.recv_message()).data), "state goes once, when it changed"
    await client.close()


async def test_send_send_many_and_close(start_app: StartApp) -> None:
    edge, events = start_app()
    a, ca = await connect(edge, events)
    b, cb = await connect(edge, events)
    ws = await open_peer("websockets-deflate", edge.port)
    cw, _ = await events.expect_open()
    edge.send(ca, pack({"t": "ack", "id": 1}))
    edge.send(ca, b"text reply", binary=False)
    m1, m2 = await a.recv_message(), await a.recv_message()
    assert (m1.binary, unpack(m1.data)) == (True, {"t": "ack", "id": 1})
    assert (m2.binary, m2.data) == (False, b"text reply")

    big = pack({"t": "snapshot", "comments": ["hello chat"] * 200})
    edge.send_many([ca, cb, cw], big)
    for c in (a, b):
        assert (await c.recv_message()).data == big
    assert await ws.recv() == big  # compressed for the deflate client, inflated by websockets

    edge.send(cb, pack("last words"))
    edge.close(cb, 4000, "moderator closed you")
    assert unpack((await b.recv_message()).data) == "last words", "queued data goes before the close"
    assert await b.expect_close(4000) == "moderator closed you"
    assert await events.expect_close(cb) == (4000, "moderator closed you")
    for bad_code in (999, 1004, 1005, 1006, 1015, 2000, 5000):
        with pytest.raises(ValueError):
            edge.close(ca, bad_code)
    await a.close()
    await ws.close()


async def test_send_batch_keeps_per_connection_order_and_counts_the_open(start_app: StartApp) -> None:
    edge, events = start_app()
    a, ca = await connect(edge, events)
    ws = await open_peer("websockets-deflate", edge.port)
    cw, _ = await events.expect_open()
    big = pack({"t": "history", "items": ["comment text"] * 300})
    items = [(c, pack({"t": "ack", "n": n})) for n in range(50) for c in (ca, cw)]
    items.append((cw, big))
    items.append((ca ^ 1, pack("nobody")))  # not a live connection: skipped, not counted
    assert edge.send_batch(items) == 101
    assert [unpack((await a.recv_message()).data)["n"] for _ in range(50)] == list(range(50))
    assert [unpack(await ws.recv())["n"] for _ in range(50)] == list(range(50))
    assert await ws.recv() == big  # over deflate_min_bytes: compressed for the deflate client
    await a.close()
    await ws.close()


def test_publish_and_state_refuse_what_is_not_msgpack(start_edge: Callable[..., Edge]) -> None:
    edge = start_edge(mode="app")
    for bad in (b"", b"\xc1", b"\x01\x02", b"\x92\x01"):
        with pytest.raises(ValueError):
            edge.publish("s", bad)
        with pytest.raises(ValueError):
            edge.set_state("s", "k", bad)
    assert edge.stats()["events_published"] == 0


async def test_methods_report_whether_the_connection_is_open(start_app: StartApp) -> None:
    """_edge.pyi: "Every method taking a connection id returns False (and does nothing) when that
    connection is already gone"; send_many returns "how many were still open"."""
    edge, events = start_app()
    client, conn = await connect(edge, events)
    gone, gone_conn = await connect(edge, events)
    await gone.close()
    await events.expect_close(gone_conn)
    assert edge.subscribe(conn, "s") is True
    assert edge.unsubscribe(conn, "s") is True
    assert edge.send(conn, pack(1)) is True
    assert edge.send_many([conn, gone_conn], pack(2)) == 1
    for method, args in [
        (edge.subscribe, (gone_conn, "s")),
        (edge.unsubscribe, (gone_conn, "s")),
        (edge.send, (gone_conn, pack(1))),
        (edge.close, (gone_conn,)),
    ]:
        assert method(*args) is False, method
    assert edge.close(conn) is True
    await client.expect_close(1000)


def test_drain_takes_at_most_max_events_and_the_fd_stays_readable(start_edge: Callable[..., Edge]) -> None:
    edge = start_edge(mode="app")

    async def open_and_send() -> RawClient:
        c = await RawClient.connect(edge.port)
        for i in range(5):
            c.send_message(pack(i))
        await asyncio.sleep(0.2)
        return c

    loop = asyncio.new_event_loop()
    try:
        client = loop.run_until_complete(open_and_send())
        fd = edge.fileno()
        assert select.select([fd], [], [], 1.0)[0] == [fd]
        first = edge.drain(2)
        assert [k for k, _, _ in first] == [EVENT_OPEN, EVENT_MESSAGE]
        assert select.select([fd], [], [], 0)[0] == [fd], "events left: still readable"
        rest = edge.drain()
        assert [msgpack.unpackb(d) for k, _, d in rest if k == EVENT_MESSAGE] == [1, 2, 3, 4]
        assert first[1][2] == pack(0)
        assert select.select([fd], [], [], 0.05)[0] == [], "all taken: not readable"
        assert edge.drain() == []
        client.abort()
        assert select.select([fd], [], [], 2.0)[0] == [fd]
        assert [k for k, _, _ in edge.drain()] == [EVENT_CLOSE]
    finally:
        loop.close()


async def test_send_queue_over_the_hard_cap_closes_4008(start_app: StartApp) -> None:
    """A client that stops reading while direct sends pile up passes send_queue_hard_bytes and is
    closed with 4008; a reading client beside it gets everything."""
    edge, events = start_app(send_queue_soft_bytes=16 * 1024, send_queue_hard_bytes=64 * 1024)
    stuck, cs = await connect(edge, events, rcvbuf=4096, maxseg=ETHERNET_MSS)
    reader, cr = await connect(edge, events)
    chunk = pack({"t": "snapshot", "blob": os.urandom(8 * 1024)})
    # 400 KB: past the ~130 KiB the kernel buffers for `stuck` plus the 64 KiB cap.
    for _ in range(50):
        edge.send(cs, chunk)
        edge.send(cr, chunk)
        assert (await reader.recv_message()).data == chunk
    assert await events.expect_close(cs) == (CLOSE_SLOW_CONSUMER, "slow consumer: send queue over its cap")
    assert edge.stats()["slow_closes"] == 1
    reader.send_message(pack("still here"))
    assert await events.expect_message(cr) == pack("still here")
    stuck.abort()
    await reader.close()


async def test_graceful_stop_flushes_then_closes_1001(start_app: StartApp) -> None:
    edge, events = start_app()
    port = edge.port
    clients = []
    for _ in range(4):
        c, conn = await connect(edge, events)
        edge.subscribe(conn, "room")
        clients.append(c)
    ws = await open_peer("websockets", edge.port)
    cw, _ = await events.expect_open()
    edge.subscribe(cw, "room")
    await asyncio.sleep(0.05)
    for i in range(50):
        edge.publish("room", pack(i))
    events.detach()
    stopping = asyncio.create_task(asyncio.to_thread(edge.stop, 3000))
    for c in clients:
        got: list[object] = []
        with pytest.raises(Closed) as closed:
            while True:
                got.extend(unpack((await c.recv_message()).data)["e"])
        assert closed.value.code == CLOSE_GOING_AWAY
        assert got == list(range(50)), "everything published before stop() arrives first"
    got = []
    with pytest.raises(Closed) as closed:
        while True:
            got.extend(unpack(await ws.recv())["e"])
    assert closed.value.code == CLOSE_GOING_AWAY and got == list(range(50))
    await stopping
    with pytest.raises(OSError):
        await RawClient.connect(port)
