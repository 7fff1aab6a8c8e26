"""Broker contract (livechat.ports.broker), run against every broker backend.

"Nothing more arrives" is checked with a fence: after the expected events, another edge publishes
one more event on the same stream. A backend delivers each connection's events in the order the
service received them, so once the fence has arrived, anything that was going to arrive before it
has arrived too.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import pytest
from livechat.backends import open_broker, open_registry
from livechat.ports import BackendUnavailable, Broker, BrokerHandler, ClosedError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis_service import RedisServer, cluster_url, free_redis_ports, toxiproxy_api

BrokerOpener = Callable[[str], Awaitable[Broker]]

WAIT_S = 5.0


class Collector:
    """A BrokerHandler that records everything, in arrival order."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.controls: list[bytes] = []
        self.gaps: list[list[str]] = []
        self._changed = asyncio.Event()

    def on_message(self, stream: str, payload: bytes) -> None:
        self.messages.append((stream, payload))
        self._changed.set()

    def on_control(self, payload: bytes) -> None:
        self.controls.append(payload)
        self._changed.set()

    def on_gap(self, streams: Sequence[str]) -> None:
        self.gaps.append(sorted(streams))
        self._changed.set()

    async def until(self, done: object) -> None:
        """Wait until ``done()`` is true (a callable), failing after WAIT_S."""
        await asyncio.wait_for(self.until_forever(done), WAIT_S)

    async def until_forever(self, done: object) -> None:
        assert callable(done)
        while not done():
            self._changed.clear()
            await self._changed.wait()

    def payloads(self, stream: str) -> list[bytes]:
        return [p for s, p in self.messages if s == stream]


async def edge(open_edge: BrokerOpener, edge_id: str) -> tuple[Broker, Collector]:
    broker = await open_edge(edge_id)
    collector = Collector()
    broker.set_handler(collector)
    return broker, collector


def _check_handler_type(c: Collector) -> BrokerHandler:
    return c


async def test_events_reach_other_edge_in_publish_order(open_edge: BrokerOpener) -> None:
    a, _ = await edge(open_edge, "a")
    b, got_b = await edge(open_edge, "b")
    assert await b.subscribe("s1") is True
    sent = [f"comment {i}".encode() for i in range(1000)]
    for payload in sent[:500]:
        await a.publish("s1", payload)
    # Concurrent publishes from one edge keep call order too.
    await asyncio.gather(*(a.publish("s1", p) for p in sent[500:]))
    await got_b.until(lambda: len(got_b.messages) >= len(sent))
    assert got_b.payloads("s1") == sent
    assert {s for s, _ in got_b.messages} == {"s1"}


async def test_publish_many_keeps_order_within_and_across_batches(open_edge: BrokerOpener) -> None:
    a, _ = await edge(open_edge, "a")
    b, got_b = await edge(open_edge, "b")
    await b.subscribe("s1")
    await b.subscribe("s2")
    sent = [("s1" if i % 3 else "s2", f"event {i}".encode()) for i in range(900)]
    batches = [sent[i : i + 100] for i in range(0, len(sent), 100)]
    await a.publish_many(batches[0])
    await a.publish_many([])
    # Concurrent batches keep call order, like concurrent single publishes.
    await asyncio.gather(*(a.publish_many(batch) for batch in batches[1:]))
    await got_b.until(lambda: len(got_b.messages) >= len(sent))
    # Per stream, publish order; across streams nothing is promised (different cluster shards).
    for stream in ("s1", "s2"):
        assert got_b.payloads(stream) == [p for s, p in sent if s == stream]
    assert len(got_b.messages) == len(sent)
    await a.aclose()
    with pytest.raises(ClosedError):
        await a.publish_many(sent[:1])


async def test_each_subscribed_edge_gets_each_event_exactly_once(open_edge: BrokerOpener) -> None:
    a, got_a = await edge(open_edge, "a")
    b, got_b = await edge(open_edge, "b")
    c, got_c = await edge(open_edge, "c")
    # b holds two references (two local viewers): still one delivery per event.
    assert await b.subscribe("s") is True
    assert await b.subscribe("s") is False
    assert b.subscription_count("s") == 2
    await c.subscribe("s")
    await a.subscribe("s")
    sent = [bytes([i % 256]) * (i % 7 + 1) for i in range(300)]
    for p in sent:
        await a.publish("s", p)
    await c.publish("s", b"fence")
    await got_b.until(lambda: b"fence" in got_b.payloads("s"))
    await got_a.until(lambda: b"fence" in got_a.payloads("s"))
    assert got_b.payloads("s") == [*sent, b"fence"]
    assert got_c.payloads("s") == sent  # no echo of its own fence
    # No echo: a never receives what it published itself, only c's fence.
    assert got_a.payloads("s") == [b"fence"]


async def test_only_subscribed_streams_are_delivered(open_edge: BrokerOpener) -> None:
    a, _ = await edge(open_edge, "a")
    b, got_b = await edge(open_edge, "b")
    await b.subscribe("wanted")
    await a.publish("other", b"x")
    await a.publish("wanted", b"y")
    await got_b.until(lambda: len(got_b.messages) >= 1)
    await a.publish("wanted", b"fence")
    await got_b.until(lambda: b"fence" in got_b.payloads("wanted"))
    assert got_b.messages == [("wanted", b"y"), ("wanted", b"fence")]


async def test_order_is_kept_per_stream_when_streams_interleave(open_edge: BrokerOpener) -> None:
    a, _ = await edge(open_edge, "a")
    b, got_b = await edge(open_edge, "b")
    streams = [f"room-{i}" for i in range(5)]
    for s in streams:
        await b.subscribe(s)
    await asyncio.gather(*(a.publish(streams[i % 5], str(i).encode()) for i in range(500)))
    await got_b.until(lambda: len(got_b.messages) >= 500)
    for k, s in enumerate(streams):
        assert got_b.payloads(s) == [str(i).encode() for i in range(k, 500, 5)]


async def test_refcounted_subscription_stops_after_last_unsubscribe(open_edge: BrokerOpener) -> None:
    a, got_a = await edge(open_edge, "a")
    b, got_b = await edge(open_edge, "b")
    await a.subscribe("s")
    assert await b.subscribe("s") is True
    assert await b.subscribe("s") is False
    assert await b.unsubscribe("s") is False
    await a.publish("s", b"still subscribed")  # wait: a is subscribed too, no echo
    await got_b.until(lambda: len(got_b.messages) == 1)
    assert await b.unsubscribe("s") is True
    assert b.subscription_count("s") == 0
    assert await b.unsubscribe("s") is False  # not held: no-op
    await a.publish("s", b"after unsubscribe")
    # Fence through a third edge that b is not subscribed to: b must stay silent while c hears both.
    c, got_c = await edge(open_edge, "c")
    await c.subscribe("s")
    await a.publish("s", b"fence")
    await got_c.until(lambda: got_c.payloads("s") == [b"fence"])
    await b.subscribe("other")
    await a.publish("other", b"fence2")
    await got_b.until(lambda: got_b.payloads("other") == [b"fence2"])
    assert got_b.payloads("s") == [b"still subscribed"]
    assert got_a.messages == []


async def test_nothing_in_flight_is_delivered_after_unsubscribe_returns(open_edge: BrokerOpener) -> None:
    a, _ = await edge(open_edge, "a")
    b, got_b = await edge(open_edge, "b")
    await b.subscribe("s")
    await b.subscribe("fence")
    for i in range(200):
        await a.publish("s", str(i).encode())
    # No wait for delivery: some events are still queued/in the socket when b unsubscribes.
    await b.unsubscribe("s")
    seen_at_unsubscribe = len(got_b.messages)
    await a.publish("fence", b"fence")
    await got_b.until(lambda: ("fence", b"fence") in got_b.messages)
    assert got_b.messages[seen_at_unsubscribe:] == [("fence", b"fence")]


async def test_resubscribe_after_unsubscribe_delivers_again(open_edge: BrokerOpener) -> None:
    a, _ = await edge(open_edge, "a")
    b, got_b = await edge(open_edge, "b")
    for round_no in range(3):
        assert await b.subscribe("s") is True
        await a.publish("s", f"round {round_no}".encode())
        await got_b.until(lambda n=round_no: len(got_b.messages) == n + 1)
        assert await b.unsubscribe("s") is True
    assert got_b.payloads("s") == [b"round 0", b"round 1", b"round 2"]


async def test_control_messages_broadcast_and_targeted(open_edge: BrokerOpener) -> None:
    a, got_a = await edge(open_edge, "a")
    b, got_b = await edge(open_edge, "b")
    c, got_c = await edge(open_edge, "c")
    await a.publish_control(b"disconnect user 7")
    await a.publish_control(b"only for c", edge_id="c")
    await got_b.until(lambda: len(got_b.controls) == 1)
    await got_c.until(lambda: len(got_c.controls) == 2)
    # Fence from b to a: a gets it, and nothing of its own before it.
    await b.publish_control(b"fence", edge_id="a")
    await got_a.until(lambda: len(got_a.controls) == 1)
    await c.publish_control(b"fence", edge_id="b")
    await got_b.until(lambda: len(got_b.controls) == 2)
    assert got_a.controls == [b"fence"]
    assert got_b.controls == [b"disconnect user 7", b"fence"]
    assert got_c.controls == [b"disconnect user 7", b"only for c"]
    assert got_a.messages == got_b.messages == got_c.messages == []


async def test_handler_is_registered_once_and_required(open_edge: BrokerOpener) -> None:
    a = await open_edge("a")
    with pytest.raises(RuntimeError):
        await a.subscribe("s")
    a.set_handler(Collector())
    with pytest.raises(RuntimeError):
        a.set_handler(Collector())
    assert a.edge_id == "a"


async def test_failing_handler_does_not_stop_delivery(open_edge: BrokerOpener) -> None:
    class Flaky(Collector):
        def on_message(self, stream: str, payload: bytes) -> None:
            super().on_message(stream, payload)
            if payload == b"bad":
                raise ValueError("handler bug")

    a, _ = await edge(open_edge, "a")
    b = await open_edge("b")
    got_b = Flaky()
    b.set_handler(got_b)
    await b.subscribe("s")
    for p in (b"ok1", b"bad", b"ok2"):
        await a.publish("s", p)
    await got_b.until(lambda: len(got_b.messages) == 3)
    assert got_b.payloads("s") == [b"ok1", b"bad", b"ok2"]


async def test_binary_payloads_arrive_byte_exact(open_edge: BrokerOpener) -> None:
    a, _ = await edge(open_edge, "a")
    b, got_b = await edge(open_edge, "b")
    await b.subscribe("bin")
    sent = [b"", b"\r\n", bytes(range(256)), b"\x00" * 70_000, "ünïcode ✓".encode()]
    for p in sent:
        await a.publish("bin", p)
    await got_b.until(lambda: len(got_b.messages) == len(sent))
    assert got_b.payloads("bin") == sent


async def test_closed_broker_refuses_calls(open_edge: BrokerOpener) -> None:
    a, _ = await edge(open_edge, "a")
    await a.subscribe("s")
    await a.aclose()
    await a.aclose()  # idempotent
    with pytest.raises(ClosedError):
        await a.publish("s", b"x")
    with pytest.raises(ClosedError):
        await a.subscribe("s")


# -- Redis only: what a lost connection looks like (memory has no connection to lose) ---------


async def test_redis_resubscribes_and_reports_gap_after_connection_loss(redis_server: RedisServer) -> None:
    a = await open_broker(redis_server.url, edge_id="gap-a", prefix="gap:")
    b = await open_broker(redis_server.url, edge_id="gap-b", prefix="gap:")
    got_a, got_b = Collector(), Collector()
    a.set_handler(got_a)
    b.set_handler(got_b)
    try:
        await b.subscribe("s1")
        await b.subscribe("s2")
        await b.subscribe("s2")
        killed = redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
        assert int(killed) >= 2  # both edges' subscribe connections
        await got_b.until(lambda: len(got_b.gaps) == 1)
        assert got_b.gaps == [["s1", "s2"]]
        assert b.subscription_count("s2") == 2
        await a.publish("s2", b"after reconnect")
        await got_b.until(lambda: len(got_b.messages) == 1)
        assert got_b.messages == [("s2", b"after reconnect")]
        assert got_a.gaps == []  # a held no stream subscriptions: nothing to resync
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_raises_unavailable_then_recovers(
    redis_server: RedisServer, tmp_path: pathlib.Path
) -> None:
    server = RedisServer(free_redis_ports(exclude=redis_server.port)[-1], tmp_path)
    server.start()
    a = await open_broker(server.url, edge_id="down-a")
    b = await open_broker(server.url, edge_id="down-b")
    got_b = Collector()
    b.set_handler(got_b)
    try:
        await b.subscribe("s")
        server.stop()
        with pytest.raises(BackendUnavailable):
            await a.publish("s", b"lost")
        with pytest.raises(BackendUnavailable):
            await b.subscribe("t")
        assert b.subscription_count("t") == 0
        server.start()
        await got_b.until(lambda: got_b.gaps == [["s"]])
        await a.publish("s", b"back")
        await got_b.until(lambda: len(got_b.messages) == 1)
        assert got_b.messages == [("s", b"back")]
    finally:
        await a.aclose()
        await b.aclose()
        server.stop()


async def test_redis_black_hole_surfaces_within_two_seconds_then_heals_with_a_gap(
    redis_server: RedisServer,
) -> None:
    """Replies stop coming (a minute of latency: no EOF, no reset): publish and registry calls fail
    within ~2 s, not after redis-py's default retries; the silent subscribe connection is noticed
    (its PING goes unanswered) and, once the network heals, resubscribed with a gap report."""
    from tests.cluster_services import Toxiproxy

    toxiproxy = Toxiproxy(toxiproxy_api())
    name = f"lc-redis-{uuid.uuid4().hex[:10]}"
    listen = toxiproxy.proxy(name, "127.0.0.1:0", f"127.0.0.1:{redis_server.port}")["listen"]
    url, prefix = f"redis://{listen}", f"bh{uuid.uuid4().hex[:8]}:"
    a = await open_broker(url, edge_id="bh-a", prefix=prefix)
    b = await open_broker(url, edge_id="bh-b", prefix=prefix)
    registry = await open_registry(url, prefix=prefix)
    got_b = Collector()
    a.set_handler(Collector())
    b.set_handler(got_b)
    try:
        await b.subscribe("s")
        assert await registry.allow("k", 5, 60.0) is True
        toxiproxy.add_toxic(name, "latency", "downstream", {"latency": 60_000})
        for call in (lambda: a.publish("s", b"lost"), lambda: registry.allow("k", 5, 60.0)):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                await call()
            assert 0.5 < time.monotonic() - started < 2.0
        await asyncio.sleep(2.5)  # b's PING goes unanswered: its subscriptions count as lost
        toxiproxy.remove_toxic(name, "latency_downstream")
        await asyncio.wait_for(got_b.until_forever(lambda: got_b.gaps == [["s"]]), 15.0)
        await a.publish("s", b"back")
        await got_b.until(lambda: got_b.messages == [("s", b"back")])
        assert await registry.allow("k", 5, 60.0) is True
    finally:
        await a.aclose()
        await b.aclose()
        await registry.aclose()
        toxiproxy.delete_proxy(name)


# -- Redis Cluster only: channels on every shard, a lost shard connection -----------------------


@pytest.fixture
def cluster() -> str:
    return cluster_url()


async def shard_channels(url: str, pattern: str) -> dict[str, set[bytes]]:
    """Every master's name -> the shard channels matching ``pattern`` it has subscribers for."""
    rc = RedisCluster.from_url(url.replace("redis+cluster://", "redis://"))
    try:
        await rc.initialize()
        found = {}
        for node in rc.get_primaries():
            reply = await rc.execute_command("PUBSUB", "SHARDCHANNELS", pattern, target_nodes=node)
            found[node.name] = set(reply)
        return found
    finally:
        await rc.aclose()


async def subscriber_ids(url: str, name: str) -> dict[str, list[int]]:
    """Every master's name -> ids of the connections called ``name`` (CLIENT SETNAME)."""
    rc = RedisCluster.from_url(url.replace("redis+cluster://", "redis://"))
    try:
        await rc.initialize()
        found = {}
        for node in rc.get_primaries():
            clients = await rc.execute_command("CLIENT LIST", target_nodes=node)
            found[node.name] = [int(c["id"]) for c in clients if c["name"] == name]
        return found
    finally:
        await rc.aclose()


async def test_cluster_channels_live_on_every_master_one_connection_each(cluster: str) -> None:
    prefix, edge_b = f"{uuid.uuid4().hex[:10]}:", f"b-{uuid.uuid4().hex[:8]}"
    a = await open_broker(cluster, edge_id="a", prefix=prefix)
    b = await open_broker(cluster, edge_id=edge_b, prefix=prefix)
    got_b = Collector()
    a.set_handler(Collector())
    b.set_handler(got_b)
    try:
        streams = [f"room-{i}" for i in range(30)]
        for s in streams:
            await b.subscribe(s)
        placed = await shard_channels(cluster, f"{prefix}s:*")
        assert len(placed) == 3 and all(placed.values()), placed  # every master carries some
        assert set().union(*placed.values()) == {f"{prefix}s:{s}".encode() for s in streams}
        assert sum(len(c) for c in placed.values()) == len(streams)  # each on exactly one master
        # One subscribe connection per master for all of b's channels (control ones included).
        connections = await subscriber_ids(cluster, f"livechat-sub:{edge_b}")
        assert [len(ids) for ids in connections.values()] == [1] * 3
        sent = [(streams[i % 30], f"e{i}".encode()) for i in range(3000)]
        for start in range(0, len(sent), 250):
            await a.publish_many(sent[start : start + 250])
        await got_b.until(lambda: len(got_b.messages) >= len(sent))
        for s in streams:
            assert got_b.payloads(s) == [p for t, p in sent if t == s]
        await a.publish_control(b"to b", edge_id=edge_b)
        await got_b.until(lambda: got_b.controls == [b"to b"])
    finally:
        await a.aclose()
        await b.aclose()


async def test_cluster_lost_shard_connection_reports_its_streams_only(cluster: str) -> None:
    prefix, edge_b = f"{uuid.uuid4().hex[:10]}:", f"b-{uuid.uuid4().hex[:8]}"
    a = await open_broker(cluster, edge_id="a", prefix=prefix)
    b = await open_broker(cluster, edge_id=edge_b, prefix=prefix)
    got_b = Collector()
    a.set_handler(Collector())
    b.set_handler(got_b)
    try:
        streams = [f"room-{i}" for i in range(12)]
        for s in streams:
            await b.subscribe(s)
        placed = await shard_channels(cluster, f"{prefix}s:*")
        victim = next(name for name, channels in placed.items() if channels)
        expected = sorted(c.decode().removeprefix(f"{prefix}s:") for c in placed[victim])
        ids = (await subscriber_ids(cluster, f"livechat-sub:{edge_b}"))[victim]
        assert len(ids) == 1
        host, port = victim.rsplit(":", 1)
        killer = Redis(host=host, port=int(port))
        try:
            assert await killer.execute_command("CLIENT KILL", "ID", ids[0]) == 1
        finally:
            await killer.aclose()
        await got_b.until(lambda: sorted(s for gap in got_b.gaps for s in gap) == expected)
        assert len(got_b.gaps) == 1
        for s in streams:  # every stream delivers again, the resubscribed ones included
            await a.publish(s, f"after {s}".encode())
        await got_b.until(lambda: len(got_b.messages) == len(streams))
        assert sorted(got_b.messages) == sorted((s, f"after {s}".encode()) for s in streams)
    finally:
        await a.aclose()
        await b.aclose()
