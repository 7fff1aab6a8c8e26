"""Per-stream state is freed when a room is pruned (issue 13): one anonymous client joining and
leaving 50 000 distinct stream names kept ~2.5 KB per name after the rooms were dropped.

A join budget now bounds how fast one client opens rooms (``test_request_budgets``); here the
budget is off and nothing in the process may still hold a pruned stream's name (the embedded
registry's counters once their idle time has passed). ``test_open_rooms_keep_their_counters``:
a counter in use does not expire.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Sequence
from typing import Any

from chat_harness import RecordingOutbox, chat_config, frame, make_token
from livechat.backends import Backends
from livechat.backends.memory import MemoryRegistry
from livechat.config import LimitsConfig, RoomConfig
from livechat.services.chat import ChatService
from livechat.services.clock import ManualClock

UNLIMITED = LimitsConfig(joins_per_minute=0, joins_per_minute_per_user=0)


class ForgetfulOutbox(RecordingOutbox):
    """An Outbox that keeps no per-stream record (the harness's keeps every slot and subscriber)."""

    def publish(self, stream: str, event: bytes, priority: bool = False) -> None:
        pass

    def set_state(self, stream: str, key: str, value: bytes) -> None:
        pass

    def subscribe(self, conn_id: int, stream: str) -> bool:
        return True

    def unsubscribe(self, conn_id: int, stream: str) -> bool:
        return True

    def send_batch(self, items: Sequence[tuple[int, bytes]], binary: bool = True) -> int:
        return len(items)

    def send(self, conn_id: int, data: bytes, binary: bool = True) -> bool:
        return True


def holders(prefix: str) -> list[str]:
    """Containers alive now that hold a string starting with ``prefix`` (as a key or member)."""
    found = []
    for obj in gc.get_objects():
        if isinstance(obj, dict | set | frozenset):
            if any(type(k) is str and k.startswith(prefix) for k in obj):
                owners = [type(r).__name__ for r in gc.get_referrers(obj) if not isinstance(r, list | dict)]
                found.append(f"{type(obj).__name__} of {len(obj)} held by {owners[:3]}")
    return found


async def churn(backends: Backends, clock: ManualClock, prefix: str, names: int) -> ChatService:
    chat = ChatService(
        chat_config(limits=UNLIMITED),
        ForgetfulOutbox(),
        log=backends.log,
        history=backends.history,
        meta=backends.meta,
        registry=backends.registry,
        clock=clock,
    )
    await chat.start(periodic=False)
    chat.on_open(1, "/live", None)  # anonymous
    chat.on_open(2, f"/live?token={make_token('alice')}", None)
    for i in range(names):
        for conn in (1, 2):
            stream = f"{prefix}{i}"
            await chat.on_messages(
                [(conn, frame("join", stream=stream)), (conn, frame("leave", stream=stream))]
            )
        if i % 50 == 0:
            clock.advance(0.3)
            await chat.housekeeping()
    for _ in range(3):
        clock.advance(RoomConfig().idle_drop_s + 1)
        await chat.housekeeping()
    return chat


async def test_pruned_rooms_leave_nothing_in_the_services(backends: Backends, clock: ManualClock) -> None:
    prefix = f"gone-{uuid.uuid4().hex[:8]}-"
    chat = await churn(backends, clock, prefix, 200)
    ctx = chat.context
    assert ctx.rooms.rooms() == []
    assert not [s for s in ctx.sampler.streams() if s.startswith(prefix)]
    assert not [s for s in ctx.engagement._streams if s.startswith(prefix)]
    await chat.aclose()


async def test_pruned_rooms_leave_nothing_in_the_process(backends: Backends, clock: ManualClock) -> None:
    prefix = f"gone-{uuid.uuid4().hex[:8]}-"
    chat = await churn(backends, clock, prefix, 200)
    # The embedded registry keeps a stream's unique-viewer counter until nobody has used it for
    # VIEWERS_IDLE_S of its own (monotonic) time: let that pass for it.
    assert isinstance(backends.registry, MemoryRegistry)
    state = backends.registry.state
    assert any(stream.startswith(prefix) for stream in state.viewers), "the churn made no counters"
    state.sweep(time.monotonic() + state.VIEWERS_IDLE_S + 1)
    gc.collect()
    still: list[Any] = holders(prefix)
    await chat.aclose()
    assert still == [], still


async def test_open_rooms_keep_their_counters(backends: Backends) -> None:
    """Edges read an open stream's unique-viewer count every engagement flush: a counter in use
    never expires, one nobody reads does."""
    registry = backends.registry
    assert isinstance(registry, MemoryRegistry)
    state = registry.state
    await registry.viewers_add("kept", ["a", "b"])
    await registry.viewers_add("idle", ["a"])
    start = time.monotonic()
    for step in range(1, 4):  # read every half idle time, for 1.5 of them
        state.use_viewers("kept", start + step * state.VIEWERS_IDLE_S / 2)
    state.sweep(start + 1.5 * state.VIEWERS_IDLE_S + 1)
    assert "kept" in state.viewers and "idle" not in state.viewers
    assert await registry.viewers_count("kept") == 2
    assert await registry.viewers_count("idle") == 0
