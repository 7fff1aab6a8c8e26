"""Events from other edges, with per-edge storage (each edge its own SQLite, as `livechat serve`
runs with a Redis broker and registry): remote deletes and purges reach this edge's history, remote
bans reach this edge's connections, and shared counts are neither stale nor counted twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from chat_harness import Harness, RecordingOutbox, chat_config
from livechat.backends import Backends, open_backends
from livechat.config import BackendConfig
from livechat.ports.errors import BackendUnavailable
from livechat.services.chat import ChatService
from livechat.services.clock import ManualClock


@pytest.fixture
async def edges(tmp_path: Path, clock: ManualClock) -> AsyncIterator[tuple[Harness, Harness]]:
    """Edges A and B: one in-process broker bus and registry, separate SQLite data dirs."""
    bus = uuid.uuid4().hex[:10]
    opened: list[tuple[Backends, ChatService]] = []
    harnesses = []
    for name in ("A", "B"):
        config = BackendConfig(
            data_dir=str(tmp_path / name), broker=f"memory://{bus}", registry=f"memory://{bus}"
        )
        backends = await open_backends(config, edge_id=name)
        outbox = RecordingOutbox()
        chat = ChatService(
            chat_config(),
            outbox,
            log=backends.log,
            history=backends.history,
            meta=backends.meta,
            registry=backends.registry,
            broker=backends.broker,
            clock=clock,
        )
        backends.broker.set_handler(chat.remote)
        await chat.start(periodic=False)
        opened.append((backends, chat))
        harnesses.append(Harness(chat, outbox, clock, backends))
    yield harnesses[0], harnesses[1]
    for backends, chat in opened:
        await chat.aclose()
        await backends.aclose()


async def settle(*edges: Harness) -> None:
    """Let broker deliveries and the background work they start run to the end."""
    for _ in range(3):
        for _ in range(5):
            await asyncio.sleep(0)
        for h in edges:
            await h.chat.context.background.drain()


async def history_ids(h: Harness, stream: str = "s1") -> list[int]:
    return [c.comment_id for c in await h.backends.history.page(stream, None, 100)]


async def test_remote_delete_and_purge_reach_this_edges_history(edges: tuple[Harness, Harness]) -> None:
    a, b = edges
    author, other = a.connect("u1"), a.connect("u2")
    mod = b.connect("m", role="moderator")
    for conn in (author, other):
        await a.join(conn)
    await b.join(mod)
    first, second = await a.post(author, "one"), await a.post(author, "two")
    kept = await a.post(other, "stays")
    await settle(a, b)
    assert await history_ids(a) == [kept["id"], second["id"], first["id"]]

    await b.send(mod, "delete", stream="s1", id=first["id"])
    await settle(a, b)
    assert await history_ids(a) == [kept["id"], second["id"]]
    assert {"k": "del", "id": first["id"]} in a.outbox.events("s1", priority=True)
    # A reconnect on A from before the delete is told to drop it.
    snap = await a.join(a.connect(), last_id=first["id"] - 1)
    assert snap["gap"] is False and snap["del"] == [first["id"]]

    await b.send(mod, "purge", stream="s1", user="u1")
    await settle(a, b)
    assert await history_ids(a) == [kept["id"]]
    assert [c["id"] for c in (await a.join(a.connect("late")))["recent"]] == [kept["id"]]


async def test_remote_ban_disconnects_timeout_only_notifies(edges: tuple[Harness, Harness]) -> None:
    a, b = edges
    target, bystander = a.connect("t"), a.connect("by")
    mod = b.connect("m", role="moderator")
    for conn in (target, bystander):
        await a.join(conn)
    await b.join(mod)

    await b.send(mod, "timeout", stream="s1", user="t", seconds=60)
    await settle(a, b)
    notice = a.outbox.take(target)[-1]
    assert notice["t"] == "notice" and notice["code"] == "timed_out" and notice["until"] > 0
    assert target not in a.outbox.closed
    assert (await a.post(target, "hi"))["code"] == "timed_out"

    await b.send(mod, "unban", stream="s1", user="t")
    await settle(a, b)
    assert a.outbox.take(target)[-1]["code"] == "unbanned"
    assert (await a.post(target, "back"))["t"] == "ack"

    await b.send(mod, "ban", stream="s1", user="t")
    await settle(a, b)
    assert a.outbox.take(target)[-1]["code"] == "banned"
    assert a.outbox.closed == {target: (1008, "banned from s1")}
    assert [e["k"] for e in a.outbox.events("s1", priority=True)] == ["ban", "unban", "ban"]
    assert (await a.post(bystander, "unaffected"))["t"] == "ack"


async def test_remote_decisions_are_stored_here_and_survive_a_restart(edges: tuple[Harness, Harness]) -> None:
    a, b = edges
    poster = a.connect("p", role="moderator")
    mod = b.connect("m", role="moderator")
    await a.join(poster)
    await b.join(mod)
    ack = await a.post(poster, "pin me")
    await settle(a, b)
    for op, fields in (
        ("ban", {"user": "troll"}),
        ("timeout", {"user": "noisy", "seconds": 600}),
        ("slow", {"seconds": 30}),
        ("comments", {"enabled": False}),
        ("pin", {"id": ack["id"]}),
    ):
        await b.send(mod, op, stream="s1", **fields)
    await settle(a, b)
    meta = a.backends.meta
    assert (await meta.get_ban("s1", "troll")) is not None
    noisy = await meta.get_ban("s1", "noisy")
    assert noisy is not None and noisy.expires_at is not None and noisy.expires_at > a.clock.time()
    modes = await meta.get_modes("s1")
    assert (modes.slow_seconds, modes.comments_off) == (30, True)
    pin = await meta.get_pin("s1")
    assert pin is not None and pin.comment_id == ack["id"]

    # A fresh ChatService on A's stores (a restart) loads what B decided.
    outbox = RecordingOutbox()
    restarted = ChatService(
        chat_config(), outbox, log=a.backends.log, history=a.backends.history, meta=meta, clock=a.clock
    )
    await restarted.start(periodic=False)
    try:
        again = Harness(restarted, outbox, a.clock, a.backends)
        troll = again.connect("troll")
        snap = await again.join(troll)
        assert snap["modes"] == {"slow": 30, "fo": None, "off": True} and snap["pin"]["id"] == ack["id"]
        assert (await again.post(troll, "let me"))["code"] == "banned"
    finally:
        await restarted.aclose()

    await b.send(mod, "unban", stream="s1", user="troll")
    await b.send(mod, "unpin", stream="s1")
    await settle(a, b)
    assert await meta.get_ban("s1", "troll") is None and await meta.get_pin("s1") is None


async def test_shared_counts_are_fresh_and_counted_once(edges: tuple[Harness, Harness]) -> None:
    a, b = edges
    poster = a.connect("p")
    mod = b.connect("m", role="moderator")
    await a.join(poster)
    await b.join(mod)
    acks = [await a.post(poster, f"c{i}") for i in range(2)]
    await a.send(poster, "react", stream="s1", emoji="wow")
    await settle(a, b)
    await b.chat.housekeeping()  # B's viewer reaches the registry
    await a.chat.housekeeping()  # A's comments, reaction and viewer too
    await b.chat.housekeeping()  # B changed nothing since, yet shows the cluster totals
    for h in (a, b):
        assert h.outbox.state_value("s1", "n") == {"c": 2, "v": 2, "u": 2}
        assert h.outbox.state_value("s1", "rx")["wow"] == 1

    await b.send(mod, "delete", stream="s1", id=acks[0]["id"])
    await settle(a, b)
    for _ in range(2):
        await b.chat.housekeeping()
        await a.chat.housekeeping()
    for h in (a, b):
        assert h.outbox.state_value("s1", "n") == {"c": 1, "v": 2, "u": 2}, "one delete lowers the count once"


class FlakyRegistry:
    """Forwards to a Registry but fails the next ``failures`` increments."""

    def __init__(self, inner: Any, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    async def incr(self, key: str, delta: int = 1, ttl_s: float | None = None) -> int:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("injected")
        result: int = await self._inner.incr(key, delta, ttl_s)
        return result

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        result: list[int] = await self._inner.get_counters(keys)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_a_registry_failure_keeps_the_deltas_for_the_next_flush(
    edges: tuple[Harness, Harness],
) -> None:
    a, _ = edges
    engagement = a.chat.context.engagement
    flaky = FlakyRegistry(engagement._registry, failures=1)
    engagement._registry = flaky  # type: ignore[assignment]
    conn = a.connect("r")
    await a.join(conn)
    for emoji in ("heart", "heart", "sad"):
        await a.send(conn, "react", stream="s1", emoji=emoji)
    await a.chat.housekeeping()  # the first incr fails: nothing is lost
    assert flaky.failures == 0
    await a.chat.housekeeping()
    rx = a.outbox.state_value("s1", "rx")
    assert (rx["heart"], rx["sad"]) == (2, 1)
    assert a.outbox.state_value("s1", "n") == {"c": 0, "v": 1, "u": 1}


async def test_a_remote_sampled_out_reply_reaches_the_replied_to_viewer(
    edges: tuple[Harness, Harness],
) -> None:
    """Ranked tiers: a reply another edge sampled out is sent straight to the author it answers,
    wherever they are connected (and to nobody else here but its own author)."""
    from livechat.protocol import packb
    from livechat.services.fanout import TAG_SAMPLED

    a, b = edges
    ann, other = a.connect("ann"), a.connect("other")
    bob = b.connect("bob")
    for conn in (ann, other):
        await a.join(conn)
    await b.join(bob)
    parent = (await a.post(ann, "what do you think?"))["id"]
    await settle(a, b)
    reply = {"k": "c", "id": parent + 1, "u": "bob", "n": "bob", "x": "I agree", "ts": 0, "r": parent}
    a.outbox.take(ann)
    a.outbox.take(other)
    a.chat.remote.on_message("s1", bytes((TAG_SAMPLED,)) + packb(reply))
    direct = [e["id"] for m in a.outbox.take(ann) if m["t"] == "ev" for e in m["e"]]
    assert direct == [parent + 1]
    assert [m for m in a.outbox.take(other) if m["t"] == "ev"] == []
    assert parent + 1 not in {e["id"] for e in a.outbox.events("s1")}
